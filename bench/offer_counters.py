"""What counting an uncapped offer's redemptions costs on the redemption hot path.

    python -m bench.offer_counters                  # 16 threads, 8 s per mode
    python -m bench.offer_counters --threads 32 --seconds 15

One offer without a cap or budget, 200,000 distinct single-use codes (a mailing), redeemed
by N threads at once through `loyalty.coupons.operations.redeem_codes`, each redemption its
own transaction (what `POST /v1/coupons/redeem` does, without HTTP). Distinct codes share
no row but the offer's counter, so the counter is the only thing that can serialise them.
Modes:

- `no counter`     : what uncapped offers did before (counted nothing; the old behaviour)
- `one counter row`: every redemption adds to one row (COUNTER_STRIPES = 1)
- `16 stripes`     : the shipped design, a random one of 16 rows per redemption

Beside them, the raw baseline in the same run: N psycopg connections doing only
`BEGIN; INSERT .. ON CONFLICT DO UPDATE counter; <1 ms of other work>; COMMIT` on one row
and on 16 rows, which shows what the row lock alone allows.
Creates and drops a throw-away database on BENCH_PG (default the local server).
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import threading
import time
import uuid

import psycopg

SERVER = os.environ.get("BENCH_PG", "postgresql://postgres@127.0.0.1:5432")
CODES = 200_000
ROUNDS = 3


def _run_threads(threads: int, seconds: float, work) -> int:
    """Call work(thread_index) in a loop on `threads` threads for `seconds`; count calls."""
    stop = time.perf_counter() + seconds
    counts = [0] * threads
    start = threading.Barrier(threads)

    def loop(index: int) -> None:
        start.wait()
        while time.perf_counter() < stop:
            work(index)
            counts[index] += 1

    pool = [threading.Thread(target=loop, args=(i,)) for i in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    return sum(counts)


def _raw(url: str, threads: int, seconds: float, stripes: int) -> float:
    connections = [psycopg.connect(url, autocommit=False) for _ in range(threads)]
    with connections[0].cursor() as cur:
        cur.execute(
            "CREATE TABLE IF NOT EXISTS raw_counters (offer_id bigint, stripe smallint, "
            "n bigint, PRIMARY KEY (offer_id, stripe))"
        )
    connections[0].commit()

    def work(index: int) -> None:
        connection = connections[index]
        with connection.cursor() as cur:
            cur.execute(
                "INSERT INTO raw_counters VALUES (1, %s, 1) ON CONFLICT (offer_id, stripe) "
                "DO UPDATE SET n = raw_counters.n + 1",
                (random.randrange(stripes),),
            )
            cur.execute("SELECT pg_sleep(0.0005)")  # the rest of a redemption's transaction
        connection.commit()

    done = _run_threads(threads, seconds, work)
    for connection in connections:
        connection.close()
    return done / seconds


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=8.0)
    args = parser.parse_args()
    name = f"bench_counters_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(f"{SERVER}/postgres", autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    url = f"{SERVER}/{name}"
    try:
        rows = _measure(url, args.threads, args.seconds)
    finally:
        with psycopg.connect(f"{SERVER}/postgres", autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    print(f"\nuncapped offer, distinct codes, {args.threads} threads, {args.seconds:.0f} s each")
    print(f"{'mode':<20} {'redemptions/s':>14} {'raw baseline/s':>15} {'vs no counter':>14}")
    base = rows["no counter"][0]
    for mode, (rate, raw) in rows.items():
        raw_text = f"{raw:,.0f}" if raw else "-"
        print(f"{mode:<20} {rate:>14,.0f} {raw_text:>15} {rate / base:>13.2f}x")
    print("(raw baseline: counter upsert + 0.5 ms in one transaction, no app code)")


def _measure(url: str, threads: int, seconds: float) -> dict[str, tuple[float, float]]:
    from loyalty.app import create_app
    from loyalty.basket import Basket, BasketLine
    from loyalty.clock import utcnow
    from loyalty.coupons import offers, operations
    from loyalty.db import db

    app = create_app(
        {
            "database_url": url.replace("postgresql://", "postgresql+psycopg://", 1),
            "redis_url": None,
            "secret_key": "b" * 40,
            "run_embedded_worker": False,
            "log_level": "WARNING",
        }
    )
    with app.app_context():
        db.create_all()
        offer = offers.create_offer(
            {"name": "bench", "kind": "percent", "percent_bp": 1000, "currency": "EUR"},
            now=utcnow(),
            actor="bench",
        )
        batch = offers.generate_codes(offer.id, CODES, now=utcnow(), max_uses=1)
        db.session.commit()
        from loyalty.coupons.models import CouponCode

        codes = list(
            db.session.scalars(db.select(CouponCode.code).where(CouponCode.batch_id == batch.id))
        )
    random.shuffle(codes)
    lock = threading.Lock()
    basket = Basket(
        currency="EUR",
        channel="online",
        store_id=None,
        lines=(BasketLine(0, "SKU", "shoes", 1, 10_000),),
    )

    def redeem(_index: int) -> None:
        with lock:
            code = codes.pop()
        with app.app_context():
            operations.redeem_codes(
                codes=[code],
                basket=basket,
                member_id=None,
                client_id=None,
                order_ref=None,
                now=utcnow(),
                actor="bench",
            )
            db.session.commit()
            db.session.remove()

    original_count, original_stripes = operations._count_uncapped, operations.COUNTER_STRIPES
    modes = {
        "no counter": (lambda *a, **k: None, original_stripes, None),
        "one counter row": (original_count, 1, 1),
        "16 stripes": (original_count, 16, 16),
        "64 stripes": (original_count, 64, 64),
    }
    redeem(0)  # warm-up: connections, caches, plans
    # The machine is shared: modes take turns, round after round, and each reports the
    # median of its rounds, so drift in the machine's load hits every mode alike.
    rates: dict[str, list[float]] = {mode: [] for mode in modes}
    for _ in range(ROUNDS):
        for mode, (count, stripes, _raw_stripes) in modes.items():
            operations._count_uncapped, operations.COUNTER_STRIPES = count, stripes
            rates[mode].append(_run_threads(threads, seconds / ROUNDS, redeem) / (seconds / ROUNDS))
    operations._count_uncapped, operations.COUNTER_STRIPES = original_count, original_stripes
    rows = {}
    for mode, (_count, _stripes, raw_stripes) in modes.items():
        raw = _raw(url, threads, seconds / ROUNDS, raw_stripes) if raw_stripes else 0.0
        rows[mode] = (statistics.median(rates[mode]), raw)
    with app.app_context():
        db.engine.dispose()
    return rows


if __name__ == "__main__":
    main()
