"""Helpers for the members and stores tests (on top of the shared `make` fixture)."""

from __future__ import annotations

import csv
import io
from typing import Any

import sqlalchemy as sa

from loyalty.clock import utcnow
from loyalty.db import db
from loyalty.outbox import OutboxEvent
from loyalty.tiers.models import Tier

PROBLEM = "application/problem+json"


def make_tier(code: str, rank: int, threshold: int = 0) -> Tier:
    tier = Tier(
        code=code,
        name=code.title(),
        rank=rank,
        threshold=threshold,
        earn_multiplier_pct=100 + 25 * rank,
        window_days=365,
        created_at=utcnow(),
    )
    db.session.add(tier)
    db.session.commit()
    return tier


def topics(member_id: int | None = None) -> list[str]:
    query = sa.select(OutboxEvent.topic).order_by(OutboxEvent.id)
    if member_id is not None:
        query = query.where(OutboxEvent.member_id == member_id)
    return list(db.session.scalars(query))


def csv_text(rows: list[dict[str, Any]], columns: list[str] | None = None) -> str:
    columns = columns or list(dict.fromkeys(key for row in rows for key in row))
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=columns)
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()
