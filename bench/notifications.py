"""Notifications end to end beside a raw baseline, in one run (`make bench-notify`).

    python -m bench.notifications --messages 100000 --workers 2

1. A fresh PostgreSQL database (`omniloyal db upgrade`) and a redis-server of its own on a
   free port (nothing shared is flushed); members enrolled with a phone number through
   `enrol_member`.
2. Pipeline: `--messages` `points.earned` outbox events are committed at once (as the
   ledger writes them), then `--workers` real `omniloyal worker` processes (RQ workers with
   the scheduler) relay them in chunks to every consumer of the topic (the notifications
   consumer, which queues one SMS each with `create_messages`; the campaign profiles; the
   webhooks), and the send job sends them in chunks of 500 through the recording provider
   (`send_many`: one INSERT per chunk). Timed from the commit of the events to the last
   message `sent`.
3. Baseline, batched the way the pipeline batches: the same number of Redis pushes and
   PostgreSQL state updates, per chunk of 500 messages one Redis round trip of 500 RPUSHes
   and one committed `UPDATE ... SET state = 'sent' WHERE id = ANY(chunk)`, from as many
   processes as there are workers.
4. Checks the run was exactly once (every message sent, recorded by the provider once, one
   provider call each; a shortfall or a repeat ends the bench with an error), then prints
   messages/s for both, the ratio, the per-message overhead and the load average (the
   machine may be shared).
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence

import psycopg
import redis

from bench.database import VENV_BIN, BenchDatabase

DEFAULT_PG = "postgresql://postgres@127.0.0.1:5432"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _say(message: str) -> None:
    print(f"[bench-notify {time.strftime('%H:%M:%S')}] {message}", flush=True)


class OwnRedis:
    def __init__(self, directory: str) -> None:
        if shutil.which("redis-server") is None:
            raise SystemExit("bench-notify needs the redis-server binary")
        self.port = _free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", directory],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        for _ in range(100):
            try:
                redis.Redis.from_url(self.url).ping()
                return
            except redis.ConnectionError:
                time.sleep(0.05)
        raise SystemExit("redis-server did not start")

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=10)


def isolated_worker_run(name: str, pg: str) -> tuple[str, OwnRedis, BenchDatabase, dict[str, str]]:
    """A bench run of real workers on their own database and redis-server: the instance
    folder, the Redis, the database (not created yet) and the environment, also applied to
    this process. Quiet hours and caps are off: the run measures throughput, not policy."""
    instance = tempfile.mkdtemp(prefix=f"bench-{name}-")
    own_redis = OwnRedis(instance)
    database = BenchDatabase(pg)
    database.name = f"omniloyal_bench_{name}_{os.getpid()}"
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
    return instance, own_redis, database, env


def seed(members: int, messages: int, *, only_notifications: bool = False) -> None:
    """Members with phones, then `messages` points.earned events spread over them, committed
    together (the pipeline's clock starts at this commit).

    `only_notifications`: the events are committed already dispatched, with a pending
    delivery for the notifications consumer only (what dispatch would write for it), so
    the run measures the notification path without the other consumers of points.earned
    (campaign profiles, webhooks) sharing the workers."""
    import sqlalchemy as sa

    from bench.appctx import bench_app
    from loyalty.clock import utcnow
    from loyalty.db import db
    from loyalty.members.operations import enrol_member
    from loyalty.outbox.models import OutboxDelivery, OutboxEvent
    from notifications.consumers import CONSUMER

    with bench_app().app_context():
        now = utcnow()
        ids = []
        for n in range(members):
            member = enrol_member(identities={"phone": f"+4915{n:09d}"}, now=now, channel="online")
            ids.append(member.id)
            if n % 1000 == 999:
                db.session.commit()
        # The members' own events (member.enrolled) are the setup, not the workload: the
        # run starts with them relayed, as a live system would have long before.
        db.session.execute(
            sa.update(OutboxEvent.__table__)
            .where(OutboxEvent.__table__.c.dispatched_at.is_(None))
            .values(dispatched_at=now)
        )
        db.session.commit()
        rows = [
            {
                "topic": "points.earned",
                "member_id": ids[i % members],
                "payload": {
                    "transaction_id": i + 1,
                    "points": 10,
                    "kind": "earn",
                    "cause": {"type": "order", "ref": f"bench-{i}"},
                },
                "occurred_at": now,
                "dispatched_at": None,
            }
            for i in range(messages)
        ]
        if only_notifications:
            for row in rows:
                row["dispatched_at"] = now
        events = OutboxEvent.__table__
        for start in range(0, messages, 10_000):
            inserted = db.session.execute(
                sa.insert(events).returning(events.c.id, events.c.member_id),
                rows[start : start + 10_000],
            ).all()
            if only_notifications:
                db.session.execute(
                    sa.insert(OutboxDelivery.__table__),
                    [
                        {"event_id": event_id, "consumer": CONSUMER, "member_id": member_id,
                         "status": "pending", "attempts": 0, "next_attempt_at": now,
                         "created_at": now, "updated_at": now}
                        for event_id, member_id in inserted
                    ],
                )  # fmt: skip
        db.session.commit()


def run_pipeline(
    env: dict[str, str], workers: int, messages: int, database_url: str, timeout: float
) -> float:
    """Start the workers, wait for every message to be `sent` (at most `timeout` s: a
    message suppressed or failed would keep the count short for ever); returns the seconds
    taken from the events' commit (just before this call) to the last send."""
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
    try:
        with psycopg.connect(database_url, autocommit=True) as connection:
            last_report = started
            while True:
                sent = connection.execute(
                    "SELECT count(*) FROM messages WHERE state = 'sent'"
                ).fetchone()[0]
                if sent >= messages:
                    return time.perf_counter() - started
                if time.perf_counter() - started > timeout:
                    raise SystemExit(f"only {sent:,} of {messages:,} sent after {timeout:.0f} s")
                if any(p.poll() is not None for p in processes):
                    raise SystemExit("a worker exited during the run")
                if time.perf_counter() - last_report > 15:
                    _say(f"  {sent:,} of {messages:,} sent")
                    last_report = time.perf_counter()
                time.sleep(0.25)
    finally:
        for process in processes:
            process.send_signal(signal.SIGTERM)
        for process in processes:
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()


def exactly_once(database_url: str) -> tuple[int, int, int]:
    """What the recording provider was handed: (messages sent, messages it recorded,
    provider calls). Exactly once: all three are equal."""
    with psycopg.connect(database_url) as connection:
        row = connection.execute(
            "SELECT (SELECT count(*) FROM messages WHERE state = 'sent'),"
            " count(DISTINCT message_id), coalesce(sum(calls), 0) FROM recorded_messages"
        ).fetchone()
    return int(row[0]), int(row[1]), int(row[2])


BASELINE_CHUNK = 500  # the send job's chunk (notifications.pipeline.SEND_CHUNK)


def _baseline_worker(database_url: str, redis_url: str, first: int, last: int) -> None:
    connection = psycopg.connect(database_url)
    queue = redis.Redis.from_url(redis_url)
    for start in range(first, last, BASELINE_CHUNK):
        ids = list(range(start, min(last, start + BASELINE_CHUNK)))
        pushes = queue.pipeline(transaction=False)
        for message_id in ids:
            pushes.rpush("bench:raw", message_id)
        pushes.execute()
        connection.execute(
            "UPDATE bench_raw SET state = 'sent', updated_at = now() WHERE id = ANY(%s)", (ids,)
        )
        connection.commit()
    connection.close()


def run_baseline(database_url: str, redis_url: str, workers: int, messages: int) -> float:
    with psycopg.connect(database_url, autocommit=True) as connection:
        connection.execute(
            "CREATE TABLE bench_raw (id bigint PRIMARY KEY, state text NOT NULL,"
            " updated_at timestamptz)"
        )
        connection.execute(
            "INSERT INTO bench_raw SELECT g, 'queued', NULL FROM generate_series(1, %s) g",
            (messages,),
        )
        connection.execute("ANALYZE bench_raw")
    share = -(-messages // workers)
    started = time.perf_counter()
    processes = [
        multiprocessing.Process(
            target=_baseline_worker,
            args=(database_url, redis_url, 1 + i * share, min(messages, (i + 1) * share) + 1),
        )
        for i in range(workers)
    ]
    for process in processes:
        process.start()
    for process in processes:
        process.join()
    return time.perf_counter() - started


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.notifications")
    parser.add_argument(
        "--messages", type=int, default=int(os.environ.get("BENCH_NOTIFY_MESSAGES", 100_000))
    )
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument(
        "--consumers",
        choices=("notifications", "all"),
        default=os.environ.get("BENCH_NOTIFY_CONSUMERS", "notifications"),
        help="notifications: events handed to the notifications consumer only (default); "
        "all: dispatched to every consumer of points.earned (campaign profiles, webhooks)",
    )
    parser.add_argument(
        "--members", type=int, default=0, help="default: messages / 20, at most 5,000"
    )
    parser.add_argument(
        "--timeout", type=float, default=1800, help="seconds to wait for the last message"
    )
    parser.add_argument("--pg", default=os.environ.get("BENCH_PG", DEFAULT_PG))
    args = parser.parse_args(argv)
    members = args.members or max(1, min(args.messages // 20, 5_000))
    instance, own_redis, database, env = isolated_worker_run("notify", args.pg)
    try:
        _say(f"database {database.name}, redis-server on port {own_redis.port}")
        database.create()
        database.build_schema(env)
        _say(f"seeding {members:,} members and {args.messages:,} points.earned events")
        seed(members, args.messages, only_notifications=args.consumers == "notifications")
        _say(f"pipeline: {args.workers} omniloyal workers, outbox -> RQ -> recording provider")
        pipeline_seconds = run_pipeline(
            env, args.workers, args.messages, database.url, args.timeout
        )
        sent, recorded, calls = exactly_once(database.url)
        if not sent == recorded == calls == args.messages:
            raise SystemExit(f"not exactly once: {sent} sent, {recorded} recorded, {calls} calls")
        _say(f"exactly once: {sent:,} sent, {recorded:,} recorded, {calls:,} provider calls")
        _say(f"baseline: {args.messages:,} Redis pushes + PostgreSQL updates")
        baseline_seconds = run_baseline(database.url, own_redis.url, args.workers, args.messages)
        report(args.messages, args.workers, pipeline_seconds, baseline_seconds, args.consumers)
    finally:
        database.drop()
        own_redis.stop()
        shutil.rmtree(instance, ignore_errors=True)
    return 0


def report(
    messages: int,
    workers: int,
    pipeline_seconds: float,
    baseline_seconds: float,
    consumers: str = "notifications",
) -> None:
    pipeline_rate = messages / pipeline_seconds
    baseline_rate = messages / baseline_seconds
    overhead_ms = (pipeline_seconds - baseline_seconds) * 1000 * workers / messages
    print()
    load = " / ".join(f"{value:.2f}" for value in os.getloadavg())
    print(
        f"notifications: {messages:,} messages, {workers} workers, {os.cpu_count()} CPUs, "
        f"load average {load} (1/5/15 min) at the end"
    )
    print("| run | seconds | messages/s |")
    print("| --- | ---: | ---: |")
    path = "notifications consumer" if consumers == "notifications" else "every consumer"
    rows = [
        (
            f"pipeline (outbox -> {path} -> RQ send job -> provider), chunks",
            pipeline_seconds,
        ),
        (
            f"raw baseline (per {BASELINE_CHUNK}: {BASELINE_CHUNK} RPUSH in one round trip"
            " + one UPDATE ... = ANY)",
            baseline_seconds,
        ),
    ]
    for name, seconds in rows:
        print(f"| {name} | {seconds:.1f} | {messages / seconds:,.0f} |")
    print(f"| ratio pipeline / baseline | | {pipeline_rate / baseline_rate:.2f} |")
    print(f"| overhead per message (worker time beyond the baseline) | | {overhead_ms:.2f} ms |")


if __name__ == "__main__":
    sys.exit(main())
