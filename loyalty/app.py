"""The application factory: configuration, extensions, blueprints, error and request hooks."""

from __future__ import annotations

import gc
import logging
import os
import time
import traceback
import uuid
from collections.abc import Mapping
from typing import Any

import flask_swagger_ui
import sqlalchemy as sa
from flask import Flask, Response, g, request, send_from_directory
from werkzeug.routing import IntegerConverter, Map, UnicodeConverter, ValidationError

from loyalty import logs
from loyalty.api import domain_error_response
from loyalty.config import SecretSource, Settings, load_settings
from loyalty.db import (
    BIGINT_MAX,
    db,
    keep_result_rows_out_of_logs,
    sqlite_begin_statement,
    start_reading,
    stop_reading,
)
from loyalty.errors import NotAuthenticated, OmniloyalError
from loyalty.extensions import api, migrate
from loyalty.http import refuse_deeply_nested_json
from loyalty.members.models import watch_members

REQUEST_ID_HEADER = "X-Request-ID"
# Endpoints that check a credential of their own (/metrics: OMNILOYAL_METRICS_TOKEN).
OWN_CREDENTIAL_ENDPOINTS = frozenset({"metrics.metrics"})


class OmniloyalApp(Flask):
    """Flask, logging an unhandled exception (a bug) as one JSON line with the request id.

    The client gets a 500 problem+json carrying the same request id (loyalty.api renders
    every HTTP error, InternalServerError included), so a report can be matched to the log.
    """

    def log_exception(self, exc_info: Any) -> None:
        extra = {"request_id": g.get("request_id"), "method": request.method, "path": request.path}
        error = exc_info[1] if exc_info else None
        if isinstance(error, sa.exc.DBAPIError):
            # The driver's message can quote row values (PostgreSQL's "DETAIL: Key (kind,
            # value)=(email, jane@...) already exists"): log what locates the bug (error
            # class, SQLSTATE, statement without parameters, stack), not the message.
            extra.update(
                db_error=type(error.orig).__name__,
                sqlstate=getattr(error.orig, "sqlstate", None),
                statement=error.statement,
                stack="".join(traceback.format_tb(error.__traceback__)),
            )
            exc_info = None
        self.logger.error("unhandled exception", exc_info=exc_info, extra=extra)


def create_app(
    overrides: Mapping[str, Any] | None = None,
    *,
    secret_source: SecretSource = SecretSource.REQUIRED,
) -> Flask:
    """Build the app. `overrides` replaces settings by name (see loyalty.config.Settings).

    Without SECRET_KEY it refuses to start unless `secret_source` says otherwise (only the
    `omniloyal` command does: see loyalty.cli).
    """
    instance_path = os.environ.get("OMNILOYAL_INSTANCE_PATH") or os.path.join(
        os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "instance"
    )
    app = OmniloyalApp("loyalty", instance_path=instance_path, instance_relative_config=True)
    os.makedirs(app.instance_path, exist_ok=True)
    settings = load_settings(
        overrides=overrides, instance_path=app.instance_path, secret_source=secret_source
    )
    _configure(app, settings)
    # Flask 3 reads this here, not from JSON_SORT_KEYS: objects come back in the order they
    # were built (schemas' declared order; `metadata` as the client sent it).
    app.json.sort_keys = False  # type: ignore[attr-defined]
    logs.configure(settings.log_level)
    _init_database(app, settings)
    _init_api(app)
    from loyalty.cors import init_cors

    init_cors(app)  # first: a preflight skips authentication
    _init_request_hooks(app, settings)
    from loyalty.queue import connect_redis

    app.extensions["omniloyal.redis"] = connect_redis(settings.redis_url)
    from loyalty import cli

    cli.register(app)
    return app


def freeze_startup_heap() -> None:
    """Take what start-up built (the app, its modules, SQLAlchemy's and marshmallow's
    metadata: some 200,000 objects) out of the garbage collector's view, for a process that
    will now serve requests.

    Without it every full collection walks them all: 150-330 ms during which a gunicorn
    worker answers nothing, and the workers, started alike, collect at about the same
    moment, so the whole service paused (700 balance reads/s arriving at 4 sync workers:
    p99 153 ms without, 9.3 ms with). Garbage made so far is collected first, so nothing
    that could be freed is frozen. Tests build many apps and never call it.
    """
    gc.collect()
    gc.freeze()


