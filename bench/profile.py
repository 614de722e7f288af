"""Where the Python time of one hot request goes: in-process requests under cProfile.

    .venv/bin/python -m bench.profile                      # orders, redeem, balance
    .venv/bin/python -m bench.profile --only earn --requests 2000 --top 40

A fresh database on PostgreSQL (seeded through the operations, like `python -m bench`),
the WSGI app called directly (no gunicorn, no sockets), so the figure is the service's own
CPU per request: the work the database does is in the wall time, not in the CPU time.
Prints, per scenario, CPU and wall ms per request and the functions with the most time of
their own and the most cumulative time (a text flame graph); `--stats DIR` also writes the
pstats files (open with snakeviz or `python -m pstats`).
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import secrets
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from bench.coupons import HOT_CODE, create_offers
from bench.database import BenchDatabase

SCENARIOS = ("earn", "redeem", "hot", "balance")
LINES = [
    {"sku": "SKU-1", "category": "shoes", "quantity": 1, "unit_price_minor": 8999},
    {"sku": "SKU-SOCKS", "category": "accessories", "quantity": 2, "unit_price_minor": 799},
]


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", default=",".join(SCENARIOS))
    parser.add_argument("--requests", type=int, default=1000, help="per scenario (profiled)")
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--members", type=int, default=500)
    parser.add_argument("--pg", default="postgresql://postgres@127.0.0.1:5432")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/14")
    parser.add_argument("--stats", type=Path, help="write <scenario>.pstats here")
    parser.add_argument(
        "--sampling-only",
        action="store_true",
        help="no cProfile: for running under py-spy (bench/flame.py), which then sees "
        "the requests at their real cost",
    )
    parser.add_argument(
        "--callgrind",
        action="store_true",
        help="no cProfile; switch callgrind's counting on for the measured requests only "
        "(bench/instructions.py runs this under valgrind)",
    )
    return parser.parse_args(argv)


def _environment(database: BenchDatabase, redis_url: str) -> dict[str, str]:
    return {
        "DATABASE_URL": database.url,
        "REDIS_URL": redis_url,
        "SECRET_KEY": secrets.token_urlsafe(48),
        "LOG_LEVEL": "WARNING",
        "OMNILOYAL_INSTANCE_PATH": tempfile.mkdtemp(prefix="bench-profile-"),
        "OMNILOYAL_EMBEDDED_WORKER": "false",
        "OMNILOYAL_RATE_LIMIT_PER_IP": "1000000/second",
        "OMNILOYAL_RATE_LIMIT_PER_CALLER": "1000000/second",
        "OMNILOYAL_RATE_LIMIT_MEMBER_TOKENS": "1000000/second",
        "OMNILOYAL_RATE_LIMIT_IDENTIFY": "1000000/second",
    }


class Requests:
    """Request factories per scenario, over the seeded members, codes and tokens."""

    def __init__(self, seeded: Any, codes: list[str]) -> None:
        self.seeded = seeded
        self.codes = codes
        self.count = 0

    def _next(self) -> str:
        self.count += 1
        return f"p{os.getpid()}-{self.count}-{uuid.uuid4().hex[:6]}"

    def _pos(self, key: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.seeded.pos_key}", "Idempotency-Key": key}

    def earn(self) -> tuple[str, str, dict[str, Any]]:
        ref = self._next()
        member = self.seeded.member_ids[self.count % len(self.seeded.member_ids)]
        body = {
            "order_id": ref,
            "channel": "store",
            "store_id": self.seeded.store_id,
            "member": {"member_id": member},
            "lines": LINES,
            "currency": "EUR",
        }
        return "POST", "/v1/orders", {"headers": self._pos(ref), "json": body}

    def _redeem(self, code: str) -> tuple[str, str, dict[str, Any]]:
        ref = self._next()
        body = {
            "codes": [code],
            "store_id": self.seeded.store_id,
            "channel": "store",
            "currency": "EUR",
            "lines": LINES,
            "order_ref": ref,
        }
        return "POST", "/v1/coupons/redeem", {"headers": self._pos(ref), "json": body}

    def redeem(self) -> tuple[str, str, dict[str, Any]]:
        return self._redeem(self.codes.pop())

    def hot(self) -> tuple[str, str, dict[str, Any]]:
        return self._redeem(HOT_CODE)

    def balance(self) -> tuple[str, str, dict[str, Any]]:
        token = self.seeded.tokens[self.count % len(self.seeded.tokens)]
        self.count += 1
        return "GET", "/v1/me/balance", {"headers": {"Authorization": f"Bearer {token}"}}


def _seed(members: int, codes_needed: int) -> tuple[Any, list[str]]:
    import sqlalchemy as sa

    from bench import seed
    from bench.appctx import bench_app
    from loyalty.clock import utcnow
    from loyalty.coupons.models import CouponCode
    from loyalty.coupons.offers import generate_codes
    from loyalty.db import db

    seeded = seed.seed_core(members)
    seeded.tokens = seed.mint_tokens(seeded.member_ids, min(members, 300))
    with bench_app().app_context():
        percent_id, _hot_id = create_offers(hot_code_limit=10_000_000)
        batch = generate_codes(percent_id, codes_needed, now=utcnow(), actor="bench", max_uses=1)
        db.session.commit()
        codes = list(
            db.session.scalars(sa.select(CouponCode.code).where(CouponCode.batch_id == batch.id))
        )
    return seeded, codes


def _profile(
    app: Any, make: Callable[[], tuple[str, str, dict[str, Any]]], requests: int
) -> tuple[cProfile.Profile, float, float, dict[int, int]]:
    client = app.test_client()
    statuses: dict[int, int] = {}
    profiler = cProfile.Profile(time.process_time)  # CPU, not waiting for PostgreSQL
    wall, cpu = time.perf_counter(), time.process_time()
    profiler.enable()
    for _ in range(requests):
        method, path, kwargs = make()
        status = client.open(path, method=method, **kwargs).status_code
        statuses[status] = statuses.get(status, 0) + 1
    profiler.disable()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return profiler, wall * 1000 / requests, cpu * 1000 / requests, statuses


def _top(profiler: cProfile.Profile, sort: str, limit: int) -> str:
    out = io.StringIO()
    stats = pstats.Stats(profiler, stream=out)
    stats.strip_dirs().sort_stats(sort).print_stats(limit)
    lines = out.getvalue().splitlines()
    start = next(i for i, line in enumerate(lines) if line.lstrip().startswith("ncalls"))
    return "\n".join(lines[start:])


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    names = [name for name in args.only.split(",") if name]
    database = BenchDatabase(args.pg)
    env = _environment(database, args.redis)
    os.environ.update(env)
    try:
        database.create()
        database.build_schema({**os.environ, **env})
        seeded, codes = _seed(args.members, 3 * args.requests)
        from bench.appctx import bench_app

        app = bench_app()
        factories = Requests(seeded, codes)
        # The profiler's own overhead roughly doubles Python time; CPU ms without it first.
        print("| scenario | requests | CPU ms/request (unprofiled) | wall ms/request | statuses |")
        print("| --- | ---: | ---: | ---: | --- |")
        profiles: dict[str, cProfile.Profile] = {}
        for name in names:
            make = getattr(factories, name)
            _unprofiled(app, make, args.requests)  # warm-up: caches, prepared statements
            with _counting_instructions(args.callgrind):
                plain_cpu, plain_wall = _unprofiled(app, make, args.requests)
            statuses: dict[int, int] = {}
            if not (args.sampling_only or args.callgrind):
                profiler, _, _, statuses = _profile(app, make, args.requests)
                profiles[name] = profiler
            print(f"| {name} | {args.requests} | {plain_cpu:.2f} | {plain_wall:.2f} | {statuses} |")
        for name, profiler in profiles.items():
            print(f"\n## {name}: most time of their own (tottime)\n")
            print(_top(profiler, "tottime", args.top))
            print(f"\n## {name}: most cumulative time\n")
            print(_top(profiler, "cumulative", args.top))
            if args.stats:
                args.stats.mkdir(parents=True, exist_ok=True)
                profiler.dump_stats(args.stats / f"{name}.pstats")
    finally:
        from bench.runner import _dispose_app

        _dispose_app()
        database.drop()
    return 0


@contextmanager
def _counting_instructions(on: bool) -> Iterator[None]:
    """Under valgrind --tool=callgrind --instr-atstart=no: count only inside the block."""
    if not on:
        yield
        return
    control = ["callgrind_control", "--instr"]
    subprocess.run([*control, "on", str(os.getpid())], check=True, capture_output=True)
    try:
        yield
    finally:
        subprocess.run([*control, "off", str(os.getpid())], check=True, capture_output=True)


def _unprofiled(app: Any, make: Callable[[], tuple[str, str, dict[str, Any]]], n: int) -> tuple:
    client = app.test_client()
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(n):
        method, path, kwargs = make()
        client.open(path, method=method, **kwargs)
    return (time.process_time() - cpu) * 1000 / n, (time.perf_counter() - wall) * 1000 / n


if __name__ == "__main__":
    raise SystemExit(main())
