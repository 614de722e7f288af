"""Segment counts on a generated member base, beside the same SELECT run raw by psql.

    python -m bench.segments                 # 1,000,000 members (make bench runs this)
    python -m bench.segments --members 100000

Creates a throw-away database, builds the schema (create_all), seeds members, profiles,
category purchases, tags and point lots with INSERT ... SELECT generate_series (FK
triggers off while seeding: `session_replication_role = replica`; point lots then name a
ledger transaction that doesn't exist, which no query here reads), scores RFM with the
nightly job's UPDATE, ANALYZEs, then times three representative segments: the count as
the app runs it (SQLAlchemy, psycopg, `plan_cache_mode = force_custom_plan`) and the exact
same SQL through `psql` (`\\timing`), median of 5 runs after one warm-up each.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import time
from datetime import UTC, datetime

import psycopg
import sqlalchemy as sa

from campaigns.schemas import ISSUE_EXAMPLE_RULE

SERVER = os.environ.get("BENCH_PG", "postgresql://postgres@127.0.0.1:5432")

SEGMENTS = {
    "gold+ in the north, spent 500+ this year": {
        "and": [
            {"field": "tier", "op": "in", "value": ["gold", "platinum"]},
            {"field": "region", "op": "eq", "value": "north"},
            {"field": "spend_365d_minor", "op": "gte", "value": 50_000},
        ]
    },
    "the issue's example (phones in store not app, 500+ pts expiring in 30 d)": ISSUE_EXAMPLE_RULE,
    "RFM champions or lapsed big spenders, not staff": {
        "and": [
            {
                "or": [
                    {
                        "and": [
                            {"field": "rfm_recency", "op": "gte", "value": 4},
                            {"field": "rfm_frequency", "op": "gte", "value": 4},
                            {"field": "rfm_monetary", "op": "gte", "value": 4},
                        ]
                    },
                    {
                        "and": [
                            {"field": "last_order_at", "op": "more_than_days_ago", "value": 180},
                            {"field": "spend_lifetime_minor", "op": "gte", "value": 100_000},
                        ]
                    },
                ]
            },
            {"not": {"field": "tags", "op": "contains_any", "value": ["staff"]}},
        ]
    },
}

SEED = """
SET session_replication_role = replica;
SELECT setseed(0.42);
INSERT INTO stores (id, name, region, timezone, partner, active, created_at)
SELECT 'S' || g, 'Store ' || g, (ARRAY['north','south','east','west'])[1 + g % 4], 'UTC',
       false, true, now() FROM generate_series(1, 50) g;
INSERT INTO tiers (code, name, rank, basis, threshold, window_days, earn_multiplier_pct, created_at)
VALUES ('silver', 'Silver', 1, 'qualifying_points', 0, 365, 100, now()),
       ('gold', 'Gold', 2, 'qualifying_points', 1000, 365, 100, now()),
       ('platinum', 'Platinum', 3, 'qualifying_points', 5000, 365, 100, now());
INSERT INTO members (id, status, locale, timezone, region, attributes, tier_id, enrolled_channel,
                     created_at, updated_at, token_epoch)
SELECT g, CASE WHEN g % 50 = 0 THEN 'blocked' ELSE 'active' END, 'en', 'UTC',
       (ARRAY['north','south','east','west'])[1 + g % 4], '{}',
       CASE WHEN r < 0.6 THEN 1 WHEN r < 0.9 THEN 2 ELSE 3 END,
       (ARRAY['online','app','store','partner'])[1 + g % 4],
       now() - random() * interval '1500 days', now(), 0
FROM (SELECT g, random() AS r FROM generate_series(1, {n}) g) x;
INSERT INTO member_profiles (person_id, points_balance, orders_lifetime, spend_lifetime_minor,
    orders_30d, spend_30d_minor, orders_90d, spend_90d_minor, orders_365d, spend_365d_minor,
    online_orders, store_orders, first_order_at, first_order_channel, first_order_store_id,
    last_order_at, last_order_channel, last_order_store_id, favourite_store_id, refreshed_at)
SELECT g, (random() * 3000)::int, n, n * avg, n30, n30 * avg, n90, n90 * avg, n365, n365 * avg,
       n / 2, n - n / 2,
       CASE WHEN n > 0 THEN now() - interval '800 days' + age * interval '1 day' END,
       CASE WHEN n > 0 THEN 'online' END, NULL,
       CASE WHEN n > 0 THEN now() - age * interval '1 day' END,
       CASE WHEN n > 0 THEN (ARRAY['online','app','store','partner'])[1 + g % 4] END,
       CASE WHEN n > 0 THEN 'S' || (1 + g % 50) END,
       CASE WHEN n > 0 THEN 'S' || (1 + g % 50) END,
       now()
FROM (SELECT g, n, 1000 + (random() * 20000)::int AS avg, random() * 700 AS age,
             least(n, (random() * 1.5)::int) AS n30, least(n, (random() * 2.5)::int) AS n90,
             least(n, (random() * 5)::int) AS n365
      FROM (SELECT g, (random() * random() * 14)::int AS n FROM generate_series(1, {n}) g) y) x;