def _configure(app: Flask, settings: Settings) -> None:
    app.extensions["omniloyal.settings"] = settings
    app.config.update(
        SECRET_KEY=settings.secret_key,
        SQLALCHEMY_DATABASE_URI=settings.database_url,
        # hide_parameters: SQL parameters carry names, emails and phone numbers; they must
        # not reach logs (SQL echo at DEBUG) or error messages (an IntegrityError's text).
        SQLALCHEMY_ENGINE_OPTIONS={
            **_engine_options(settings.database_url),
            "hide_parameters": True,
        },
        MAX_CONTENT_LENGTH=settings.max_body_bytes,
        API_TITLE="Omniloyal",
        API_VERSION="v1",
        OPENAPI_VERSION="3.1.0",
        API_SPEC_OPTIONS={"info": {"description": API_DESCRIPTION}, "servers": SERVERS},
        OPENAPI_URL_PREFIX="/",
        OPENAPI_JSON_PATH="openapi.json",
        OPENAPI_SWAGGER_UI_PATH="docs",
        # Swagger UI 5 (it reads OpenAPI 3.1; 4.x shows nothing for our document), served
        # from the flask-swagger-ui package: /docs works offline, with no CDN.
        OPENAPI_SWAGGER_UI_URL="/docs-assets/",
        # A pasted key is not persisted (persistAuthorization would keep it in the
        # browser's localStorage); no validator badge is fetched from validator.swagger.io.
        OPENAPI_SWAGGER_UI_CONFIG={"validatorUrl": None, "displayRequestDuration": True},
        JSON_SORT_KEYS=False,
    )


# The first server is relative: the document's own host, so /docs "Try it out" calls the
# server that served it whatever its port; the second is where `make run` listens.
SERVERS = [
    {"url": "/", "description": "The server that serves this document"},
    {"url": "http://localhost:5000", "description": "`make run` on this machine"},
]

API_DESCRIPTION = """\
One membership, one points ledger and coupons across web shop, app and stores.

**Credentials.** Every `/v1` call sends `Authorization: Bearer ...`: an API key
(`olk_...`, scopes per key; POS keys may be bound to a store) or, for `/v1/me...`, a member
token (`omt_...`) minted by the member app's backend with `POST /v1/member-tokens`. Each
operation says which one and which scope. 401 answers carry `WWW-Authenticate: Bearer`.

**Errors** are RFC 9457 `application/problem+json`: `type` (`/problems/<slug>`, stable:
switch on it; it resolves to a page explaining it; [every type](/problems)), `title`
(one per type), `status`, `detail`, `request_id`. A 422 (`validation-failed`) lists each
invalid field in `errors` as `{"field": "lines.0.unit_price_minor", "message": "..."}`,
whether the schema or a business rule refused it. A body that is not JSON is a 415.

**Idempotency.** Writes that create something or move points or coupons *require* an
`Idempotency-Key` header (428 without it); writes that set a final state (revoke a key,
void a code) *accept* one. Send a unique key per attempt and the same key on every retry.
- A retry with the key returns the first response, same status and body, with
  `Idempotent-Replayed: true`, and has no second effect, even while the first is still
  running (the retry waits for it).
- Every other repeat of a write that already took effect answers the same way: an order
  posted again with its `order_id`, a refund with its `refund_id`, a second cancel, a
  second capture of a points hold (same points and order) or of a coupon hold, the same
  codes redeemed again for the same `order_ref`: the first status and the resulting
  object, with `Idempotent-Replayed: true`. Different content under the same id is a 409.
- The same key with another body or path is a 422 `idempotency-key-reused`.
- **After a failed request** (any 4xx or 5xx) nothing is stored under the key: the write
  had no effect, and the key may be sent again, with the same or a corrected body (as in
  the IETF Idempotency-Key draft; unlike Stripe, which replays a stored 4xx). A 503
  `database-busy` is retried with the same key.
- Keys are scoped to the API client (or the member, for member tokens) and kept 48 hours.

**Lists** all answer `{"items": [...], "next_cursor": "..." | null}` and take `limit`
(1-200, default 50) and `cursor` (the previous page's `next_cursor`).

**Your own ids.** A member given your customer id (`external_id`) is named by it anywhere
a member id goes: `ext:C-1001` in paths (`/v1/members/ext:C-1001/balance`), in body fields
(`"member_id": "ext:C-1001"`) and in `member_ids` lists; an order's `member` takes
`{"external_id": "C-1001"}`; search with `/v1/members/search?external_id=`.
"""


