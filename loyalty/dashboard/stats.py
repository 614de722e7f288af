"""The overview's figures, computed off the request path so the page costs the same at
1M members as at 1,000.

- Per-day series (points issued / redeemed / expired / adjusted, coupon redemptions online
  vs in store) are added up incrementally: each refresh reads only the ledger entries and
  settled redemptions after its cursor (primary-key range scans), so its cost is the rows
  written since the last refresh, not the table.
- Member counts (total, active in 30 days, by tier, by enrolment channel) and the
  liability are one aggregate pass each, stored as a snapshot row. At 1M members that is a
  few hundred milliseconds of sequential reads every REFRESH_SECONDS in a background job,
  never in a page view. The page reads the latest snapshot and 30 days of figures (two
  primary-key range reads).
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Any

import sqlalchemy as sa

from loyalty.dashboard.models import DailyFigure, OverviewSnapshot, StatsCursor
from loyalty.db import db, utc_day
from loyalty.queue import job
from loyalty.scheduler import Schedule

REFRESH_SECONDS = 300
CHUNK = 50_000
# A redemption is counted once it is settled (held redemptions end within the hold TTL).
SETTLED_AFTER = timedelta(hours=1)
ONLINE = ("online", "app")
POINT_METRICS = ("points.issued", "points.redeemed", "points.expired", "points.adjusted")
REDEMPTION_METRICS = ("redemptions.online", "redemptions.store")


def _cursor(name: str) -> StatsCursor:
    # Locked: two refreshes at once would count the same rows twice.
    cursor = db.session.scalar(
        sa.select(StatsCursor).where(StatsCursor.name == name).with_for_update()
    )
    if cursor is None:
        cursor = StatsCursor(name=name, last_id=0)
        db.session.add(cursor)
        db.session.flush()
    return cursor


def _add(figures: dict[tuple[Any, str], int]) -> None:
    for (day, metric), value in figures.items():
        if not value:
            continue
        if isinstance(day, str):
            day = date.fromisoformat(day[:10])
        row = db.session.get(DailyFigure, (day, metric))
        if row is None:
            db.session.add(DailyFigure(day=day, metric=metric, value=value))
        else:
            row.value += value
    db.session.flush()


def count_ledger_entries() -> int:
    """Add the ledger entries written since the last run to the per-day point figures."""
    from loyalty.ledger.models import LedgerEntry, ProgramAccount
    from loyalty.ledger.operations import program_account_id

    cursor = _cursor("ledger_entries")
    ids = {code: program_account_id(code) for code in ProgramAccount}
    issued = {ids[ProgramAccount.ISSUED], ids[ProgramAccount.OPENING]}
    total = 0
    while True:
        upper = db.session.scalar(
            sa.select(sa.func.max(LedgerEntry.id)).where(
                LedgerEntry.id > cursor.last_id, LedgerEntry.id <= cursor.last_id + CHUNK
            )
        )
        if upper is None:
            # A gap wider than a chunk (ids a rolled-back transaction took), or the end.
            following = db.session.scalar(
                sa.select(sa.func.min(LedgerEntry.id)).where(LedgerEntry.id > cursor.last_id)
            )
            if following is None:
                return total
            cursor.last_id = following - 1
            continue
        day = utc_day(LedgerEntry.created_at)
        rows = db.session.execute(
            sa.select(
                day,
                LedgerEntry.from_account_id,
                LedgerEntry.to_account_id,
                sa.func.sum(LedgerEntry.amount),
                sa.func.count(),
            )
            .where(LedgerEntry.id > cursor.last_id, LedgerEntry.id <= upper)
            .group_by(day, LedgerEntry.from_account_id, LedgerEntry.to_account_id)
        ).all()
        figures: dict[tuple[Any, str], int] = {}
        for key, source, target, amount, n in rows:
            total += n
            for metric, value in _point_moves(ids, issued, source, target, int(amount)):
                figures[(key, metric)] = figures.get((key, metric), 0) + value
        _add(figures)
        cursor.last_id = upper


def _point_moves(
    ids: dict[Any, int], issued: set[int], source: int, target: int, amount: int
) -> list[tuple[str, int]]:
    """What one (from, to) sum of entries means for the per-day figures (as the finance
    activity report reads them: loyalty.ledger.queries.activity)."""
    from loyalty.ledger.models import ProgramAccount

    moves = []
    if source in issued:
        moves.append(("points.issued", amount))
    if target == ids[ProgramAccount.ISSUED]:
        moves.append(("points.issued", -amount))  # reversals of earned points
    if target == ids[ProgramAccount.REDEEMED]:
        moves.append(("points.redeemed", amount))
    if source == ids[ProgramAccount.REDEEMED]:
        moves.append(("points.redeemed", -amount))
    if target == ids[ProgramAccount.EXPIRED]:
        moves.append(("points.expired", amount))
    if source == ids[ProgramAccount.ADJUSTMENTS]:
        moves.append(("points.adjusted", amount))
    if target == ids[ProgramAccount.ADJUSTMENTS]:
        moves.append(("points.adjusted", -amount))
    return moves


def count_redemptions(now: datetime) -> int:
    """Add redemptions settled since the last run, per day of redemption and channel."""
    from loyalty.coupons.models import CouponRedemption as R

    cursor = _cursor("coupon_redemptions")
    settled = now - SETTLED_AFTER
    upper = db.session.scalar(
        sa.select(sa.func.max(R.id)).where(R.id > cursor.last_id, R.created_at < settled)
    )
    if upper is None:
        return 0
    day = utc_day(R.redeemed_at)
    rows = db.session.execute(
        sa.select(day, R.channel, sa.func.count())
        .where(R.id > cursor.last_id, R.id <= upper, R.status == "redeemed")
        .group_by(day, R.channel)
    ).all()
    figures: dict[tuple[Any, str], int] = {}
    for key, channel, n in rows:
        metric = "redemptions.online" if channel in ONLINE else "redemptions.store"
        figures[(key, metric)] = figures.get((key, metric), 0) + n
    _add(figures)
    cursor.last_id = upper
    return sum(figures.values())


MESSAGES_SETTLED_AFTER = timedelta(days=1)  # quiet hours and retries are over by then


def count_messages(now: datetime) -> int:
    """Add the messages created a day or more ago (their outcome known) per channel and
    final state: `messages.<channel>.<state>` on the day they were created."""
    from notifications.models import Message as M

    cursor = _cursor("messages")
    upper = db.session.scalar(
        sa.select(sa.func.max(M.id)).where(
            M.id > cursor.last_id, M.created_at < now - MESSAGES_SETTLED_AFTER
        )
    )
    if upper is None:
        return 0
    day = utc_day(M.created_at)
    rows = db.session.execute(
        sa.select(day, M.channel, M.state, sa.func.count())
        .where(M.id > cursor.last_id, M.id <= upper)
        .group_by(day, M.channel, M.state)
    ).all()
    _add({(key, f"messages.{channel}.{state}"): n for key, channel, state, n in rows})
    cursor.last_id = upper
    return sum(n for *_, n in rows)


def totals(prefix: str) -> dict[str, int]:
    """metric -> its sum over all days, for metrics starting with `prefix` (one grouped
    read of the small per-day table)."""
    return {
        metric: int(total)
        for metric, total in db.session.execute(
            sa.select(DailyFigure.metric, sa.func.sum(DailyFigure.value))
            .where(DailyFigure.metric.startswith(prefix))
            .group_by(DailyFigure.metric)
        ).all()
    }


def member_figures(now: datetime) -> dict[str, Any]:
    from campaigns.models import MemberProfile
    from loyalty.ledger.queries import liability
    from loyalty.members.models import Member
    from loyalty.tiers.models import Tier

    tiers = dict(db.session.execute(sa.select(Tier.id, Tier.code)).all())
    # One pass over the members gives the total and both breakdowns.
    total, by_tier, by_channel = 0, {}, {}
    for tier_id, channel, n in db.session.execute(
        sa.select(Member.tier_id, Member.enrolled_channel, sa.func.count())
        .where(Member.status == "active")
        .group_by(Member.tier_id, Member.enrolled_channel)
    ).all():
        total += n
        tier = tiers.get(tier_id, "none")
        by_tier[tier] = by_tier.get(tier, 0) + n
        by_channel[channel or "unknown"] = by_channel.get(channel or "unknown", 0) + n
    # The profile's 30-day window starts at its oldest order inside 30 days: one range of
    # ix_member_profiles_window_30d.
    active_30d = (
        db.session.scalar(
            sa.select(sa.func.count())
            .select_from(MemberProfile)
            .where(MemberProfile.window_30d_oldest_at >= now - timedelta(days=30))
        )
        or 0
    )
    owed = liability(now)
    return {
        "members_total": total,
        "members_active_30d": active_30d,
        "members_by_tier": by_tier,
        "members_by_channel": by_channel,
        "liability_points": owed["outstanding"],
        "pending_points": owed["pending"],
        "debt_points": owed["debt"],
    }


def refresh(now: datetime) -> OverviewSnapshot:
    count_ledger_entries()
    count_redemptions(now)
    count_messages(now)
    snapshot = OverviewSnapshot(computed_at=now, figures=member_figures(now))
    db.session.add(snapshot)
    db.session.flush()
    # Keep the last day of snapshots (the newest is read; older ones show the trend).
    db.session.execute(
        sa.delete(OverviewSnapshot).where(OverviewSnapshot.computed_at < now - timedelta(days=1))
    )
    return snapshot


def latest_snapshot() -> OverviewSnapshot | None:
    return db.session.scalar(
        sa.select(OverviewSnapshot).order_by(OverviewSnapshot.id.desc()).limit(1)
    )


def daily_series(since: date, until: date) -> dict[str, list[int]]:
    """metric -> one value per day from `since` to `until` (zeros where nothing happened)."""
    days = [since + timedelta(days=n) for n in range((until - since).days + 1)]
    index = {d: i for i, d in enumerate(days)}
    series = {m: [0] * len(days) for m in (*POINT_METRICS, *REDEMPTION_METRICS)}
    for row in db.session.scalars(
        sa.select(DailyFigure).where(DailyFigure.day >= since, DailyFigure.day <= until)
    ):
        if row.metric in series and row.day in index:
            series[row.metric][index[row.day]] = row.value
    return {"days": [d.isoformat() for d in days], **series}  # type: ignore[dict-item]


@job("default", timeout=900)
def refresh_dashboard() -> int:
    from loyalty.clock import utcnow

    return refresh(utcnow()).id


def schedules() -> list[Schedule]:
    return [Schedule("refresh-dashboard", REFRESH_SECONDS, refresh_dashboard)]
