"""`omniloyal campaigns ...`: rebuild the targeting profiles from the source tables."""

from __future__ import annotations

import time

import click
from flask.cli import with_appcontext

from loyalty.batches import BatchCursor, run_chunks
from loyalty.clock import utcnow
from loyalty.db import db


@click.group("campaigns")
def campaigns_cli() -> None:
    """Targeting: member profiles and segments."""


@campaigns_cli.command("rebuild-profiles")
@click.option(
    "--chunk", "chunk_size", default=1000, show_default=True, type=click.IntRange(1, 20000)
)
@click.option("--after-id", default=0, show_default=True, type=int, help="Resume after this id.")
@with_appcontext
def rebuild_profiles(chunk_size: int, after_id: int) -> None:
    """Rewrite every person's profile, categories and tags (id order, a transaction per
    chunk, resumable with --after-id), then score RFM."""
    from campaigns import profiles

    now, started = utcnow(), time.monotonic()
    cursor = BatchCursor(after_id=after_id)
    result = run_chunks(
        lambda c: profiles.rebuild_chunk(c, now, limit=chunk_size),
        what="rebuild-profiles",
        cursor=cursor,
    )
    scored = profiles.score_rfm(now)
    db.session.commit()
    click.echo(
        f"profiles rebuilt: {result.total} people ({cursor.handled} ids walked) in "
        f"{result.chunks} chunks, {time.monotonic() - started:.1f} s; RFM scored: {scored}"
    )
