"""`omniloyal members ...`: bulk import of an existing member base."""

from __future__ import annotations

import csv
import os
import time
from typing import IO

import click
from flask.cli import with_appcontext

from loyalty.clock import utcnow
from loyalty.db import db
from loyalty.errors import OmniloyalError


@click.group("members")
def members_cli() -> None:
    """Member maintenance: import a member base from CSV."""


@members_cli.command("import")
@click.argument("csv_file", type=click.Path(exists=True, dir_okay=False))
@click.option(
    "--batch",
    default=None,
    help="Batch name (default: the file name). Re-running "
    "a batch skips the rows it already imported.",
)
@click.option(
    "--report",
    "report_path",
    default=None,
    type=click.Path(dir_okay=False),
    help="Write invalid rows (row, column, message) to this CSV.",
)
@click.option(
    "--chunk", "chunk_size", default=5000, show_default=True, type=int, help="Rows per transaction."
)
@click.option(
    "--default-region",
    default=None,
    help="ISO 3166 alpha-2 for phone numbers without a country code, e.g. FR.",
)
@with_appcontext
def import_command(
    csv_file: str,
    batch: str | None,
    report_path: str | None,
    chunk_size: int,
    default_region: str | None,
) -> None:
    """Import members (identities, profile, opening points, tier) from CSV_FILE.

    Idempotent and resumable: committed chunk by chunk; run it again after an interruption
    and it continues where it stopped.
    """
    from loyalty.members.importer import (
        REPORT_HEADER,
        ChunkResult,
        import_members,
        write_error_report,
    )

    batch = batch or os.path.splitext(os.path.basename(csv_file))[0]
    started = time.perf_counter()
    report: IO[str] | None = open(report_path, "w", newline="") if report_path else None  # noqa: SIM115
    writer = csv.writer(report) if report else None
    if writer:
        writer.writerow(REPORT_HEADER)

    def after_chunk(result: ChunkResult) -> None:
        db.session.commit()  # the edge commits: a crash loses at most this chunk
        if writer:
            write_error_report(writer, result.errors)
        click.echo(
            f"  up to row {result.last_row}: {result.imported} imported, "
            f"{result.skipped} already there, {len(result.errors)} invalid",
            err=True,
        )

    try:
        with open(csv_file, newline="", encoding="utf-8-sig") as stream:
            stats = import_members(
                stream,
                batch=batch,
                now=utcnow(),
                actor=f"import:{batch}",
                chunk_size=chunk_size,
                default_region=default_region.upper() if default_region else None,
                after_chunk=after_chunk,
            )
    except OmniloyalError as error:
        db.session.rollback()
        raise click.ClickException(error.detail) from None
    finally:
        if report:
            report.close()
    seconds = time.perf_counter() - started
    click.echo(
        f"batch {batch}: {stats.rows} rows, {stats.imported} imported, {stats.skipped} already "
        f"imported, {stats.errors} invalid, {stats.points} opening points; "
        f"{seconds:.1f} s ({stats.rows / seconds if seconds else 0:,.0f} rows/s)"
    )
    if stats.errors and not report_path:
        click.echo("re-run with --report errors.csv to see the invalid rows", err=True)
