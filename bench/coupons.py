"""Coupon scenarios: bulk code generation, POS redemption of distinct codes, one hot code."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from bench.appctx import bench_app
from bench.capture import capture_request
from bench.database import REPO
from bench.environment import BenchError
from bench.load import Measurement
from bench.openloop import http_request
from bench.report import Row, Section
from bench.scenarios import (
    REDEEM_P99_MS,
    Context,
    note_errors,
    route_exists,
    save_capture,
    script_round_trips,
)

HOT_CODE = "BENCHHOT25"
HOT_CODE_LIMIT = 100_000_000  # a limit, so the conditional UPDATE checks it, never reached
REDEEM_CODES_WITHOUT_BULK = 400_000  # when the codes scenario's batch is missing or smaller
CODES_PER_SECOND_OF_RUN = 15_000  # what the fastest script (bare statement) may use, per second
API_CODES_CAP = 120_000  # codes handed to wrk, then the open loop (more than both redeem)
LINES = [
    {"sku": "SKU-1", "category": "shoes", "quantity": 1, "unit_price_minor": 8999},
    {"sku": "SKU-SOCKS", "category": "accessories", "quantity": 2, "unit_price_minor": 799},
]


def coupons_available() -> str | None:
    """None when the coupons package and its redeem endpoint exist, else why not."""
    if not (REPO / "loyalty" / "coupons" / "api.py").exists():
        return "loyalty/coupons/api.py does not exist yet."
    try:
        from loyalty.coupons import offers  # noqa: F401
    except ImportError as error:
        return f"loyalty.coupons.offers can't be imported: {error}"
    if not route_exists("POST", "/v1/coupons/redeem"):
        return "POST /v1/coupons/redeem does not exist yet."
    return None


@dataclass
class CouponSetup:
    distinct_offer_id: int
    hot_offer_id: int
    batch_id: int | None = None  # the single-use codes redeemed by the redeem scenario
    batch_first_id: int = 0
    batch_size: int = 0


def coupon_setup(ctx: Context) -> CouponSetup:
    """Two offers through the coupons operations (once per run): 10 % off, 5 EUR off."""
    if ctx.coupon_setup is not None:
        return ctx.coupon_setup
    from loyalty.db import db

    with bench_app().app_context():
        distinct_id, hot_id = create_offers(HOT_CODE_LIMIT)
        db.session.commit()
        setup = CouponSetup(distinct_offer_id=distinct_id, hot_offer_id=hot_id)
    ctx.coupon_setup = setup
    return setup


def create_offers(hot_code_limit: int) -> tuple[int, int]:
    """In the current app context, uncommitted: 10 % off (for single-use codes) and 5 EUR
    off with the shared HOT_CODE; their ids."""
    from loyalty.clock import utcnow
    from loyalty.coupons.offers import create_offer, create_shared_code

    now = utcnow()
    distinct = create_offer(
        {"name": "Bench 10 % off", "kind": "percent", "percent_bp": 1000, "currency": "EUR"},
        now=now,
        actor="bench",
    )
    hot = create_offer(
        {"name": "Bench 5 EUR off", "kind": "fixed_amount", "amount_minor": 500, "currency": "EUR"},
        now=now,
        actor="bench",
    )
    create_shared_code(hot.id, HOT_CODE, max_uses=hot_code_limit, now=now, actor="bench")
    return distinct.id, hot.id


def _generate(offer_id: int, count: int) -> tuple[int, float]:
    """generate_codes + commit, as `omniloyal coupons generate` does; (batch id, seconds)."""
    from loyalty.clock import utcnow
    from loyalty.coupons.offers import generate_codes
    from loyalty.db import db

    with bench_app().app_context():
        started = time.perf_counter()
        batch = generate_codes(offer_id, count, now=utcnow(), actor="bench", max_uses=1)
        db.session.commit()
        return batch.id, time.perf_counter() - started


def _remember_batch(ctx: Context, setup: CouponSetup, batch_id: int) -> None:
    row = ctx.database.psql(
        f"SELECT min(id), max(id), count(*) FROM coupon_codes WHERE batch_id = {batch_id}"
    )
    first, last, count = (int(x) for x in row.split("|"))
    if last - first + 1 != count:
        raise BenchError(f"batch {batch_id} ids are not contiguous; redeem_distinct.sql needs it")
    setup.batch_id, setup.batch_first_id, setup.batch_size = batch_id, first, count


# --- bulk generation -------------------------------------------------------------------------


def codes(ctx: Context) -> Section:
    count = ctx.codes
    section = Section("codes", f"Bulk generation of {count:,} coupon codes", unit="codes/s")
    missing = coupons_available()
    if missing:
        section.skipped = missing
        return section
    setup = coupon_setup(ctx)
    ctx.database.psql("CHECKPOINT")  # both runs start without a pending checkpoint
    batch_id, seconds = _generate(setup.distinct_offer_id, count)
    api = Measurement(rps=count / seconds, p50_ms=-1, p99_ms=-1, completed=count)
    section.rows.append(Row("API operation: offers.generate_codes + commit", api, "api"))
    _remember_batch(ctx, setup, batch_id)
    ctx.database.psql("CHECKPOINT")
    started = time.perf_counter()
    ctx.database.psql_file(
        Path(__file__).resolve().parent / "sql" / "codes_raw.sql",
        {"offer_id": setup.distinct_offer_id, "count": count},
    )
    raw_seconds = time.perf_counter() - started
    raw = Measurement(rps=count / raw_seconds, p50_ms=-1, p99_ms=-1, completed=count)
    label = "raw: INSERT ... SELECT generate_series via psql"
    section.rows.append(Row(label, raw, "raw"))
    section.notes.append(
        f"{count:,} codes in {seconds:.1f} s through the operation (12 random Crockford "
        f"characters from `secrets`, COPY to a temp table, INSERT ... ON CONFLICT DO NOTHING), "
        f"{raw_seconds:.1f} s for the raw INSERT (12 hex characters from md5(random())), both "
        "into coupon_codes with its unique index. Latency columns do not apply."
    )
    return section


# --- redemption ------------------------------------------------------------------------------


def _redeem_body(code: str, store_id: str, order_ref: str) -> dict[str, object]:
    return {
        "codes": [code],
        "store_id": store_id,
        "channel": "store",
        "currency": "EUR",
        "lines": LINES,
        "order_ref": order_ref,
    }


def _redeem_factory(
    ctx: Context, code_for: Callable[[int], str], name: str
) -> Callable[[int], bytes]:
    """The open-loop twin of lua/redeem*.lua: a new order reference and key per request."""

    def make(index: int) -> bytes:
        order_ref = f"{ctx.run_prefix}-{name}-{index}"
        body = json.dumps(_redeem_body(code_for(index), ctx.seeded.store_id, order_ref))
        headers = {
            "Authorization": f"Bearer {ctx.seeded.pos_key}",
            "Content-Type": "application/json",
            "Idempotency-Key": order_ref,
        }
        return http_request("POST", "/v1/coupons/redeem", headers, body.encode())

    return make


def _probe(ctx: Context, code: str, name: str, *, save: bool = True) -> tuple[int, str, int]:
    order_ref = f"{ctx.run_prefix}-{name}-probe-{uuid.uuid4().hex[:8]}"
    captured = capture_request(
        "POST",
        "/v1/coupons/redeem",
        headers={"Authorization": f"Bearer {ctx.seeded.pos_key}", "Idempotency-Key": order_ref},
        json=_redeem_body(code, ctx.seeded.store_id, order_ref),
    )
    if save and captured.status < 300:
        save_capture(name, captured)
    return captured.status, captured.response, captured.count


def redeem(ctx: Context) -> Section:
    section = Section(
        "redeem",
        f"POS redemption of distinct single-use codes ({ctx.clients} clients, {ctx.duration} s)",
    )
    missing = coupons_available()
    if missing:
        section.skipped = missing
        return section
    setup = coupon_setup(ctx)
    needed = max(REDEEM_CODES_WITHOUT_BULK, ctx.duration * CODES_PER_SECOND_OF_RUN)
    if setup.batch_id is None or setup.batch_size < needed:  # e.g. a small --codes batch
        batch_id, _ = _generate(setup.distinct_offer_id, needed)
        _remember_batch(ctx, setup, batch_id)
    # Disjoint code ranges: wrk's list, then the rest for the two pgbench scripts. The bare
    # statement runs several times faster than the whole checkout (over 6,000 a second on a
    # quick machine), so it gets three quarters: with half, it ran out of codes.
    api_codes = min(API_CODES_CAP, setup.batch_size // 10)
    exact_share = (setup.batch_size - api_codes - 2) // 4
    exact_first = setup.batch_first_id + api_codes + 2
    listed = ctx.database.psql(
        f"SELECT code FROM coupon_codes WHERE batch_id = {setup.batch_id} "
        f"ORDER BY id LIMIT {api_codes + 2}"
    ).split()
    # Warm the app, then capture the steady state on a second code.
    _probe(ctx, listed[-1], "redeem", save=False)
    status, response, round_trips = _probe(ctx, listed[-2], "redeem")
    if status >= 300:
        section.skipped = f"a probe redemption was refused ({status}): {response[:300]}"
        return section
    # wrk takes codes from the front of the list, the open loop from the back.
    api = ctx.wrk(
        "redeem.lua",
        {
            "api_key": ctx.seeded.pos_key,
            "store_id": ctx.seeded.store_id,
            "prefix": f"{ctx.run_prefix}-redeem",
            "codes": listed[:api_codes],
        },
    )
    label = f"API: POST /v1/coupons/redeem, one new code each ({ctx.server.config.label})"
    section.rows.append(Row(label, api, "api"))
    note_errors(section, api)
    if api.completed >= api_codes:
        section.notes.append(f"wrk used up its {api_codes:,} codes: later requests were refused")
    unused = list(reversed(listed[min(api.completed + api.errors, api_codes) : api_codes]))
    ctx.open_loop(
        section,
        _redeem_factory(ctx, lambda index: unused[index % len(unused)], "redeem-open"),
        api,
        what="POS redemption",
        p99_target_ms=REDEEM_P99_MS,
    )
    scripted = script_round_trips("redeem_distinct.sql")
    ctx.raw(
        section,
        "raw: the same statements on distinct codes (pgbench)",
        "redeem_distinct.sql",
        _redeem_variables(ctx, setup.distinct_offer_id, first_code_id=exact_first),
    )
    ctx.raw(
        section,
        "raw: conditional UPDATE + INSERT only (pgbench)",
        "redeem_minimal.sql",
        _redeem_variables(ctx, setup.distinct_offer_id, first_code_id=exact_first + exact_share),
    )
    section.notes.append(
        f"The API sends {round_trips} round trips per redemption "
        f"(bench/results/redeem_statements.sql), redeem_distinct.sql {scripted}."
        + ("" if scripted == round_trips else " They differ: re-check redeem_distinct.sql.")
    )
    return section


def hot(ctx: Context) -> Section:
    section = Section(
        "hot", f"Redemption of one hot shared code ({ctx.clients} clients, {ctx.duration} s)"
    )
    missing = coupons_available()
    if missing:
        section.skipped = missing
        return section
    setup = coupon_setup(ctx)
    _probe(ctx, HOT_CODE, "hot", save=False)
    status, response, round_trips = _probe(ctx, HOT_CODE, "hot")
    if status >= 300:
        section.skipped = f"a probe redemption was refused ({status}): {response[:300]}"
        return section
    api = ctx.wrk(
        "redeem_hot.lua",
        {
            "api_key": ctx.seeded.pos_key,
            "store_id": ctx.seeded.store_id,
            "prefix": f"{ctx.run_prefix}-hot",
            "code": HOT_CODE,
        },
    )
    section.rows.append(Row(f"API: POST /v1/coupons/redeem {HOT_CODE}", api, "api"))
    note_errors(section, api)
    ctx.open_loop(
        section,
        _redeem_factory(ctx, lambda _index: HOT_CODE, "hot-open"),
        api,
        what="hot code redemption",
        p99_target_ms=REDEEM_P99_MS,
    )
    code_id = ctx.database.psql(f"SELECT id FROM coupon_codes WHERE code = '{HOT_CODE}'")
    variables = _redeem_variables(ctx, setup.hot_offer_id, first_code_id=int(code_id))
    scripted = script_round_trips("redeem_hot.sql")
    label = "raw: the same statements on the one row (pgbench)"
    ctx.raw(section, label, "redeem_hot.sql", variables)
    label = "raw: conditional UPDATE + INSERT only, on the one row (pgbench)"
    ctx.raw(section, label, "redeem_hot_minimal.sql", variables)
    section.notes.append(
        f"The API sends {round_trips} round trips per redemption "
        f"(bench/results/hot_statements.sql), redeem_hot.sql {scripted}. Every redemption "
        "waits for the row lock of the code, held until its commit is flushed."
    )
    return section


def _redeem_variables(ctx: Context, offer_id: int, *, first_code_id: int) -> dict[str, object]:
    from bench.seed import earn_exact_ids

    ids = earn_exact_ids(ctx.database, ctx.seeded)
    version_id = ctx.database.psql(
        f"SELECT id FROM coupon_offer_versions WHERE offer_id = {offer_id} AND version = 1"
    )
    return {
        "api_client": ids["api_client"],
        "key_prefix": ids["key_prefix"],
        "store_id": ids["store_id"],
        "actor": ids["actor"],
        "offer_id": offer_id,
        "version_id": int(version_id),
        "first_code": first_code_id,
        "clients": ctx.clients,
        "i": 0,  # each pgbench client's own counter (variables persist across transactions)
    }
