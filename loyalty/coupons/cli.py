"""`omniloyal coupons ...`: bulk code generation, import, export and hold expiry by hand."""

from __future__ import annotations

import sys
import time
from typing import Any

import click
from flask.cli import with_appcontext

from loyalty.clock import utcnow
from loyalty.coupons.codes import MAX_BATCH
from loyalty.db import BIGINT_MAX, db


class MaxUses(click.ParamType):
    """A code's uses as the API takes them: 1 to a BIGINT, or `unlimited` (the API's null)."""

    name = "N|unlimited"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if value is None or isinstance(value, int):
            return value
        if str(value).strip().lower() == "unlimited":
            return None
        return click.IntRange(1, BIGINT_MAX).convert(value, param, ctx)


@click.group("coupons")
def coupons_cli() -> None:
    """Coupon codes: generate, import, export; expire holds."""


@coupons_cli.command("generate")
@click.option("--offer", "offer_id", required=True, type=int)
@click.option(
    "--count",
    required=True,
    type=click.IntRange(1, MAX_BATCH),
    help=f"Up to {MAX_BATCH:,} (the API's `count` limit too).",
)
@click.option("--prefix", default=None)
@click.option("--suffix", default=None)
@click.option("--pattern", default=None, help="'#' marks a random character.")
@click.option("--length", default=12, show_default=True, type=click.IntRange(12, 32))
@click.option(
    "--max-uses",
    default="1",
    show_default=True,
    type=MaxUses(),
    help="Uses each code allows, or 'unlimited' (the API's max_uses, null for unlimited).",
)
@with_appcontext
def generate_command(
    offer_id: int,
    count: int,
    prefix: str | None,
    suffix: str | None,
    pattern: str | None,
    length: int,
    max_uses: int | None,
) -> None:
    """Generate COUNT unique codes for an offer as one batch (committed at the end)."""
    from loyalty.coupons.offers import generate_codes
    from loyalty.errors import OmniloyalError

    started = time.perf_counter()
    try:
        batch = generate_codes(
            offer_id,
            count,
            now=utcnow(),
            actor="cli",
            prefix=prefix,
            suffix=suffix,
            pattern=pattern,
            length=length,
            max_uses=max_uses,
        )
    except OmniloyalError as error:
        raise click.UsageError(error.detail) from None
    db.session.commit()
    seconds = time.perf_counter() - started
    click.echo(
        f"batch {batch.id}: {batch.created_count} codes in {seconds:.1f} s "
        f"({batch.created_count / seconds:,.0f} codes/s)"
    )


@coupons_cli.command("import")
@click.option("--offer", "offer_id", required=True, type=int)
@click.option(
    "--max-uses",
    default="1",
    show_default=True,
    type=MaxUses(),
    help="Uses each code allows, or 'unlimited' (the API's max_uses, null for unlimited).",
)
@click.argument("source", type=click.File("r"))
@with_appcontext
def import_command(offer_id: int, max_uses: int | None, source: click.utils.LazyFile) -> None:
    """Import codes (one per line, or the first CSV column) from SOURCE ('-' for stdin)."""
    from loyalty.coupons.offers import import_codes
    from loyalty.errors import OmniloyalError

    codes = [line.split(",")[0].strip() for line in source if line.strip()]
    try:
        batch, invalid, duplicates = import_codes(
            offer_id, codes, max_uses=max_uses, now=utcnow(), actor="cli"
        )
    except OmniloyalError as error:
        raise click.UsageError(error.detail) from None
    db.session.commit()
    click.echo(
        f"batch {batch.id}: {batch.created_count} imported, {len(duplicates)} already existed, "
        f"{len(invalid)} malformed"
    )


@coupons_cli.command("export")
@click.option("--batch", "batch_id", required=True, type=int)
@with_appcontext
def export_command(batch_id: int) -> None:
    """Write a batch's codes as CSV to stdout."""
    from loyalty.coupons.offers import export_batch_csv
    from loyalty.errors import OmniloyalError

    try:
        for chunk in export_batch_csv(batch_id):
            sys.stdout.write(chunk)
    except OmniloyalError as error:
        raise click.UsageError(error.detail) from None


@coupons_cli.command("expire-holds")
@with_appcontext
def expire_holds_command() -> None:
    """Release coupon holds past their TTL now."""
    from loyalty.coupons import jobs

    click.echo(f"released {jobs.expire_coupon_holds()} held coupon uses")
