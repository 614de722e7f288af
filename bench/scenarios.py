"""The scenarios: each drives the API with wrk and the same work with pgbench, in one run."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from werkzeug.exceptions import MethodNotAllowed, NotFound

from bench.appctx import bench_app
from bench.capture import Captured, capture_request
from bench.database import BenchDatabase
from bench.environment import BenchError
from bench.load import SQL_DIR, Measurement, run_pgbench, run_wrk
from bench.openloop import RequestFactory, http_request, run_open_loop
from bench.report import RESULTS_DIR, Row, Section, Target
from bench.seed import Seeded
from bench.server import Gunicorn

BALANCE_P99_MS = 10.0
REDEEM_P99_MS = 25.0
ORDER_P99_MS = 50.0
OPEN_LOOP_SHARE = 0.5  # the open-loop rate, as a share of the closed-loop saturation throughput
EARN_RATIO = 0.5
LIGHT_CLIENTS = 4  # the "no queueing" probe: no more clients than gunicorn workers


@dataclass
class Context:
    clients: int
    duration: int
    database: BenchDatabase
    wrk_path: str
    server: Gunicorn
    seeded: Seeded
    run_prefix: str  # makes order ids and keys unique across runs on one database
    codes: int = 1_000_000  # for the bulk code generation run
    coupon_setup: Any = None  # offers and the code batch, made once by bench.coupons
    window: int = 10  # seconds per throughput window
    phase: str = ""  # "empty" or "seeded": titles the sections
    pg_options: str = ""  # the app's session settings, for pgbench too (PGOPTIONS)

    def wrk(
        self,
        script: str,
        data: dict[str, object],
        *,
        clients: int | None = None,
        duration: int | None = None,
    ) -> Measurement:
        """Drive the API with bench/lua/<script> for the run's duration and clients."""
        return run_wrk(
            self.wrk_path,
            script,
            self.server.base_url,
            data,
            clients=clients or self.clients,
            duration=duration or self.duration,
            window=self.window,
        )

    def open_loop(
        self,
        section: Section,
        factory: RequestFactory,
        saturation: Measurement,
        *,
        what: str,
        p99_target_ms: float,
    ) -> Measurement | None:
        """A fixed arrival rate at OPEN_LOOP_SHARE of the closed-loop throughput (bench.openloop),
        its row, and the latency target judged on it (how a till feels the service)."""
        rate = round(saturation.rps * OPEN_LOOP_SHARE)
        if rate < 1:
            return None
        measured, lag_ms = run_open_loop(
            self.server.base_url, factory, rate=rate, duration=self.duration
        )
        label = f"API open loop: {rate:,} req/s arriving ({OPEN_LOOP_SHARE:.0%} of saturation)"
        section.rows.append(Row(label, measured, "open"))
        note_errors(section, measured)
        section.notes.append(
            f"Open loop: latency from each request's scheduled time (no coordinated omission); "
            f"the generator's own send lag p99 {lag_ms:.1f} ms."
        )
        section.targets.append(
            Target(
                f"{what} p99 < {p99_target_ms:.0f} ms, open loop at {OPEN_LOOP_SHARE:.0%} "
                "of saturation",
                f"p99 {measured.p99_ms:.1f} ms at {rate:,} req/s",
                measured.p99_ms < p99_target_ms and measured.errors == 0,
            )
        )
        return measured

    def raw(
        self, section: Section, label: str, script: str, variables: dict[str, object]
    ) -> Measurement | None:
        """Run bench/sql/<script> with pgbench and add its row (a failure is a row too).

        gunicorn is stopped meanwhile: its pooled connections and pgbench's would not fit in
        a shared server's max_connections together, and pgbench gets the machine alone."""
        self.server.stop()
        try:
            measured = run_pgbench(
                self.database.url,
                script,
                clients=self.clients,
                duration=self.duration,
                variables=variables,
                window=self.window,
                options=self.pg_options,
            )
        except BenchError as error:
            section.rows.append(Row(label, None, "raw", note="pgbench failed"))
            section.notes.append(f"{script} failed: {str(error)[:600]}")
            return None
        finally:
            self.server = self.server.restarted()
        section.rows.append(Row(label, measured, "raw"))
        if measured.errors:
            section.notes.append(f"{script}: {measured.errors} failed transactions")
        return measured


