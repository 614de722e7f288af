"""`omniloyal members ...`: bulk import of an existing member base."""

from __future__ import annotations

import csv
import os
import re
import sys
import time
from typing import IO, Any

import click
from flask.cli import with_appcontext

from loyalty.clock import utcnow
from loyalty.db import db
from loyalty.errors import OmniloyalError


@click.group("members")
def members_cli() -> None:
    """Member maintenance: import a member base from CSV."""


IMPORT_HELP = """Import members (identities, profile, opening points, tier) from CSV_FILE.

\b
The header names the columns, in any order (external_id required, each once):
  external_id               your customer id, unique per batch (required)
  phone                     E.164 (+33612345678); national numbers need --default-region
  email, card, app_user     further identities (a member needs at least one identity)
  name                      display name
  birthday                  YYYY-MM-DD
  locale                    e.g. fr-FR (default en)
  timezone                  IANA, e.g. Europe/Paris (default UTC)
  region                    free text, e.g. ile-de-france
  home_store_id             an existing store's id
  opening_points            points carried over from the old program (default 0)
  opening_points_expire_at  YYYY-MM-DD, the last day they count (default: the policy)
  qualifying_points         points counting toward tiers (default: opening_points)
  tier                      an existing tier's code, e.g. gold
  sms_marketing, email_marketing, push_marketing
                            marketing consent from the old system: yes / no (empty:
                            not known, marketing stays off on that channel)
  marketing_consent_at      when it was given or withdrawn, YYYY-MM-DD or ISO 8601 time
                            (default: the import's time)

Idempotent and resumable: committed chunk by chunk; run it again after an interruption and
it continues where it stopped (rows already imported are counted, not imported twice).

Rejected rows (row, column, message, external_id) go to a report next to the input,
<name>.rejected.csv (or --report PATH); the command then exits with status 1.
"""


@members_cli.command("import", help=IMPORT_HELP)
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
    help="Where to write the rejected rows (default: <name>.rejected.csv next to CSV_FILE).",
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
    from loyalty.members.importer import (
        REPORT_HEADER,
        ChunkResult,
        import_members,
        write_error_report,
    )

    batch = batch or os.path.splitext(os.path.basename(csv_file))[0]
    report_path = report_path or default_report_path(csv_file)
    total = count_rows(csv_file)
    tally = RowTally()
    started = time.perf_counter()
    report: IO[str] = open(report_path, "w", newline="", encoding="utf-8")  # noqa: SIM115
    writer = csv.writer(report)
    writer.writerow(REPORT_HEADER)
    progress = click.progressbar(
        length=total,
        label=f"importing {total:,} rows",
        show_eta=True,
        show_percent=True,
        item_show_func=lambda rate: rate,
        file=sys.stderr,
    )

    def after_chunk(result: ChunkResult) -> None:
        db.session.commit()  # the edge commits: a crash loses at most this chunk
        write_error_report(writer, result.errors)
        done = tally.add(result)
        seconds = time.perf_counter() - started
        progress.update(done - progress.pos, f"{done / seconds if seconds else 0:,.0f} rows/s")

    try:
        with progress, open(csv_file, newline="", encoding="utf-8-sig") as stream:
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
        report.close()
        os.remove(report_path)
        raise click.ClickException(error.detail) from None
    report.close()
    seconds = time.perf_counter() - started
    click.echo(
        f"batch {batch}: {stats.rows:,} rows: {stats.imported:,} imported, "
        f"{stats.skipped:,} already imported, {tally.rejected:,} rejected; "
        f"{stats.points:,} opening points; "
        f"{seconds:.1f} s ({stats.rows / seconds if seconds else 0:,.0f} rows/s)"
    )
    if not tally.rejected:
        os.remove(report_path)  # no stale report from an earlier run either
        return
    click.echo(f"rejected rows, with the column and why: {report_path}", err=True)
    if tally.national_phones and not default_region:
        click.echo(
            f"{tally.national_phones:,} phone numbers have no country code: "
            "re-run with --default-region (e.g. --default-region FR) to read them as that "
            "country's numbers",
            err=True,
        )
    raise SystemExit(1)


def default_report_path(csv_file: str) -> str:
    """<name>.rejected.csv in the input's folder."""
    stem, _ = os.path.splitext(csv_file)
    return f"{stem}.rejected.csv"


def count_rows(csv_file: str) -> int:
    """Data rows (records after the header; a quoted cell may span lines), for the progress
    bar's total and ETA. A first read of the file: cheap beside the import itself."""
    with open(csv_file, newline="", encoding="utf-8-sig") as stream:
        return max(sum(1 for _ in csv.reader(stream)) - 1, 0)


# An identity error quoting a phone written without +country: what --default-region fixes.
_NATIONAL_PHONE = re.compile(r"'[^+'][^']*' is not a (valid )?phone number")


class RowTally:
    """Counts rows, not errors: a row with three bad cells is one rejected row."""

    def __init__(self) -> None:
        self.done = 0
        self.rejected = 0
        self.national_phones = 0

    def add(self, result: Any) -> int:
        self.rejected += len({error.row for error in result.errors})
        self.national_phones += sum(
            1
            for error in result.errors
            if error.column == "phone" and _NATIONAL_PHONE.search(error.message)
        )
        self.done = max(self.done, result.last_row - 1)  # row 1 is the header
        return self.done
