"""Orchestration: checks, database, seed, gunicorn, scenarios, report; always cleans up."""

from __future__ import annotations

import argparse
import os
import secrets
import signal
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from typing import Any

from bench import coupons, report, scenarios
from bench.database import BenchDatabase
from bench.environment import (
    BenchError,
    CpuWatch,
    check_postgres,
    check_redis,
    ensure_wrk,
    machine_facts,
    require_tools,
)
from bench.load import SQL_DIR, run_wrk
from bench.report import Section
from bench.scenarios import Context, route_exists
from bench.server import Gunicorn, WorkerConfig

DEFAULT_PG = "postgresql://postgres@127.0.0.1:5432"
DEFAULT_REDIS = "redis://127.0.0.1:6379/14"
SCENARIOS: dict[str, Callable[[Context], Section]] = {
    "earn": scenarios.earn,
    "balance": scenarios.balance,
    "codes": coupons.codes,  # before redeem, which then redeems the codes it generated
    "redeem": coupons.redeem,
    "hot": coupons.hot,
}
WORKER_CANDIDATES = (
    WorkerConfig("sync", 4),  # one process per core and a spare for each while it waits
    WorkerConfig("gthread", 2, threads=8),  # more transactions in flight, fewer processes
    WorkerConfig("gthread", 4, threads=8),
)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="Benchmark the API under gunicorn on PostgreSQL beside pgbench baselines.",
    )
    parser.add_argument(
        "--only",
        default=",".join(SCENARIOS),
        help=f"comma-separated scenarios (default: all of {','.join(SCENARIOS)})",
    )
    parser.add_argument(
        "--duration",
        type=int,
        default=_env_int("BENCH_DURATION", 60),
        help="seconds per run (default 60, or $BENCH_DURATION)",
    )
    parser.add_argument(
        "--window", type=int, default=10, help="seconds per throughput window (default 10)"
    )
    parser.add_argument(
        "--scale",
        type=float,
        default=_env_float("BENCH_SCALE", 1.0),
        help=(
            "history for the seeded phase, as a fraction of a real retailer (1.0: 1M members, "
            "10M ledger entries, 1M orders, 1M redemptions, 1M idempotency records); "
            "0 runs the empty database only (default 1.0, or $BENCH_SCALE)"
        ),
    )
    parser.add_argument("--clients", type=int, default=32, help="concurrent clients (default 32)")
    parser.add_argument(
        "--members",
        type=int,
        default=_env_int("BENCH_MEMBERS", 2000),
        help="members the scenarios use, enrolled through the operations (default 2000)",
    )
    parser.add_argument(
        "--tokens", type=int, default=300, help="member tokens rotated by the balance run"
    )
    parser.add_argument(
        "--codes",
        type=int,
        default=_env_int("BENCH_CODES", 1_000_000),
        help="codes for the bulk generation run (default 1,000,000, or $BENCH_CODES)",
    )
    parser.add_argument(
        "--workers",
        help="gunicorn workers, e.g. sync:4 or gthread:4:4 (default: try a few, keep the best)",
    )
    parser.add_argument(
        "--trial-duration", type=int, help="seconds per worker-config trial (default 5)"
    )
    parser.add_argument("--pg", default=DEFAULT_PG, help=f"server (default {DEFAULT_PG})")
    parser.add_argument("--redis", default=DEFAULT_REDIS, help=f"Redis (default {DEFAULT_REDIS})")
    args = parser.parse_args(argv)
    args.only = [name.strip() for name in args.only.split(",") if name.strip()]
    if args.trial_duration is None:
        args.trial_duration = min(5, args.duration)
    unknown = set(args.only) - set(SCENARIOS)
    if unknown:
        parser.error(f"unknown scenario(s) {', '.join(sorted(unknown))}; known: {list(SCENARIOS)}")
    if args.duration < 1 or args.clients < 1 or args.members < args.clients:
        parser.error("--duration and --clients must be positive, --members >= --clients")
    if args.window < 1 or args.scale < 0:
        parser.error("--window must be positive, --scale not negative")
    return args


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name, "").strip()
    try:
        return int(value) if value else default
    except ValueError:
        raise SystemExit(f"bench: ${name} must be an integer, not {value!r}") from None


def _env_float(name: str, default: float) -> float:
    value = os.environ.get(name, "").strip()
    try:
        return float(value) if value else default
    except ValueError:
        raise SystemExit(f"bench: ${name} must be a number, not {value!r}") from None


def _worker_config(spec: str) -> WorkerConfig:
    parts = spec.split(":")
    try:
        if parts[0] == "sync" and len(parts) == 2:
            return WorkerConfig("sync", int(parts[1]))
        if parts[0] == "gthread" and len(parts) == 3:
            return WorkerConfig("gthread", int(parts[1]), threads=int(parts[2]))
    except ValueError:
        pass
    raise BenchError(f"--workers {spec!r}: use sync:<workers> or gthread:<workers>:<threads>")