INSERT INTO member_category_purchases (person_id, category, channel, first_at, last_at)
SELECT p.person_id, 'c' || (1 + (random() * 19)::int),
       (ARRAY['online','app','store','partner'])[1 + k],
       p.first_order_at, p.last_order_at - random() * interval '60 days'
FROM member_profiles p CROSS JOIN generate_series(0, 3) k
WHERE p.orders_lifetime > 0 AND random() < 0.45
ON CONFLICT DO NOTHING;
UPDATE member_category_purchases SET category = 'phones'
WHERE person_id % 7 = 0 AND category = 'c1';
INSERT INTO member_category_purchases (person_id, category, channel, first_at, last_at)
SELECT person_id, 'phones', (ARRAY['store','app'])[1 + (random() * 1.2)::int % 2],
       last_order_at, last_order_at
FROM member_profiles WHERE orders_lifetime > 0 AND random() < 0.12
ON CONFLICT DO NOTHING;
INSERT INTO member_tags (person_id, tag)
SELECT g, (ARRAY['vip','staff','press'])[1 + g % 3] FROM generate_series(1, {n}) g
WHERE random() < 0.06;
INSERT INTO point_lots (member_id, status, amount, remaining, earned_at, expires_at,
                        source_transaction_id, cause_type, cause_ref,
                        expired_points, reversed_points)
SELECT g, 'available', a, a, now() - interval '200 days', now() + random() * interval '400 days',
       1, 'bench', 'b' || g, 0, 0
FROM (SELECT g, 1 + (random() * 1500)::int AS a FROM generate_series(1, {n}) g) x;
SET session_replication_role = DEFAULT;
"""


def _psql(url: str, sql: str, *, timing: bool = False) -> str:
    command = ["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-At", url]
    if timing:
        command += ["-c", "\\timing on"]
    result = subprocess.run(
        [*command, "-c", sql], capture_output=True, text=True, timeout=3600, check=False
    )
    if result.returncode != 0:
        raise SystemExit(f"psql failed: {result.stderr.strip()}\n{sql[:400]}")
    return result.stdout


def _raw_sql(statement: sa.Select, connection: psycopg.Connection) -> str:
    from sqlalchemy.dialects import postgresql

    compiled = statement.compile(
        dialect=postgresql.dialect(), compile_kwargs={"render_postcompile": True}
    )
    params = {
        name: value.astimezone(UTC) if isinstance(value, datetime) else value
        for name, value in compiled.params.items()
    }
    return psycopg.ClientCursor(connection).mogrify(str(compiled), params)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument(
        "--members", type=int, default=int(os.environ.get("BENCH_SEGMENT_MEMBERS", 1_000_000))
    )
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--keep", action="store_true", help="keep the database afterwards")
    args = parser.parse_args()
    name = f"omniloyal_bench_segments_{os.getpid()}"
    url = f"{SERVER}/{name}"
    with psycopg.connect(f"{SERVER}/postgres", autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        return _run(url, args)
    finally:
        if not args.keep:
            with psycopg.connect(f"{SERVER}/postgres", autocommit=True) as admin:
                admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _run(url: str, args: argparse.Namespace) -> int:
    from campaigns import profiles, segments
    from campaigns.compiler import compile_rule
    from loyalty.app import create_app
    from loyalty.clock import utcnow
    from loyalty.db import db

    app = create_app(
        {
            "database_url": url.replace("postgresql://", "postgresql+psycopg://"),
            "secret_key": "bench-secret-key-that-is-long-enough-0123456789",
            "run_embedded_worker": False,
        }
    )
    with app.app_context():
        db.create_all()
    started = time.monotonic()
    _psql(url, SEED.replace("{n}", str(args.members)))
    seeded = time.monotonic() - started
    with app.app_context():
        started = time.monotonic()
        profiles.score_rfm(utcnow())
        db.session.commit()
        rfm = time.monotonic() - started
    _psql(url, "VACUUM ANALYZE")
    print(
        f"\nseeded {args.members:,} members in {seeded:.1f} s; "
        f"RFM scoring (nightly UPDATE) {rfm:.1f} s\n"
    )
    rows = []
    with app.app_context(), psycopg.connect(url) as raw:
        now = utcnow()
        for label, rule in SEGMENTS.items():
            query = compile_rule(rule, now)
            counted = sa.select(sa.func.count()).select_from(query.subquery())
            app_times, result = [], 0
            for attempt in range(args.runs + 1):
                started = time.monotonic()
                result = segments.count(query)
                db.session.commit()
                if attempt:
                    app_times.append(time.monotonic() - started)
            sql = _raw_sql(counted, raw)
            psql_times = []
            for attempt in range(args.runs + 1):
                output = _psql(url, sql, timing=True)
                ms = float(re.findall(r"Time: ([0-9.]+) ms", output)[-1])
                if attempt:
                    psql_times.append(ms / 1000)
            rows.append(
                (label, result, statistics.median(app_times), statistics.median(psql_times))
            )
    print(f"| segment ({args.members:,} members) | count | app (median) | psql (median) | target |")
    print("| --- | ---: | ---: | ---: | --- |")
    for label, result, app_s, psql_s in rows:
        verdict = "met" if app_s < 1 else "missed"
        print(
            f"| {label} | {result:,} | {app_s * 1000:.0f} ms | {psql_s * 1000:.0f} ms "
            f"| < 1 s: {verdict} |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
