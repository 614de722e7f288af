"""`omniloyal create-user`: a dashboard account (the first admin, then anyone)."""

from __future__ import annotations

import click
from flask.cli import with_appcontext

from loyalty.clock import utcnow
from loyalty.dashboard.models import LOCALES, ROLES
from loyalty.db import db, prepare_to_write


@click.command("create-user")
@click.option("--email", required=True)
@click.option("--name", default="", help="Shown in the dashboard (default: the email).")
@click.option("--role", type=click.Choice(ROLES), required=True)
@click.option("--locale", type=click.Choice(LOCALES), default="en", show_default=True)
@click.option(
    "--password",
    prompt=True,
    hide_input=True,
    confirmation_prompt=True,
    envvar="OMNILOYAL_NEW_USER_PASSWORD",
    help="Prompted for when not given (or OMNILOYAL_NEW_USER_PASSWORD).",
)
@click.option("--totp", is_flag=True, help="Require a TOTP code at sign-in; prints its URI once.")
@with_appcontext
def create_user_command(
    email: str, name: str, role: str, locale: str, password: str, totp: bool
) -> None:
    """Create a dashboard user (argon2 password hash; audited)."""
    from loyalty.dashboard import audit, users
    from loyalty.errors import OmniloyalError

    prepare_to_write()
    try:
        user = users.create_user(
            email=email, name=name, password=password, role=role, locale=locale, now=utcnow()
        )
    except OmniloyalError as error:
        raise click.UsageError(error.detail) from None
    uri = users.enable_totp(user) if totp else None
    audit.record(actor="cli", action="users.create", now=utcnow(), target_type="dashboard_user",
                 target_id=user.id, after={"role": role, "totp": totp})  # fmt: skip
    db.session.commit()
    click.echo(f"created {role} {user.email} (id {user.id})")
    if uri:
        click.echo(f"TOTP (add it to an authenticator app now; shown once): {uri}")
