"""Campaign fan-out beside a raw COPY baseline, in one run (`make bench-campaigns`).

    python -m bench.campaigns --recipients 50000 --workers 2

1. A fresh PostgreSQL database (`omniloyal db upgrade`) and a redis-server of its own on a
   free port; `--recipients` members seeded with SQL (a phone each, SMS marketing consent),
   a coupons offer, a segment over all of them.
2. Campaign: a coupon campaign (no control group, so every member is messaged) launched at
   t0. Fan-out: `--workers` real `omniloyal worker` processes (RQ workers with the
   scheduler) on the `campaigns` queue start its run (audience snapshot) and fan it out (a
   unique code issued and a message queued per recipient, in chunks), timed from the
   launch's commit to the last recipient. Sends: as many workers on the `notifications`
   queue render the messages and hand them to the recording provider, timed apart.
3. Baseline: the same number of rows (member id, a code, a rendered text) written with one
   COPY into a plain table.
4. Prints messages/s for each stage beside the baseline, and the ratios. The sends are
   waited for at most `--send-timeout` seconds (default 300; the rate so far is reported):
   the send pipeline commits per message.
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


def _wait(
    database_url: str, query: str, params: dict[str, object], target: int, timeout: float,
    processes: list[subprocess.Popen], what: str,
) -> tuple[int, float]:  # fmt: skip
    """Poll `query` until it reaches `target` or `timeout`; returns (count, seconds)."""
    started = last_report = time.perf_counter()
    with psycopg.connect(database_url, autocommit=True) as connection:
        while True:
            count = connection.execute(query, params).fetchone()[0]
            now = time.perf_counter()
            if count >= target:
                return count, now - started
            if now - started > timeout:
                _say(f"  stopped waiting after {timeout:.0f} s: {count:,} {what}")
                return count, now - started
            if any(p.poll() is not None for p in processes):
                raise SystemExit("a worker exited during the run")
            if now - last_report > 15:
                _say(f"  {count:,} of {target:,} {what}")
                last_report = now
            time.sleep(0.25)


def run_campaign(
    env: dict[str, str],
    workers: int,
    recipients: int,
    database_url: str,
    campaign_id: int,
    send_timeout: float,
) -> tuple[float, int, float]:
    """Two stages, each with `workers` real workers, timed apart: the fan-out (workers on
    the `campaigns` queue: snapshot, codes, messages queued) from the launch's commit, then
    the sends (workers on the `notifications` queue: rendered, handed to the provider),
    waited for at most `send_timeout` s. Returns (fan-out s, messages sent, sending s)."""
    launch(campaign_id)
    fanning = _workers(env, workers, ["default", "campaigns"])
    try:
        _, fan_out = _wait(
            database_url,
            "SELECT count(*) FROM campaign_recipients WHERE status <> 'pending'"
            " AND campaign_id = %(c)s",
            {"c": campaign_id}, recipients, 3600, fanning, "fanned out",
        )  # fmt: skip
    finally:
        _stop(fanning)
    sending = _workers(env, workers, ["notifications"])
    try:
        sent, seconds = _wait(
            database_url, "SELECT count(*) FROM messages WHERE state = 'sent'", {},
            recipients, send_timeout, sending, "sent",
        )  # fmt: skip
    finally:
        _stop(sending)
    return fan_out, sent, seconds


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
    parser.add_argument(
        "--send-timeout",
        type=float,
        default=float(os.environ.get("BENCH_CAMPAIGN_SEND_TIMEOUT", 300)),
        help="seconds to wait for the sends once the fan-out is done",
    )
    parser.add_argument("--pg", default=os.environ.get("BENCH_PG", DEFAULT_PG))
    args = parser.parse_args(argv)
    instance, own_redis, database, env = isolated_worker_run("campaigns", args.pg)
    try:
        _say(f"database {database.name}, redis-server on port {own_redis.port}")
        database.create()
        database.build_schema(env)
        _say(f"seeding {args.recipients:,} members with a phone and SMS marketing consent")
        seed(database.url, args.recipients)
        campaign_id = create_campaign()
        _say(f"campaign: {args.workers} omniloyal workers, snapshot -> codes + messages -> sent")
        fan_out, sent, sending = run_campaign(
            env, args.workers, args.recipients, database.url, campaign_id, args.send_timeout
        )
        _say(f"baseline: {args.recipients:,} rows written with COPY")
        baseline = run_baseline(database.url, args.recipients)
        report(args.recipients, args.workers, fan_out, sent, sending, baseline)
    finally:
        database.drop()
        own_redis.stop()
        shutil.rmtree(instance, ignore_errors=True)
    return 0


def report(
    recipients: int, workers: int, fan_out: float, sent: int, sending: float, baseline: float
) -> None:
    print()
    print(f"campaigns: {recipients:,} recipients, {workers} workers, {os.cpu_count()} CPUs")
    print("| stage | messages | seconds | messages/s | ratio to COPY |")
    print("| --- | ---: | ---: | ---: | ---: |")
    copy_rate = recipients / baseline
    rows = [
        ("fan-out: snapshot, a code issued and a message queued each", recipients, fan_out),
        ("sends: rendered and handed to the recording provider", sent, sending),
        ("raw baseline: the same number of rows written with COPY", recipients, baseline),
    ]
    for name, count, seconds in rows:
        rate = count / seconds
        print(f"| {name} | {count:,} | {seconds:.1f} | {rate:,.0f} | {rate / copy_rate:.3f} |")
    if sent < recipients:
        print(f"(sends cut off by --send-timeout: {sent:,} of {recipients:,})")


if __name__ == "__main__":
    sys.exit(main())
