"""Per-provider send rate: a token bucket in Redis, shared by every worker.

`take(redis, name, wanted, rate, burst)` grants up to `wanted` tokens now (0 when the bucket
is empty) and says how long until the next one. The bucket is refilled continuously at
`rate` tokens per second up to `burst`. The send job claims only as many messages as it was
granted, so a big send goes out at the provider's pace and nothing is dropped: the rest
stays queued, in order, for the next round.

One hash per bucket (`tokens`, `ts`), updated under WATCH/MULTI (optimistic, retried on a
concurrent change) so two workers never spend the same token. Time is the worker's clock;
workers on one site share NTP time, and a skew only shifts refills by that much.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import redis

KEY = "omniloyal:notify:bucket:{}"


@dataclass(frozen=True)
class Grant:
    granted: int
    wait_seconds: float  # until the next token (0 when all were granted)


def take(
    connection: redis.Redis,
    name: str,
    wanted: int,
    *,
    rate: float,
    burst: float | None = None,
    now: float | None = None,
) -> Grant:
    if wanted <= 0:
        return Grant(0, 0.0)
    burst = max(1.0, burst if burst is not None else rate)
    key = KEY.format(name)
    for _ in range(50):
        clock = time.time() if now is None else now
        with connection.pipeline() as pipe:
            try:
                pipe.watch(key)
                stored = pipe.hmget(key, "tokens", "ts")
                tokens = float(stored[0]) if stored[0] is not None else burst
                last = float(stored[1]) if stored[1] is not None else clock
                tokens = min(burst, tokens + max(0.0, clock - last) * rate)
                granted = min(wanted, math.floor(tokens + 1e-9))
                left = tokens - granted
                pipe.multi()
                pipe.hset(key, mapping={"tokens": repr(left), "ts": repr(clock)})
                pipe.expire(key, int(burst / rate) + 60)
                pipe.execute()
            except redis.WatchError:
                continue
        wait = 0.0 if granted == wanted else max(0.0, (1.0 - left) / rate)
        return Grant(granted, wait)
    return Grant(0, 1.0 / rate)  # heavy contention: nothing this round, try again soon


def parse_limits(text: str) -> dict[str, float]:
    """ "sms=1,email=100,twilio-short=100" -> {name: messages per second}. Names are provider
    names or channels (a provider's own name wins)."""
    limits: dict[str, float] = {}
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        name, sep, value = part.partition("=")
        try:
            rate = float(value)
        except ValueError:
            rate = -1.0
        if not sep or not name.strip() or not math.isfinite(rate) or rate <= 0:
            raise ValueError(f"rate limits look like sms=1,email=100 (per second), got {text!r}")
        limits[name.strip()] = rate
    return limits