def _stop_on_sigterm(_signum: int, _frame: object) -> None:
    raise SystemExit(143)  # unwinds through run()'s finally: gunicorn stopped, database dropped


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _stop_on_sigterm)
    try:
        run(args)
    except BenchError as error:
        print(f"\nbench: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\nbench: interrupted (gunicorn stopped, database dropped)", file=sys.stderr)
        return 130
    except SystemExit as stop:
        if stop.code == 143:
            print("\nbench: terminated (gunicorn stopped, database dropped)", file=sys.stderr)
        raise
    return 0


def _say(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", flush=True)


def run(args: argparse.Namespace) -> None:
    started = time.monotonic()
    pg_version = check_postgres(f"{args.pg}/postgres")
    check_redis(args.redis)
    require_tools("psql", "pgbench")
    wrk = ensure_wrk()
    facts = machine_facts(pg_version, wrk)
    cpu = CpuWatch()
    cpu.start()
    database = BenchDatabase(args.pg)
    instance = tempfile.mkdtemp(prefix="bench-instance-")
    env = {
        **os.environ,
        "DATABASE_URL": database.url,
        "REDIS_URL": args.redis,
        "SECRET_KEY": secrets.token_urlsafe(48),
        "LOG_LEVEL": "WARNING",
        "OMNILOYAL_INSTANCE_PATH": instance,
        "OMNILOYAL_EMBEDDED_WORKER": "false",
        # The load comes from one IP and a few keys: keep the rate limiter on (its cost is
        # part of every request) with limits the bench never reaches.
        "OMNILOYAL_RATE_LIMIT_PER_IP": "1000000/second",
        "OMNILOYAL_RATE_LIMIT_PER_CALLER": "1000000/second",
        "OMNILOYAL_RATE_LIMIT_MEMBER_TOKENS": "1000000/second",
        "OMNILOYAL_RATE_LIMIT_IDENTIFY": "1000000/second",
    }
    os.environ.update(env)  # the in-process app (seeding, tokens, captures) sees the same
    server: Gunicorn | None = None
    ctx: Context | None = None
    sections: list[Section] = []
    comparison: list[str] = []
    run_facts: dict[str, str] = {}
    try:
        _say(f"creating database {database.name}")
        database.create()
        run_facts["schema"] = database.build_schema(env)
        from bench import seed

        _say(f"seeding {args.members} members through enrol_member + earn_points")
        seeded = seed.seed_core(args.members)
        seeded.tokens = seed.mint_tokens(seeded.member_ids, args.tokens)
        run_facts["seed"] = (
            f"{args.members} members with 1,000 points each, 1 store, 1 store-bound POS key "
            f"({seeded.seconds:.1f} s through the operations)"
        )
        database.psql_file(SQL_DIR / "raw_tables.sql", {"members": args.members})
        seed.prepare_raw(database, seeded)

        config, trials = _choose_workers(args, wrk, env, seeded)
        run_facts["gunicorn"] = config.label + trials
        from loyalty.app import PLAN_CACHE_MODE

        pg_options = f"-c plan_cache_mode={PLAN_CACHE_MODE}"
        run_facts["load"] = (
            f"{args.clients} concurrent clients, {args.duration} s per run (throughput per "
            f"{args.window} s window), wrk and pgbench on loopback, 2 threads each; pgbench -n "
            f"-M prepared with the app's session settings ({pg_options}), "
            "synchronous_commit on"
        )
        _say(f"starting gunicorn ({config.label})")
        server = Gunicorn(config, env)
        server.start()
        ctx = Context(
            clients=args.clients,
            duration=args.duration,
            database=database,
            wrk_path=wrk,
            server=server,
            seeded=seeded,
            run_prefix=f"r{os.getpid()}-empty",
            codes=args.codes,
            window=args.window,
            phase="empty",
            pg_options=pg_options,
        )
        empty = _run_phase(ctx, args.only)
        sections += empty
        if args.scale > 0:
            try:
                seeded_sections = _seeded_phase(ctx, args, seeded, run_facts)
            except Exception as error:  # keep what the empty phase measured: report it
                run_facts["seeded phase"] = f"FAILED: {type(error).__name__}: {error}"[:500]
                _say(f"the seeded phase failed: {error}")
            else:
                sections += seeded_sections
                comparison = report.history_comparison(empty, seeded_sections)
    finally:
        for running in (server, ctx.server if ctx is not None else None):
            if running is not None:  # the scenarios restart it around pgbench runs
                running.stop()
        _dispose_app()
        try:
            database.drop()
        except Exception as error:  # report, but never hide the original failure
            print(f"bench: could not drop {database.name}: {error}", file=sys.stderr)
    run_facts["load average at end (1 min, 5 min)"] = _load()
    run_facts["total time"] = f"{time.monotonic() - started:.0f} s"
    run_facts["CPU time during the run (core-seconds)"] = cpu.stop()
    markdown = report.document(facts, run_facts, sections, _extra_notes(), comparison)
    path = report.write(markdown)
    print("\n" + markdown)
    _say(f"written to {path}")


def _load() -> str:
    load1, load5, _ = os.getloadavg()
    return f"{load1:.2f}, {load5:.2f}"


def _seeded_phase(
    ctx: Context, args: argparse.Namespace, seeded: Any, run_facts: dict[str, str]
) -> list[Section]:
    """Seed a retailer's history beside the members, then every scenario again."""
    from bench import seed

    run_facts["load average before seeding (1 min, 5 min)"] = _load()
    _say(f"seeding the history at {args.scale:g} x a retailer's size")
    setup = coupons.coupon_setup(ctx)
    run_facts.update(
        seed.seed_history(ctx.database, seeded, setup.distinct_offer_id, args.scale, _say)
    )
    setup.batch_id = None  # the seeded phase redeems codes of its own
    ctx.phase, ctx.run_prefix = "seeded", f"r{os.getpid()}-seeded"
    # Member tokens live OMNILOYAL_MEMBER_TOKEN_TTL (15 min by default); the empty phase and
    # the seed take longer, so the balance run gets fresh tokens, as an app would.
    seeded.tokens = seed.mint_tokens(seeded.member_ids, len(seeded.tokens))
    run_facts["load average before the seeded phase (1 min, 5 min)"] = _load()
    return _run_phase(ctx, args.only)


def _run_phase(ctx: Context, names: list[str]) -> list[Section]:
    """Every chosen scenario on the database as it is now (empty, or seeded)."""
    sections = []
    for name in names:
        ctx.database.settle()
        _say(f"scenario {name} ({ctx.phase} database)")
        section = SCENARIOS[name](ctx)
        section.phase = ctx.phase
        for target in section.targets:
            target.text = f"[{ctx.phase}] {target.text}"
        sections.append(section)
        print("\n".join(report.section_markdown(section)), flush=True)
    return sections


def _choose_workers(
    args: argparse.Namespace, wrk: str, env: dict[str, str], seeded: object
) -> tuple[WorkerConfig, str]:
    """Try each candidate briefly on the earn run (or balance reads) and keep the fastest."""
    if args.workers:
        return _worker_config(args.workers), " (chosen with --workers)"
    from bench.scenarios import trial_load

    script, data = trial_load(seeded)
    if script is None:
        return WORKER_CANDIDATES[0], ""
    results: list[tuple[float, WorkerConfig]] = []
    for n, config in enumerate(WORKER_CANDIDATES):
        server = Gunicorn(config, env)
        try:
            server.start()
            data = {**data, "prefix": f"trial{os.getpid()}-{n}"}
            measured = run_wrk(
                wrk,
                script,
                server.base_url,
                data,
                clients=args.clients,
                duration=args.trial_duration,
                window=args.window,
            )
        finally:
            server.stop()
        _say(f"trial {config.label}: {measured.rps:,.0f} req/s, p99 {measured.p99_ms:.1f} ms")
        results.append((measured.rps if not measured.errors else 0.0, config))
    best = max(results, key=lambda pair: pair[0])[1]
    tried = "; ".join(f"{c.label} {rps:,.0f} req/s" for rps, c in results)
    return best, f" (best of a {args.trial_duration} s {script} trial: {tried})"


def _dispose_app() -> None:
    from bench.appctx import bench_app

    if bench_app.cache_info().currsize:
        from loyalty.db import db

        with bench_app().app_context():
            db.session.remove()
            db.engine.dispose()


def _extra_notes() -> list[str]:
    from bench.database import REPO

    notes = ["## Notes", ""]
    importer = REPO / "bench" / "import_members.py"
    if importer.exists():
        notes.append(
            "- bench/import_members.py (bulk member import rate) exists but is not run by "
            "default; run it on its own: `DATABASE_URL=postgresql://postgres@127.0.0.1:5432/"
            "omniloyal_import_bench .venv/bin/python bench/import_members.py --rows 1000000`."
        )
    notes.append(
        "- Ratios compare throughput measured in this run only; the machine has 2 cores shared "
        "by gunicorn, PostgreSQL, the load generator and anything else running."
    )
    notes.append(
        "- The SQL each API request sends is in bench/results/*_statements.sql "
        "(captured in-process with SQLAlchemy events on the bench database)."
    )
    if not route_exists("POST", "/v1/orders"):
        notes.append("- POST /v1/orders was not there: earning was not measured.")
    return [*notes, ""]
