"""`omniloyal points ...`: run the ledger jobs by hand (same operations as the workers)."""

from __future__ import annotations

import click
from flask.cli import with_appcontext

from loyalty.ledger import jobs


@click.group("points")
def ledger_cli() -> None:
    """Points ledger maintenance."""


@ledger_cli.command("expire")
@with_appcontext
def expire_command() -> None:
    """Expire due point lots now."""
    click.echo(f"expired {jobs.expire_points()} points")


@ledger_cli.command("release-pending")
@with_appcontext
def release_pending_command() -> None:
    """Make pending points whose return window passed available now."""
    click.echo(f"released {jobs.release_pending_points()} points")


@ledger_cli.command("expire-holds")
@with_appcontext
def expire_holds_command() -> None:
    """Release checkout holds past their TTL now."""
    click.echo(f"expired {jobs.expire_holds()} holds")