def _engine_options(url: str) -> dict[str, Any]:
    if url.startswith("sqlite"):
        return {"connect_args": {"timeout": 30, "check_same_thread": False}}
    # No pool_pre_ping: it costs a SELECT 1 round trip on every request. A connection the
    # server dropped fails one request (SQLAlchemy detects the disconnect and invalidates the
    # pool, so the next checkout reconnects); pool_recycle retires connections before
    # server-side idle timeouts would cut them.
    return {
        "pool_size": 10,
        "max_overflow": 20,
        "pool_recycle": 1800,
        "connect_args": {"options": f"-c plan_cache_mode={PLAN_CACHE_MODE}"},
    }


# psycopg prepares a statement from its sixth execution on a connection, and PostgreSQL
# then plans it once for all parameter values ("generic plan") when that looks no dearer
# than planning each execution. A generic plan made while a table was small or empty is a
# sequential scan, and it stays in the connection's cache while the table grows (until the
# next ANALYZE of that table): a fresh database read every redemption before each new one.
# Planning each execution with its values costs a few tens of microseconds per statement;
# it always sees the table as it is now (foreign-key checks included: they are cached plans
# too). See docs/architecture.md, "Hot-path queries and indexes".
PLAN_CACHE_MODE = "force_custom_plan"


def _init_database(app: Flask, settings: Settings) -> None:
    if settings.database_url.startswith("sqlite:///"):
        path = settings.database_url.removeprefix("sqlite:///")
        if path and path != ":memory:":
            os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    db.init_app(app)
    keep_result_rows_out_of_logs()
    # Import every model so metadata (and Alembic) sees all tables.
    from loyalty import models  # noqa: F401

    migrate.init_app(app, db, directory=os.path.join(os.path.dirname(__file__), "..", "migrations"))
    with app.app_context():
        if db.engine.dialect.name == "sqlite":
            _tune_sqlite(db.engine)


def _tune_sqlite(engine: sa.Engine) -> None:
    """WAL so readers never wait; writers BEGIN IMMEDIATE so they queue on the write lock
    instead of failing, readers a deferred BEGIN (see loyalty.db.sqlite_begin_statement)."""

    @sa.event.listens_for(engine, "connect")
    def on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # we issue BEGIN ourselves
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()

    @sa.event.listens_for(engine, "begin")
    def on_begin(connection: sa.Connection) -> None:
        connection.exec_driver_sql(sqlite_begin_statement())


