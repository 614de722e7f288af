"""Campaign fan-out beside a raw COPY baseline, in one run (`make bench-campaigns`).

    python -m bench.campaigns --members 1000000 --recipients 50000 --workers 2

1. A fresh PostgreSQL database (`omniloyal db upgrade`) and a redis-server of its own on a
   free port; `--members` members seeded with SQL (a phone each, SMS marketing consent),
   `--recipients` of them in the north region, a coupons offer, a dynamic segment "region is
   north".
2. Campaign: a coupon campaign (no control group, so every recipient is messaged) launched
   at t0, with `--workers` real `omniloyal worker` processes (RQ workers with the
   scheduler, every queue) doing everything a launch sets off: the audience snapshot (the
   segment evaluated over all members), a unique code issued and a message queued per
   recipient, each message rendered and handed to the recording provider. Timed from the
   launch's commit to the last message sent (end to end, the issue's fan-out rate); the
   moment the last recipient was fanned out is reported beside it.
3. Baseline: the same number of rows (member id, a code, a rendered text) written with one
   COPY into a plain table.
4. Prints messages/s beside the baseline, and the ratio. The run is waited for at most
   `--timeout` seconds (default 900; the rate so far is reported).
"""

from __future__ import annotations

import argparse
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Sequence

import psycopg

from bench.database import VENV_BIN
from bench.notifications import DEFAULT_PG, isolated_worker_run

SEED = """
INSERT INTO members (id, status, locale, timezone, region, attributes, enrolled_channel,
                     created_at, updated_at, token_epoch)
SELECT g, 'active', 'en', 'UTC', CASE WHEN g <= %(recipients)s THEN 'north' ELSE 'south' END,
       '{}', 'online', now(), now(), 0
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


def seed(database_url: str, members: int, recipients: int) -> None:
    with psycopg.connect(database_url, autocommit=True) as connection:
        for statement in SEED.strip().split(";\n"):
            if statement.strip():
                connection.execute(statement, {"n": members, "recipients": recipients})


def create_campaign() -> int:
    """A coupon campaign to the members in the north, as a marketer makes it (draft)."""
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
                "name": "the north",
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


def _workers(env: dict[str, str], count: int, queues: Sequence[str]) -> list[subprocess.Popen]:
    options = [item for queue in queues for item in ("--queue", queue)]
    return [
        subprocess.Popen(
            [str(VENV_BIN / "omniloyal"), "worker", *options],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for _ in range(count)
    ]


def _stop(processes: list[subprocess.Popen]) -> None:
    for process in processes:
        process.send_signal(signal.SIGTERM)
    for process in processes:
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()


def _count(connection: psycopg.Connection, query: str, **params: object) -> int:
    return connection.execute(query, params or None).fetchone()[0]


FANNED_OUT = (
    "SELECT count(*) FROM campaign_recipients WHERE status <> 'pending' AND campaign_id = %(c)s"
)
SENT = "SELECT count(*) FROM messages WHERE state = 'sent'"


def run_campaign(
    env: dict[str, str],
    workers: int,
    recipients: int,
    database_url: str,
    campaign_id: int,
    timeout: float,
) -> tuple[float | None, int, float]:
    """Launch, then `workers` real workers on every queue until every recipient's message
    is sent (or `timeout`). Returns (seconds until the last recipient was fanned out, or
    None if it never was; messages sent; seconds until the last was sent)."""
    launch(campaign_id)
    started = last_report = time.perf_counter()
    fanned_out_at = None
    processes = _workers(env, workers, [])
    try:
        with psycopg.connect(database_url, autocommit=True) as connection:
            while True:
                now = time.perf_counter()
                if (
                    fanned_out_at is None
                    and _count(connection, FANNED_OUT, c=campaign_id) >= recipients
                ):
                    fanned_out_at = now - started
                sent = _count(connection, SENT)
                if sent >= recipients:
                    return fanned_out_at, sent, now - started
                if now - started > timeout:
                    _say(f"  stopped waiting after {timeout:.0f} s: {sent:,} sent")
                    return fanned_out_at, sent, now - started
                if any(p.poll() is not None for p in processes):
                    raise SystemExit("a worker exited during the run")
                if now - last_report > 15:
                    _say(f"  {sent:,} of {recipients:,} sent")
                    last_report = now
                time.sleep(0.25)
    finally:
        _stop(processes)


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
    parser.add_argument(
        "--members",
        type=int,
        default=int(os.environ.get("BENCH_CAMPAIGN_MEMBERS", 1_000_000)),
        help="members in the program; the segment picks --recipients of them",
    )
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument(
        "--timeout",
        type=float,
        default=float(os.environ.get("BENCH_CAMPAIGN_TIMEOUT", 900)),
        help="seconds to wait for the last message",
    )
    parser.add_argument("--pg", default=os.environ.get("BENCH_PG", DEFAULT_PG))
    args = parser.parse_args(argv)
    instance, own_redis, database, env = isolated_worker_run("campaigns", args.pg)
    try:
        _say(f"database {database.name}, redis-server on port {own_redis.port}")
        database.create()
        database.build_schema(env)
        members = max(args.members, args.recipients)
        _say(f"seeding {members:,} members with a phone and SMS marketing consent")
        seed(database.url, members, args.recipients)
        campaign_id = create_campaign()
        _say(f"campaign: {args.workers} omniloyal workers, snapshot -> codes + messages -> sent")
        fanned_out, sent, seconds = run_campaign(
            env, args.workers, args.recipients, database.url, campaign_id, args.timeout
        )
        _say(f"baseline: {args.recipients:,} rows written with COPY")
        baseline = run_baseline(database.url, args.recipients)
        report(members, args.recipients, args.workers, fanned_out, sent, seconds, baseline)
    finally:
        database.drop()
        own_redis.stop()
        shutil.rmtree(instance, ignore_errors=True)
    return 0


def report(
    members: int,
    recipients: int,
    workers: int,
    fanned_out: float | None,
    sent: int,
    seconds: float,
    baseline: float,
) -> None:
    print()
    print(
        f"campaigns: {recipients:,} recipients of {members:,} members, {workers} workers,"
        f" {os.cpu_count()} CPUs, load average {' / '.join(f'{x:.2f}' for x in os.getloadavg())}"
    )
    print("| run | messages | seconds | messages/s | ratio to COPY |")
    print("| --- | ---: | ---: | ---: | ---: |")
    copy_rate = recipients / baseline
    rate = sent / seconds
    print(
        "| end to end: launch -> snapshot -> a code issued and a message queued -> rendered,"
        f" handed to the provider | {sent:,} | {seconds:.1f} | {rate:,.0f}"
        f" | {rate / copy_rate:.3f} |"
    )
    if fanned_out is not None:
        print(
            f"| of which: every recipient fanned out after | {recipients:,} | {fanned_out:.1f} | |"
        )
    print(
        f"| raw baseline: the same number of rows written with COPY | {recipients:,} |"
        f" {baseline:.1f} | {copy_rate:,.0f} | 1.000 |"
    )
    if sent < recipients:
        print(f"(cut off by --timeout: {sent:,} of {recipients:,} sent)")


if __name__ == "__main__":
    sys.exit(main())