def route_exists(method: str, path: str) -> bool:
    adapter = bench_app().url_map.bind("localhost")
    try:
        adapter.match(path, method=method)
    except (NotFound, MethodNotAllowed):
        return False
    return True


def save_capture(name: str, captured: Captured) -> Path:
    RESULTS_DIR.mkdir(exist_ok=True)
    path = RESULTS_DIR / f"{name}_statements.sql"
    path.write_text(
        f"-- {captured.count} round trips; response {captured.status}\n{captured.as_sql()}\n"
    )
    return path


def script_round_trips(script: str) -> int:
    """SQL statements in a pgbench script (BEGIN/END included, meta-commands not)."""
    text = (SQL_DIR / script).read_text()
    text = re.sub(r"--[^\n]*", "", text)
    text = re.sub(r"\\gset[ \t]*\w*", ";", text)  # a query ending in \gset is one too
    body = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("\\"))
    return len([s for s in body.split(";") if s.strip()])


def _order_body(order_id: str, seeded: Seeded, member_id: int) -> dict[str, object]:
    return {
        "order_id": order_id,
        "channel": "store",
        "store_id": seeded.store_id,
        "member": {"member_id": member_id},
        "lines": [
            {"sku": "SKU-1", "category": "shoes", "quantity": 1, "unit_price_minor": 8999},
            {"sku": "SKU-SOCKS", "category": "accessories", "quantity": 2, "unit_price_minor": 799},
        ],
        "currency": "EUR",
        "occurred_at": datetime.now(UTC).isoformat(),
    }


def trial_load(seeded: Seeded) -> tuple[str | None, dict[str, object]]:
    """The wrk script and data used to compare gunicorn worker settings."""
    if route_exists("POST", "/v1/orders"):
        return "earn.lua", _earn_data(seeded, "trial")
    if route_exists("GET", "/v1/me/balance"):
        return "balance.lua", {"tokens": seeded.tokens}
    return None, {}


def _earn_data(seeded: Seeded, prefix: str) -> dict[str, object]:
    return {
        "api_key": seeded.pos_key,
        "store_id": seeded.store_id,
        "members": seeded.member_ids,
        "prefix": prefix,
        "occurred_at": datetime.now(UTC).isoformat(),
    }


# --- earn ------------------------------------------------------------------------------------


def earn(ctx: Context) -> Section:
    section = Section("earn", f"Earn: POST /v1/orders ({ctx.clients} clients, {ctx.duration} s)")
    if not route_exists("POST", "/v1/orders"):
        section.skipped = "POST /v1/orders does not exist yet (loyalty/earning/api.py)."
        return section
    seeded = ctx.seeded
    headers = {"Authorization": f"Bearer {seeded.pos_key}"}
    captured = None
    for n in range(2):  # the first warms the app's caches; the second is steady state
        order_id = f"{ctx.run_prefix}-capture-{n}"
        captured = capture_request(
            "POST",
            "/v1/orders",
            headers={**headers, "Idempotency-Key": order_id},
            json=_order_body(order_id, seeded, seeded.member_ids[n]),
        )
    assert captured is not None
    if captured.status >= 300:
        section.skipped = (
            f"a probe order was refused ({captured.status}): {captured.response[:300]}"
        )
        return section
    saved = save_capture("earn", captured)
    api = ctx.wrk("earn.lua", _earn_data(seeded, f"{ctx.run_prefix}-earn"))
    section.rows.append(Row(f"API: POST /v1/orders ({ctx.server.config.label})", api, "api"))
    note_errors(section, api)
    ctx.open_loop(
        section,
        _order_factory(seeded, f"{ctx.run_prefix}-open"),
        api,
        what="order",
        p99_target_ms=ORDER_P99_MS,
    )
    minimal = ctx.raw(
        section,
        "raw: insert an entry + update a balance (pgbench)",
        "earn_minimal.sql",
        {"members": len(seeded.member_ids)},
    )
    exact: Measurement | None = None
    if (SQL_DIR / "earn_exact.sql").exists():
        exact = ctx.raw(
            section,
            "raw: the API's statements for one order (pgbench)",
            "earn_exact.sql",
            _earn_exact_variables(ctx),
        )
        scripted = script_round_trips("earn_exact.sql")
        section.notes.append(
            f"One order costs the API {captured.count} database round trips "
            f"(captured in {saved.relative_to(saved.parent.parent.parent)}); "
            f"earn_exact.sql sends {scripted}."
            + ("" if scripted == captured.count else " They differ: re-check earn_exact.sql.")
        )
    for label, baseline in (("same statements", exact), ("minimal", minimal)):
        if baseline is None or not baseline.rps:
            continue
        ratio = api.rps / baseline.rps
        section.targets.append(
            Target(
                f"earning >= {EARN_RATIO} x raw ({label})",
                f"{api.rps:,.0f} / {baseline.rps:,.0f} = {ratio:.2f}",
                ratio >= EARN_RATIO and api.errors == 0,
            )
        )
    return section


