"""The `omniloyal` command: a Flask CLI group with the service's own commands.

omniloyal run             serve the API (embedded: plus an in-process worker)
omniloyal worker          run an RQ worker and the periodic scheduler
omniloyal db upgrade      apply migrations (Flask-Migrate)
omniloyal demo            seed demo stores, tiers, rules, members and orders
omniloyal create-api-key  create an API client and print its key once
omniloyal create-user     create a dashboard user (role, password, optional TOTP)
"""

from __future__ import annotations

import logging
import os
import threading

import click
from flask import Flask, current_app
from flask.cli import FlaskGroup, with_appcontext
from flask.cli import routes_command as flask_routes_command
from flask.cli import shell_command as flask_shell_command

from loyalty import logs
from loyalty.clock import utcnow
from loyalty.db import db

# The commands that serve requests or run jobs: they sign and check member tokens.
_SERVING_COMMANDS = {"run", "worker"}


def _create_app() -> Flask:
    """The app for the command being run, with the key it may use to sign member tokens.

    `omniloyal run` on the embedded default may generate the instance's own random key;
    `worker` needs SECRET_KEY like any server; the maintenance commands (db, demo, import,
    create-api-key, shell) never sign a token and may start without one.
    """
    from loyalty.app import create_app
    from loyalty.config import SecretSource

    context = click.get_current_context(silent=True)
    command = context.info_name if context is not None else None
    if command == "run":
        source = SecretSource.INSTANCE
    elif command in _SERVING_COMMANDS:
        source = SecretSource.REQUIRED
    else:
        source = SecretSource.UNUSED
    return create_app(secret_source=source)


@click.group(
    cls=FlaskGroup, create_app=_create_app, add_version_option=False, add_default_commands=False
)
def main() -> None:
    """Omniloyal: one membership, one points ledger, every channel."""


def register(app: Flask) -> None:
    """Attach the service's commands to `app.cli` (so `flask --app wsgi ...` works too)."""
    for command in (run_command, worker_command, demo_command, create_api_key_command):
        app.cli.add_command(command)
    from campaigns.cli import campaigns_cli
    from loyalty.coupons.cli import coupons_cli
    from loyalty.dashboard.cli import create_user_command
    from loyalty.ledger.cli import ledger_cli
    from loyalty.members.cli import members_cli

    app.cli.add_command(members_cli)
    app.cli.add_command(ledger_cli)
    app.cli.add_command(coupons_cli)
    app.cli.add_command(campaigns_cli)
    app.cli.add_command(create_user_command)


@click.command("run")
@click.option("--host", default="127.0.0.1", show_default=True, envvar="FLASK_RUN_HOST")
@click.option(
    "--port", default=5000, show_default=True, type=int, envvar="FLASK_RUN_PORT", show_envvar=True
)
@click.option(
    "--log-format",
    type=click.Choice(["json", "console"]),
    default="json",
    show_default=True,
    help="console: one short line per request (make run); json: JSON lines for collectors.",
)
@with_appcontext
def run_command(host: str, port: int, log_format: logs.LogFormat) -> None:
    """Serve the API. On the embedded default a worker thread runs the jobs."""
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    settings = app.extensions["omniloyal.settings"]
    logs.configure(settings.log_level, log_format)
    if settings.redis_url is None and settings.run_embedded_worker:
        from loyalty.queue import start_embedded_worker

        start_embedded_worker(app)
        click.echo("embedded worker: running in-process (no REDIS_URL)")
    click.echo(f"Home:     http://{host}:{port}/")
    click.echo(f"API:      http://{host}:{port}/v1")
    click.echo(f"API docs: http://{host}:{port}/docs")
    click.echo(f"OpenAPI:  http://{host}:{port}/openapi.json")
    click.echo(f"Dashboard: http://{host}:{port}/dashboard/  (demo logins: `omniloyal demo`)")
    from werkzeug.serving import run_simple

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # our access log covers requests
    from loyalty.app import freeze_startup_heap

    freeze_startup_heap()
    run_simple(host, port, app, threaded=True, use_reloader=False)


