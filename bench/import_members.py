"""Bulk member import benchmark: N generated CSV rows into a fresh PostgreSQL database.

    DATABASE_URL=postgresql://postgres@127.0.0.1:5432/omniloyal_import_bench \\
        .venv/bin/python bench/import_members.py --rows 1000000

Creates the database when it doesn't exist, builds the schema (create_all), refuses a
database that already holds members, generates the rows to a temporary CSV (phones, emails,
names, birthdays, opening points, some expiry dates and tiers), runs the same import
operation as `omniloyal members import` (one commit per chunk) and prints rows/s. Then
checks the ledger totals: sum of opening points = points account balances = lot remainders.
Standalone: it needs only this repository and PostgreSQL.
"""

from __future__ import annotations

import argparse
import csv
import os
import random
import sys
import tempfile
import time

import sqlalchemy as sa

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

FIRST = ["Anna", "Léa", "Jonas", "Zoé", "Mehmet", "Chloé", "Ivan", "Aiko", "Søren", "Nuño"]
LAST = ["Martin", "Müller", "García", "Rossi", "Nowak", "Dubois", "Yilmaz", "Öberg", "Li"]


def generate(path: str, rows: int, seed: int = 7) -> None:
    rng = random.Random(seed)
    columns = [
        "external_id",
        "phone",
        "email",
        "name",
        "birthday",
        "locale",
        "timezone",
        "opening_points",
        "opening_points_expire_at",
        "tier",
    ]
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(columns)
        for i in range(rows):
            has_phone = rng.random() < 0.85
            writer.writerow(
                [
                    f"LEG{i:08d}",
                    f"+33 6 {12 + i // 1_000_000:02d} {i % 1_000_000:06d}" if has_phone else "",
                    f"member{i}@shop.example" if not has_phone or rng.random() < 0.6 else "",
                    f"{rng.choice(FIRST)} {rng.choice(LAST)}",
                    f"{rng.randint(1940, 2006)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}",
                    rng.choice(["fr-FR", "de-DE", "en-GB", ""]),
                    rng.choice(["Europe/Paris", "Europe/Berlin", ""]),
                    rng.choice(["0", str(rng.randint(1, 50_000))]),
                    rng.choice(["", "", f"{rng.randint(2027, 2030)}-12-31"]),
                    rng.choice(["", "", "", "silver", "gold"]),
                ]
            )


def ensure_database(url: str) -> None:
    engine_url = sa.make_url(url.replace("postgresql://", "postgresql+psycopg://", 1))
    admin = sa.create_engine(engine_url.set(database="postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        exists = connection.scalar(
            sa.text("SELECT 1 FROM pg_database WHERE datname = :name"),
            {"name": engine_url.database},
        )
        if not exists:
            connection.exec_driver_sql(f'CREATE DATABASE "{engine_url.database}"')
    admin.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--chunk", type=int, default=5000)
    args = parser.parse_args()
    url = os.environ.get("DATABASE_URL", "")
    if not url.startswith("postgresql"):
        sys.exit("set DATABASE_URL to a PostgreSQL database (created when missing)")
    ensure_database(url)

    from loyalty.app import create_app
    from loyalty.clock import utcnow
    from loyalty.db import db
    from loyalty.ledger.models import AccountKind, LedgerAccount, PointLot
    from loyalty.members.importer import ChunkResult, import_members
    from loyalty.members.models import Member
    from loyalty.tiers.models import Tier

    app = create_app(
        {
            "database_url": url,
            "redis_url": None,
            "run_embedded_worker": False,
            "secret_key": "bench-secret-key-0123456789-0123456789-abcdef",
        }
    )
    with app.app_context():
        db.create_all()
        if db.session.scalar(sa.select(sa.func.count()).select_from(Member)):
            sys.exit("the database already holds members; give a fresh DATABASE_URL")
        for rank, code in enumerate(["silver", "gold"], start=1):
            db.session.add(
                Tier(code=code, name=code, rank=rank, threshold=1000 * rank, created_at=utcnow())
            )
        db.session.commit()

        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "members.csv")
            started = time.perf_counter()
            generate(path, args.rows)
            print(f"generated {args.rows:,} rows in {time.perf_counter() - started:.1f} s")
            done = 0

            def commit(result: ChunkResult) -> None:
                nonlocal done
                db.session.commit()
                done += result.imported + result.skipped + len(result.errors)
                if done % 100_000 < args.chunk:
                    rate = done / (time.perf_counter() - started)
                    print(f"  {done:,} rows, {rate:,.0f} rows/s", flush=True)

            started = time.perf_counter()
            with open(path, newline="", encoding="utf-8") as stream:
                stats = import_members(
                    stream,
                    batch="bench",
                    now=utcnow(),
                    actor="bench",
                    chunk_size=args.chunk,
                    after_chunk=commit,
                )
            seconds = time.perf_counter() - started

        balances = db.session.scalar(
            sa.select(sa.func.sum(LedgerAccount.balance)).where(
                LedgerAccount.kind == AccountKind.MEMBER_POINTS.value
            )
        )
        lots = db.session.scalar(sa.select(sa.func.sum(PointLot.remaining)))
        print(
            f"imported {stats.imported:,} members ({stats.errors} invalid rows), "
            f"{stats.points:,} opening points in {seconds:.1f} s: "
            f"{stats.rows / seconds:,.0f} rows/s (chunk {args.chunk})"
        )
        print(
            f"check: opening points {stats.points:,} = balances {int(balances or 0):,} = "
            f"lot remainders {int(lots or 0):,}"
        )
        assert stats.points == balances == lots


if __name__ == "__main__":
    main()
