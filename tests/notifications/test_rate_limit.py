"""A per-provider token bucket in Redis: a big send goes out at the provider's pace and
nothing is dropped."""

from __future__ import annotations

import time

from flask import current_app

from notifications import ratelimit
from tests.notifications.factories import queue, recorded, send_round

PHONE = "+4915112345678"


def test_the_bucket_grants_its_burst_then_refills_at_the_rate():
    redis = current_app.extensions["omniloyal.redis"]
    first = ratelimit.take(redis, "twilio-long-code", 5, rate=2, burst=3, now=1000.0)
    assert (first.granted, first.wait_seconds) == (3, 0.5)
    assert ratelimit.take(redis, "twilio-long-code", 5, rate=2, burst=3, now=1000.0).granted == 0
    assert ratelimit.take(redis, "twilio-long-code", 5, rate=2, burst=3, now=1001.0).granted == 2
    assert ratelimit.take(redis, "other", 1, rate=2, now=1001.0).granted == 1  # its own bucket


def test_a_big_send_respects_the_providers_rate_and_drops_nothing(make):
    member = make.member(phone=PHONE)
    ids = [queue(member.id).id for _ in range(12)]
    rate = {"recording-sms": 5.0}
    started = time.monotonic()
    first = send_round(notify_rate_limits=rate)
    # the burst (and what refilled while it went out); the rest stays queued, nothing dropped
    assert 5 <= first.sent < 12 and first.rate_limited > 0
    while len(recorded()) < len(ids):
        assert time.monotonic() - started < 60
        time.sleep(0.2)
        send_round(notify_rate_limits=rate)
    elapsed = time.monotonic() - started
    assert elapsed >= (12 - 5) / 5 - 0.2  # 7 more tokens at 5/s
    assert sorted(r.message_id for r in recorded()) == ids


def test_rate_limit_settings_are_parsed_strictly():
    import pytest

    assert ratelimit.parse_limits("sms=1, twilio-short=100") == {"sms": 1.0, "twilio-short": 100.0}
    for bad in ("sms", "sms=0", "sms=fast", "=3"):
        with pytest.raises(ValueError):
            ratelimit.parse_limits(bad)
