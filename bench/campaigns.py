"""Campaign fan-out beside a raw COPY baseline, in one run (`make bench-campaigns`).

    python -m bench.campaigns --recipients 50000 --workers 2

1. A fresh PostgreSQL database (`omniloyal db upgrade`) and a redis-server of its own on a
   free port; `--recipients` members seeded with SQL (a phone each, SMS marketing consent),
   a coupons offer, a segment over all of them.
2. Campaign: a coupon campaign (no control group, so every member is messaged) launched at
   t0; `--workers` real `omniloyal worker` processes (RQ workers with the scheduler) start
   its run (audience snapshot), fan it out (a unique code issued and a message queued per
   recipient, in chunks) and send the messages (rendered, handed to the recording
   provider). Timed from the launch's commit to every recipient fanned out, and to every
   message `sent`.
3. Baseline: the same number of rows (member id, a code, a rendered text) written with one
   COPY into a plain table.
4. Prints messages/s for each, and the ratios.
"""

from __future__ import annotations

import argparse
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence

import psycopg

from bench.database import VENV_BIN, BenchDatabase
from bench.notifications import DEFAULT_PG, OwnRedis

SEED = """
INSERT INTO members (id, status, locale, timezone, region, attributes, enrolled_channel,
                     created_at, updated_at, token_epoch)
SELECT g, 'active', 'en', 'UTC', 'north', '{}', 'online', now(), now(), 0
FROM generate_series(1, %(n)s) g;
INSERT INTO member_identities (member_id, kind, value, created_at)
SELECT g, 'phone', '+49151' || lpad(g::text, 8, '0'), now() FROM generate_series(1, %(n)s) g;
INSERT INTO member_consents (member_id, channel, purpose, granted, source, actor, updated_at)
SELECT g, 'sms', 'marketing', true, 'import', 'bench', now() FROM generate_series(1, %(n)s) g;
SELECT setval(pg_get_serial_sequence('members', 'id'), %(n)s);
ANALYZE;
"""


def _say(message: str) -> None:
    print(f"[bench-campaigns {time.strftime('%H:%M:%S')}] {message}", flush=True)


def seed(database_url: str, recipients: int) -> None:
    with psycopg.connect(database_url, autocommit=True) as connection:
        for statement in SEED.strip().split(";\n"):
            if statement.strip():
                connection.execute(statement, {"n": recipients})


def create_campaign() -> int:
    """A coupon campaign to every seeded member, as a marketer makes it (draft)."""
    from bench.appctx import bench_app
    from campaigns import lifecycle, segments
    from loyalty.clock import utcnow
    from loyalty.coupons import offers
    from loyalty.db import db

    with bench_app().app_context():
        now = utcnow()
        offer = offers.create_offer(
            {"name": "Bench 10 %", "kind": "percent", "percent_bp": 1000, "currency": "EUR"},
            now=now,
            actor="bench",
        )
        segment = segments.create_segment(
            {
                "name": "everyone",
                "kind": "dynamic",
                "rule": {"field": "region", "op": "eq", "value": "north"},
            },
            now=now,
            actor="bench",
        )
        campaign = lifecycle.create_campaign(
            {
                "name": "bench",
                "description": None,
                "segment_id": segment.id,
                "offer": {"kind": "coupon", "offer_id": offer.id},
                "channel_order": ["sms"],
                "content": {"variants": [{"name": "A", "templates": {"sms": "campaign_offer"}}]},
                "schedule": {"kind": "now"},
                "holdout_pct": 0,
                "attribution_days": 7,
            },
            now=now,
            actor="bench",
        )
        db.session.commit()
        return campaign.id


def launch(campaign_id: int) -> None:
    from bench.appctx import bench_app
    from campaigns import lifecycle
    from loyalty.clock import utcnow
    from loyalty.db import db

    with bench_app().app_context():
        lifecycle.launch(campaign_id, now=utcnow(), actor="bench")
        db.session.commit()