@click.command("worker")
@click.option("--queue", "queues", multiple=True, help="Queues to serve (default: all).")
@click.option("--burst", is_flag=True, help="Exit when the queues are empty.")
@with_appcontext
def worker_command(queues: tuple[str, ...], burst: bool) -> None:
    """Run an RQ worker (and the periodic scheduler) against REDIS_URL."""
    from loyalty.queue import QUEUES, make_worker, work_forever
    from loyalty.scheduler import scheduler_loop

    app = current_app._get_current_object()  # type: ignore[attr-defined]
    if app.extensions["omniloyal.settings"].redis_url is None and not burst:
        raise click.UsageError(
            "REDIS_URL is not set: on the embedded default `omniloyal run` runs the worker "
            "in-process. Set REDIS_URL to run separate workers."
        )
    if burst:
        make_worker(app, queues or QUEUES).work(burst=True)
        return
    # Both loops outlive Redis restarts: the scheduler retries its tick, a failed RQ
    # worker is replaced (see their docstrings).
    stop = threading.Event()
    scheduler = threading.Thread(
        target=scheduler_loop, args=(app, stop), name="omniloyal-scheduler", daemon=True
    )
    scheduler.start()
    try:
        work_forever(app, queues or QUEUES, stop)
    finally:
        stop.set()


@click.command("demo")
@click.option("--members", default=2000, show_default=True, help="How many demo members.")
@click.option(
    "--if-empty",
    is_flag=True,
    help="Seed only an empty database; otherwise print the saved demo keys again.",
)
@with_appcontext
def demo_command(members: int, if_empty: bool) -> None:
    """Seed realistic demo data and print API keys to try it with.

    The keys are kept in the instance folder (demo-keys.json, mode 0600), so a later
    `--if-empty` on the seeded database prints the same working keys again.
    """
    from loyalty.auth.scopes import ALL as ALL_SCOPES
    from loyalty.demo import (
        DEMO_KEYS,
        DEMO_KEYS_FILE,
        database_is_empty,
        demo_member,
        read_saved_keys,
        reuse_demo_keys,
        save_keys,
        seed_demo,
    )

    path = os.path.join(current_app.instance_path, DEMO_KEYS_FILE)
    if if_empty and not database_is_empty():
        keys, minted = reuse_demo_keys(read_saved_keys(path), utcnow())
        heading = "Demo data already there. API keys"
        if minted:
            heading += f" (new: {', '.join(minted)})"
    else:
        from loyalty.dashboard.demo import seed_demo_campaign, seed_demo_journey

        keys = seed_demo(member_count=members, now=utcnow())
        db.session.flush()
        seed_demo_campaign(utcnow())
        seed_demo_journey(utcnow())
        heading = "Demo data ready. API keys"
    from loyalty.dashboard import stats
    from loyalty.dashboard.demo import ensure_demo_users

    logins = ensure_demo_users(utcnow())
    stats.refresh(utcnow())
    db.session.commit()
    save_keys(path, keys)
    shown = os.path.relpath(path)
    click.echo(f"{heading}, kept in {path if shown.startswith('..') else shown}:")
    for name, key in keys.items():
        _, key_scopes, store_id, purpose = DEMO_KEYS[name]
        click.echo(f"  {name:<11} {key}  ({purpose})")
        listed = "every scope" if key_scopes == ALL_SCOPES else ", ".join(sorted(key_scopes))
        click.echo(f"  {'':<11} scopes: {listed}" + (f"; store {store_id}" if store_id else ""))
    member = demo_member()
    if member is not None:
        click.echo(
            f"Demo member to try: {member['name']} (member id {member['id']}, "
            f"{member['tier'] or 'no'} tier, {member['balance']:,} points): "
            f"email {member['email']}, phone {member['phone']}, card {member['card']}"
        )
        click.echo("  guides: docs/guides/member-app.md and docs/guides/pos.md")
    click.echo("Dashboard logins (/dashboard/), one per role:")
    for role, (email, password) in logins.items():
        click.echo(f"  {role:<9} {email}  password: {password}")


@click.command("create-api-key")
@click.option("--name", required=True)
@click.option(
    "--scope",
    "scopes",
    multiple=True,
    required=True,
    help="Repeat for each scope, e.g. --scope orders:write.",
)
@click.option("--store", "store_id", default=None, help="Bind the key to one store (POS).")
@with_appcontext
def create_api_key_command(name: str, scopes: tuple[str, ...], store_id: str | None) -> None:
    """Create an API client; its key is printed once and stored only as a digest."""
    from loyalty.auth.keys import create_api_client
    from loyalty.errors import OmniloyalError

    try:
        issued = create_api_client(name=name, scopes=list(scopes), store_id=store_id, now=utcnow())
    except OmniloyalError as error:
        raise click.UsageError(error.detail) from None
    db.session.commit()
    click.echo(issued.key)


# Our `run` replaces Flask's (it also starts the embedded worker); keep Flask's shell and
# routes. Domain command groups come from `register` through the app's CLI.
for _command in (
    run_command,
    worker_command,
    demo_command,
    create_api_key_command,
    flask_shell_command,
    flask_routes_command,
):
    main.add_command(_command)