def _order_factory(seeded: Seeded, prefix: str) -> RequestFactory:
    """The open-loop twin of lua/earn.lua: a new order id and key per request."""
    import json

    def make(index: int) -> bytes:
        order_id = f"{prefix}-{index}"
        member = seeded.member_ids[index % len(seeded.member_ids)]
        body = json.dumps(_order_body(order_id, seeded, member)).encode()
        headers = {
            "Authorization": f"Bearer {seeded.pos_key}",
            "Content-Type": "application/json",
            "Idempotency-Key": order_id,
        }
        return http_request("POST", "/v1/orders", headers, body)

    return make


def _earn_exact_variables(ctx: Context) -> dict[str, object]:
    from bench.seed import earn_exact_ids

    return earn_exact_ids(ctx.database, ctx.seeded)


# --- balance ---------------------------------------------------------------------------------


def balance(ctx: Context) -> Section:
    section = Section(
        "balance", f"Balance: GET /v1/me/balance ({ctx.clients} clients, {ctx.duration} s)"
    )
    if not route_exists("GET", "/v1/me/balance"):
        section.skipped = "GET /v1/me/balance does not exist yet."
        return section
    seeded = ctx.seeded
    token = seeded.tokens[0]
    captured = capture_request(
        "GET", "/v1/me/balance", headers={"Authorization": f"Bearer {token}"}
    )
    if captured.status != 200:
        section.skipped = f"a probe balance read failed ({captured.status}): {captured.response}"
        return section
    save_capture("balance", captured)
    api = ctx.wrk("balance.lua", {"tokens": seeded.tokens})
    section.rows.append(
        Row(
            f"API: GET /v1/me/balance, {len(seeded.tokens)} members ({ctx.server.config.label})",
            api,
            "api",
        )
    )
    note_errors(section, api)
    tokens = seeded.tokens
    ctx.open_loop(
        section,
        lambda index: http_request(
            "GET", "/v1/me/balance", {"Authorization": f"Bearer {tokens[index % len(tokens)]}"}
        ),
        api,
        what="balance read",
        p99_target_ms=BALANCE_P99_MS,
    )
    ids = seeded.member_ids[: len(seeded.tokens)]
    scripted = script_round_trips("balance.sql")
    ctx.raw(
        section,
        f"raw: the API's {scripted} statements (pgbench)",
        "balance.sql",
        {"first_member": min(ids), "last_member": max(ids)},
    )
    light = LIGHT_CLIENTS
    if ctx.clients > light:
        # Without queueing: what one read costs when fewer clients than workers are waiting.
        quiet = ctx.wrk(
            "balance.lua",
            {"tokens": seeded.tokens},
            clients=light,
            duration=max(5, ctx.duration // 2),
        )
        label = f"API at {light} clients (less queueing; not the target)"
        section.rows.append(Row(label, quiet, "info"))
    section.notes.append(
        f"The API sends {captured.count} round trips per read "
        f"(bench/results/balance_statements.sql): the member token's holder (status, token "
        f"epoch, issuing client), then the balance; balance.sql sends the balance statement "
        f"({scripted}), the single statement the target names."
    )
    section.notes.append(
        f"At {ctx.clients} closed-loop clients, latency ~= clients / throughput (Little's law), "
        "so the closed-loop p99 mostly measures the queue; the target is judged open loop."
    )
    return section


def note_errors(section: Section, measurement: Measurement) -> None:
    if measurement.errors:
        section.notes.append(
            f"API errors: {measurement.errors} of {measurement.completed} requests failed; "
            f"first: {measurement.error_sample or 'socket errors (see wrk)'}"
        )