def run_campaign(
    env: dict[str, str], workers: int, recipients: int, database_url: str, campaign_id: int
) -> tuple[float, float]:
    """Launch, start the workers, wait; returns (seconds to every recipient fanned out,
    seconds to every message sent), both from the launch's commit."""
    launch(campaign_id)
    started = time.perf_counter()
    processes = [
        subprocess.Popen(
            [str(VENV_BIN / "omniloyal"), "worker"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for _ in range(workers)
    ]
    fanned_out = None
    try:
        with psycopg.connect(database_url, autocommit=True) as connection:
            last_report = started
            while True:
                processed, sent = connection.execute(
                    "SELECT (SELECT count(*) FROM campaign_recipients WHERE status <> 'pending'"
                    "        AND campaign_id = %(c)s),"
                    "       (SELECT count(*) FROM messages WHERE state = 'sent')",
                    {"c": campaign_id},
                ).fetchone()
                now = time.perf_counter()
                if fanned_out is None and processed >= recipients:
                    fanned_out = now - started
                if sent >= recipients:
                    return fanned_out or now - started, now - started
                if any(p.poll() is not None for p in processes):
                    raise SystemExit("a worker exited during the run")
                if now - last_report > 15:
                    _say(f"  {processed:,} fanned out, {sent:,} sent of {recipients:,}")
                    last_report = now
                time.sleep(0.25)
    finally:
        for process in processes:
            process.send_signal(signal.SIGTERM)
        for process in processes:
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()


def run_baseline(database_url: str, recipients: int) -> float:
    """The same number of rows (member, code, rendered text) written with COPY."""
    text = "Your offer: code {code}, valid until 31 Dec 2026."
    with psycopg.connect(database_url) as connection:
        connection.execute(
            "CREATE TABLE bench_copy (member_id bigint, code text, channel text, body text)"
        )
        connection.commit()
        started = time.perf_counter()
        with (
            connection.cursor() as cursor,
            cursor.copy("COPY bench_copy (member_id, code, channel, body) FROM STDIN") as copy,
        ):
            for member_id in range(1, recipients + 1):
                code = secrets.token_hex(8).upper()
                copy.write_row((member_id, code, "sms", text.format(code=code)))
        connection.commit()
        return time.perf_counter() - started


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.campaigns")
    parser.add_argument(
        "--recipients",
        type=int,
        default=int(os.environ.get("BENCH_CAMPAIGN_RECIPIENTS", 50_000)),
    )
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--pg", default=os.environ.get("BENCH_PG", DEFAULT_PG))
    args = parser.parse_args(argv)
    instance = tempfile.mkdtemp(prefix="bench-campaigns-")
    own_redis = OwnRedis(instance)
    database = BenchDatabase(args.pg)
    database.name = f"omniloyal_bench_campaigns_{os.getpid()}"
    database.url = f"{database.server_url}/{database.name}"
    env = {
        **os.environ,
        "DATABASE_URL": database.url,
        "REDIS_URL": own_redis.url,
        "SECRET_KEY": secrets.token_urlsafe(48),
        "LOG_LEVEL": "WARNING",
        "OMNILOYAL_INSTANCE_PATH": instance,
        "OMNILOYAL_EMBEDDED_WORKER": "false",
        "OMNILOYAL_NOTIFY_QUIET_HOURS": "off",
        "OMNILOYAL_NOTIFY_MARKETING_CAP": "off",
    }
    os.environ.update(env)
    try:
        _say(f"database {database.name}, redis-server on port {own_redis.port}")
        database.create()
        database.build_schema(env)
        _say(f"seeding {args.recipients:,} members with a phone and SMS marketing consent")
        seed(database.url, args.recipients)
        campaign_id = create_campaign()
        _say(f"campaign: {args.workers} omniloyal workers, snapshot -> codes + messages -> sent")
        fan_out, end_to_end = run_campaign(
            env, args.workers, args.recipients, database.url, campaign_id
        )
        _say(f"baseline: {args.recipients:,} rows written with COPY")
        baseline = run_baseline(database.url, args.recipients)
        report(args.recipients, args.workers, fan_out, end_to_end, baseline)
    finally:
        database.drop()
        own_redis.stop()
        shutil.rmtree(instance, ignore_errors=True)
    return 0


def report(
    recipients: int, workers: int, fan_out: float, end_to_end: float, baseline: float
) -> None:
    print()
    print(f"campaigns: {recipients:,} recipients, {workers} workers, {os.cpu_count()} CPUs")
    print("| run | seconds | messages/s | ratio to COPY |")
    print("| --- | ---: | ---: | ---: |")
    rows = [
        ("fan-out (snapshot, a code issued and a message queued each)", fan_out),
        ("end to end (... rendered and handed to the recording provider)", end_to_end),
        ("raw baseline (the same number of rows written with COPY)", baseline),
    ]
    for name, seconds in rows:
        ratio = baseline / seconds
        print(f"| {name} | {seconds:.1f} | {recipients / seconds:,.0f} | {ratio:.3f} |")


if __name__ == "__main__":
    sys.exit(main())
