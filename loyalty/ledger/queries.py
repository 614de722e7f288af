"""Read models over the ledger: member history, expiring points, finance reports."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

import sqlalchemy as sa

from loyalty.db import BIGINT_MAX, db, is_postgres, utc_day
from loyalty.errors import InvalidInput
from loyalty.ledger.models import (
    AccountKind,
    LedgerAccount,
    LedgerEntry,
    LedgerTransaction,
    LotStatus,
    PointLot,
    ProgramAccount,
)
from loyalty.ledger.operations import held_shares, program_account_id
from loyalty.timezones import local


@dataclass(frozen=True)
class Page:
    items: list[Any]
    next_cursor: str | None


def history(
    member_ids: Sequence[int],
    *,
    cursor: str | None,
    limit: int,
    kinds: list[str] | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> Page:
    """Newest first; the cursor is the last id seen (keyset pagination, stable under inserts).

    `member_ids`: the person's ids (loyalty.members.resolution.history_member_ids), so the
    history of a person with merged duplicates includes theirs, and each merge appears as
    its outgoing and incoming transactions: the amounts add up to the person's balance.
    """
    query = sa.select(LedgerTransaction).where(LedgerTransaction.member_id.in_(member_ids))
    if cursor is not None:
        # ASCII digits within BIGINT: "²" passes isdigit() but not int(), a huge id overflows.
        if not (cursor.isascii() and cursor.isdigit()) or int(cursor) > BIGINT_MAX:
            raise InvalidInput("cursor is not valid", field="cursor")
        query = query.where(LedgerTransaction.id < int(cursor))
    if kinds:
        query = query.where(LedgerTransaction.kind.in_(kinds))
    if since is not None:
        query = query.where(LedgerTransaction.created_at >= since)
    if until is not None:
        query = query.where(LedgerTransaction.created_at < until)
    rows = list(db.session.scalars(query.order_by(LedgerTransaction.id.desc()).limit(limit + 1)))
    more = len(rows) > limit
    rows = rows[:limit]
    return Page(rows, str(rows[-1].id) if more and rows else None)


def expiring_points(member_id: int, *, now: datetime, days: int, timezone: str) -> dict[str, Any]:
    """Points that expire within `days`, by expiry instant. Points under an active hold
    don't expire while held (see the expiry job), so they are reported as `held`, apart
    from the expiring amounts: the held points are the soonest-expiring ones (a capture
    spends those first), overdue lots kept alive by the hold included."""
    horizon = now + timedelta(days=days)
    rows = db.session.execute(
        sa.select(PointLot.expires_at, sa.func.sum(PointLot.remaining))
        .where(
            PointLot.member_id == member_id,
            PointLot.status == LotStatus.AVAILABLE.value,
            PointLot.expires_at.is_not(None),
            PointLot.expires_at <= horizon,
        )
        .group_by(PointLot.expires_at)
        .order_by(PointLot.expires_at)
    ).all()
    shielded = held_shares([(at, int(n or 0)) for at, n in rows], points_held(member_id))
    buckets = [
        {
            "expires_at": at,
            "local_date": local(at, timezone).date().isoformat(),
            "points": int(n) - held,
            "held": held,
        }
        for (at, n), held in zip(rows, shielded, strict=True)
        if n
    ]
    return {
        "total": sum(b["points"] for b in buckets),
        "held": sum(b["held"] for b in buckets),
        "within_days": days,
        "buckets": buckets,
    }


def points_held(member_id: int) -> int:
    """Points under the member's active holds (their points account's `held`)."""
    return int(
        db.session.scalar(
            sa.select(LedgerAccount.held).where(
                LedgerAccount.member_id == member_id,
                LedgerAccount.kind == AccountKind.MEMBER_POINTS.value,
            )
        )
        or 0
    )


def liability(now: datetime, timezone: str = "UTC") -> dict[str, Any]:
    """Outstanding points (the program's obligation), by the month they expire.

    A lot's month is the one of the last instant it counts, in the program's timezone:
    points expiring at the end of November (expires_at = 1 December 00:00 local, maybe
    still 30 November or already 1 December in UTC) are a November bucket.
    """
    totals = dict(
        db.session.execute(
            sa.select(LedgerAccount.kind, sa.func.sum(LedgerAccount.balance))
            .where(LedgerAccount.kind != AccountKind.PROGRAM.value)
            .group_by(LedgerAccount.kind)
        ).all()
    )
    by_month = [
        {"expiry_month": m, "points": n}
        for m, n in sorted(_points_by_expiry_month(timezone), key=_never_last)
        if n
    ]
    return {
        "as_of": now,
        "outstanding": int(totals.get(AccountKind.MEMBER_POINTS.value) or 0),
        "pending": int(totals.get(AccountKind.MEMBER_PENDING.value) or 0),
        "debt": int(totals.get(AccountKind.MEMBER_DEBT.value) or 0),
        "timezone": timezone,
        "by_expiry_month": by_month,
    }


def _never_last(bucket: tuple[str | None, int]) -> tuple[bool, str]:
    return (bucket[0] is None, bucket[0] or "")


def _points_by_expiry_month(timezone: str) -> list[tuple[str | None, int]]:
    """(YYYY-MM or None for never, points) of the available lots, in `timezone`."""
    available = PointLot.status == LotStatus.AVAILABLE.value
    if is_postgres():  # the database converts: one row per month
        last_instant = PointLot.expires_at - sa.text("interval '1 microsecond'")
        month = sa.func.to_char(sa.func.timezone(timezone, last_instant), "YYYY-MM")
        rows = db.session.execute(
            sa.select(month, sa.func.sum(PointLot.remaining)).where(available).group_by(month)
        ).all()
        return [(m, int(n or 0)) for m, n in rows]
    # SQLite has no timezones: sum per expiry instant (few with month-end expiry), convert here.
    months: dict[str | None, int] = {}
    for expires_at, points in db.session.execute(
        sa.select(PointLot.expires_at, sa.func.sum(PointLot.remaining))
        .where(available)
        .group_by(PointLot.expires_at)
    ).all():
        key = None
        if expires_at is not None:
            key = local(expires_at - timedelta(microseconds=1), timezone).strftime("%Y-%m")
        months[key] = months.get(key, 0) + int(points or 0)
    return list(months.items())


def activity(since: date, until: date) -> list[dict[str, Any]]:
    """Points issued, redeemed, expired, adjusted (net) and reversed per UTC day."""
    if until < since:
        raise InvalidInput("until is before since", field="until")
    if (until - since).days > 366:
        raise InvalidInput("at most 366 days per report", field="until")
    start = datetime(since.year, since.month, since.day, tzinfo=_utc())
    end = datetime(until.year, until.month, until.day, tzinfo=_utc()) + timedelta(days=1)
    ids = {code: program_account_id(code) for code in ProgramAccount}
    day = utc_day(LedgerEntry.created_at)
    rows = db.session.execute(
        sa.select(
            day,
            LedgerEntry.from_account_id,
            LedgerEntry.to_account_id,
            sa.func.sum(LedgerEntry.amount),
        )
        .where(
            LedgerEntry.created_at >= start,
            LedgerEntry.created_at < end,
            sa.or_(
                LedgerEntry.from_account_id.in_(ids.values()),
                LedgerEntry.to_account_id.in_(ids.values()),
            ),
        )
        .group_by(day, LedgerEntry.from_account_id, LedgerEntry.to_account_id)
    ).all()
    days: dict[str, dict[str, int]] = {}
    for d in range((until - since).days + 1):
        key = (since + timedelta(days=d)).isoformat()
        days[key] = {"issued": 0, "redeemed": 0, "expired": 0, "adjusted": 0, "reversed": 0}
    for key, source, target, amount in rows:
        bucket = days.setdefault(
            key, {"issued": 0, "redeemed": 0, "expired": 0, "adjusted": 0, "reversed": 0}
        )
        amount = int(amount)
        if source in (ids[ProgramAccount.ISSUED], ids[ProgramAccount.OPENING]):
            bucket["issued"] += amount
        if target == ids[ProgramAccount.ISSUED]:
            bucket["reversed"] += amount
        if target == ids[ProgramAccount.REDEEMED]:
            bucket["redeemed"] += amount
        if source == ids[ProgramAccount.REDEEMED]:
            bucket["redeemed"] -= amount
        if target == ids[ProgramAccount.EXPIRED]:
            bucket["expired"] += amount
        if source == ids[ProgramAccount.ADJUSTMENTS]:
            bucket["adjusted"] += amount
        if target == ids[ProgramAccount.ADJUSTMENTS]:
            bucket["adjusted"] -= amount
    return [{"day": key, **values} for key, values in sorted(days.items())]


def _utc():  # type: ignore[no-untyped-def]
    from datetime import UTC

    return UTC