class DatabaseIdConverter(IntegerConverter):
    """`<int:...>` in routes: only ids a BIGINT column can hold match.

    A bigger number would overflow the database driver (a 500); outside the range it is
    simply no such resource, a 404, and the range is documented in the OpenAPI document.
    """

    def __init__(self, map: Map, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("max", BIGINT_MAX)
        super().__init__(map, *args, **kwargs)


class StoredTextConverter(UnicodeConverter):
    """`<name>` in routes: a segment with a NUL character matches nothing (a 404).

    PostgreSQL text can't hold NUL, so looking it up would be a driver error (a 500).
    """

    def to_python(self, value: str) -> str:
        if "\x00" in value:
            raise ValidationError()
        return value


def _init_api(app: Flask) -> None:
    # Before any route is added: the converters are bound when a rule is.
    app.url_map.converters["int"] = DatabaseIdConverter
    app.url_map.converters["default"] = app.url_map.converters["string"] = StoredTextConverter
    from loyalty.members import paths as member_paths

    member_paths.register(app)
    api.init_app(app)
    api.register_converter(
        member_paths.MemberRefConverter, lambda _converter: dict(member_paths.PARAMETER_SCHEMA)
    )
    _serve_swagger_assets(app)
    _declare_security_schemes()
    from loyalty import home, problems
    from loyalty.blueprints import register_blueprints

    register_blueprints(api)
    _complete_document(app)
    app.register_blueprint(home.blp)
    app.register_blueprint(problems.blp)
    # Provider-facing endpoints (Twilio webhooks, unsubscribe links): plain blueprints,
    # outside the API document; importing them also registers their pipeline hooks.
    from notifications import inbound, unsubscribe

    app.register_blueprint(inbound.blp)
    app.register_blueprint(unsubscribe.blp)
    from campaigns import referral_links  # the referral share link's page, /r/<code>

    app.register_blueprint(referral_links.blp)
    # The dashboard (server-rendered pages, sign-in, CSRF) and /metrics: outside the API.
    from loyalty.dashboard.setup import init_dashboard

    init_dashboard(app, app.extensions["omniloyal.settings"])
    app.register_error_handler(OmniloyalError, domain_error_response)


def _complete_document(app: Flask) -> None:
    """Shared problem responses, then every operation completed from its decorators."""
    import http

    from loyalty.contract import STATUS_PROBLEMS, complete_document, problem_response

    for status in STATUS_PROBLEMS:
        phrase = http.HTTPStatus(status).phrase
        api.spec.components.response(
            f"Problem{status}", problem_response(status, phrase), lazy=True
        )
    complete_document(app, api.spec)


def _declare_security_schemes() -> None:
    """Both credentials travel as `Authorization: Bearer ...` (loyalty.auth.context)."""
    api.spec.components.security_scheme(
        "ApiKey",
        {
            "type": "http",
            "scheme": "bearer",
            "bearerFormat": "olk_<prefix>_<secret>",
            "description": "An API client's key (`omniloyal create-api-key`, or the demo keys "
            "`make run` prints). Each operation needs one scope of the key.",
        },
    )
    api.spec.components.security_scheme(
        "MemberToken",
        {
            "type": "http",
            "scheme": "bearer",
            "bearerFormat": "omt_...",
            "description": "A short-lived member token for the member app, minted by the app's "
            "backend with `POST /v1/member-tokens` (scope `member-tokens:issue`).",
        },
    )


SWAGGER_UI_DIST = os.path.join(os.path.dirname(flask_swagger_ui.__file__), "dist")


def _serve_swagger_assets(app: Flask) -> None:
    @app.route("/docs-assets/<path:filename>")
    def swagger_assets(filename: str) -> Response:
        return send_from_directory(SWAGGER_UI_DIST, filename)


def _init_request_hooks(app: Flask, settings: Settings) -> None:
    access_log = logging.getLogger("omniloyal.access")

    @app.before_request
    def start_request() -> None:
        # A request reads until write_endpoint says otherwise (SQLite: no write lock).
        g.sqlite_reading = start_reading()
        # Which members this request loads: a write's stored response is linked to them, so
        # erasure can blank it (loyalty.http). From the start: authentication may load one.
        watch_members(db.session)
        incoming = request.headers.get(REQUEST_ID_HEADER, "")
        valid = 0 < len(incoming) <= 128 and incoming.isascii() and incoming.isprintable()
        g.request_id = incoming if valid else uuid.uuid4().hex
        g.started = time.perf_counter()
        from loyalty.auth.context import authenticate_request

        g.caller = None
        g.auth_error = None
        if request.endpoint in OWN_CREDENTIAL_ENDPOINTS:
            return
        try:
            g.caller = authenticate_request()
        except NotAuthenticated as error:
            g.auth_error = error  # refused after the rate limits: failures count per IP

    # Its before_request hook runs here: between authentication and the refusal below.
    from loyalty.ratelimit import init_rate_limits

    init_rate_limits(app, settings)

    @app.before_request
    def refuse_bad_requests() -> None:
        if g.auth_error is not None:
            raise g.auth_error
        refuse_deeply_nested_json()
        from loyalty.members.paths import resolve_external_refs

        resolve_external_refs()  # `/members/ext:<id>/...`: after authentication

    @app.after_request
    def finish_request(response: Response) -> Response:
        response.headers[REQUEST_ID_HEADER] = g.get("request_id", "")
        caller = g.get("caller")
        access_log.info(
            "request",
            extra={
                "request_id": g.get("request_id"),
                "method": request.method,
                "path": request.path,
                "status": response.status_code,
                "duration_ms": round((time.perf_counter() - g.get("started", 0)) * 1000, 2),
                "caller": caller.actor if caller else None,
            },
        )
        return response

    @app.teardown_request
    def end_request(_error: BaseException | None) -> None:
        token = g.pop("sqlite_reading", None)
        if token is not None:
            stop_reading(token)
