"""Member profiles for targeting: per-person aggregates, kept current from the outbox.

One function, `refresh_people(person_ids, now)`, rewrites the profile rows of a set of
people from the source tables with a handful of set-based statements (INSERT ... SELECT
with subqueries bound to each person's history ids, resolved first: the merge rule).
Everything else calls it:

- the outbox consumer `campaigns.profiles` (a batch consumer: a relay chunk at once)
  refreshes the people the events name (orders, points, tier, member changes, merges,
  imports): only those people's rows are read, so the cost per event is flat (no rescans);
- `omniloyal campaigns rebuild-profiles` walks every person in id order, a chunk per
  transaction (a new schema version, a repaired bug, a restored backup);
- the hourly `refresh-profile-windows` job refreshes the people whose rolling windows
  (30 / 90 / 365 days) lost an order since their row was computed: each row keeps the
  oldest order inside each window, indexed, so the job reads only stale rows;
- the nightly `score-rfm` job recomputes the RFM quintiles (they are relative to
  everyone, so no single event can keep them right).

Time-relative facts that a row could not keep exact are not stored: points expiring
within N days are read from the point lots at query time (campaigns.attributes), and
"bought category X within N days" from `member_category_purchases.last_at`.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from campaigns.models import MemberCategoryPurchase, MemberProfile, MemberTag
from loyalty import outbox
from loyalty.batches import BatchCursor
from loyalty.clock import utcnow
from loyalty.db import any_of, constant, db
from loyalty.earning.models import Order, OrderLine
from loyalty.ledger.models import LedgerAccount
from loyalty.members.models import Member, MemberStatus
from loyalty.outbox.models import OutboxEvent

log = logging.getLogger(__name__)

CHUNK = 1000  # people per rebuild transaction, and per refresh of the outbox consumer
WINDOWS = (30, 90, 365)
ONLINE_CHANNELS = ("online", "app")
STORE_CHANNELS = ("store", "partner")
COUNTED_STATUSES = ("posted", "partially_refunded")  # purchases that still stand

members = Member.__table__
orders = Order.__table__
lines = OrderLine.__table__
profiles = MemberProfile.__table__
categories = MemberCategoryPurchase.__table__
tags = MemberTag.__table__


def _person_orders(history: Sequence[int]) -> Any:
    # `history` is the person's member ids, resolved first (the merge rule): a plain
    # `member_id IN (...)` on ix_orders_member_occurred, never a correlated subquery.
    return sa.and_(
        orders.c.member_id.in_(history),
        orders.c.status.in_([constant(s) for s in COUNTED_STATUSES]),
    )


def _net(column_table: Any = orders) -> Any:
    return column_table.c.total_minor - column_table.c.refunded_minor


def _order_value(mine: Any, column: str, *, first: bool) -> Any:
    order = (
        (mine.c.occurred_at, mine.c.id) if first else (mine.c.occurred_at.desc(), mine.c.id.desc())
    )
    return sa.select(mine.c[column]).order_by(*order).limit(1).scalar_subquery()


def _aggregate(mine: Any, expression: Any, since: datetime | None = None) -> Any:
    query = sa.select(expression).select_from(mine)
    if since is not None:
        query = query.where(mine.c.occurred_at >= since)
    return query.scalar_subquery()


def _favourite_store(mine: Any) -> Any:
    """The store of most purchases; ties go to the most recent, then the smallest id."""
    return (
        sa.select(mine.c.store_id)
        .where(mine.c.store_id.is_not(None))
        .group_by(mine.c.store_id)
        .order_by(sa.func.count().desc(), sa.func.max(mine.c.occurred_at).desc(), mine.c.store_id)
        .limit(1)
        .scalar_subquery()
    )


def _histories(person_ids: Sequence[int]) -> dict[int, list[int]]:
    """Each current person among `person_ids` -> their member ids (own id first, then the
    ids merged into them). One statement on the primary key and ix_members_merged_into_id;
    merged ids map to nobody (their survivor is refreshed under its own id)."""
    found = db.session.execute(
        sa.select(members.c.id, members.c.merged_into_id).where(
            sa.or_(members.c.id.in_(person_ids), members.c.merged_into_id.in_(person_ids))
        )
    ).all()
    wanted = set(person_ids)
    histories: dict[int, list[int]] = {}
    for member_id, merged_into_id in sorted(found, key=lambda row: (row[1] is not None, row[0])):
        person = member_id if merged_into_id is None else merged_into_id
        if person in wanted:
            histories.setdefault(person, []).append(member_id)
    return {person: ids for person, ids in histories.items() if ids[0] == person}


def _profile_select(person_id: int, history: Sequence[int], now: datetime) -> sa.Select[Any]:
    """One person's profile row, every aggregate bound to the person's resolved history ids
    (indexed `member_id IN (...)` reads of orders and ledger accounts)."""
    accounts = LedgerAccount.__table__
    # The person's counted orders, read once (one index range per history id); every
    # aggregate below reads this CTE, not `orders` (PostgreSQL materializes a CTE that is
    # referenced more than once).
    mine = (
        sa.select(
            orders.c.id,
            orders.c.occurred_at,
            orders.c.channel,
            orders.c.store_id,
            orders.c.total_minor,
            orders.c.refunded_minor,
        )
        .where(_person_orders(history))
        .cte("person_orders")
    )
    count = sa.func.count()
    spend = sa.func.coalesce(sa.func.sum(_net(mine)), 0)
    columns: dict[str, Any] = {
        "person_id": members.c.id,
        "points_balance": sa.select(sa.func.coalesce(sa.func.sum(accounts.c.balance), 0))
        .where(
            accounts.c.member_id.in_(history),
            accounts.c.kind == constant("member_points"),
        )
        .scalar_subquery(),
        "orders_lifetime": _aggregate(mine, count),
        "spend_lifetime_minor": _aggregate(mine, spend),
        "online_orders": sa.select(count)
        .where(mine.c.channel.in_(ONLINE_CHANNELS))
        .scalar_subquery(),
        "store_orders": sa.select(count)
        .where(mine.c.channel.in_(STORE_CHANNELS))
        .scalar_subquery(),
        "first_order_at": _order_value(mine, "occurred_at", first=True),
        "first_order_channel": _order_value(mine, "channel", first=True),
        "first_order_store_id": _order_value(mine, "store_id", first=True),
        "last_order_at": _order_value(mine, "occurred_at", first=False),
        "last_order_channel": _order_value(mine, "channel", first=False),
        "last_order_store_id": _order_value(mine, "store_id", first=False),
        "favourite_store_id": _favourite_store(mine),
    }
    for days in WINDOWS:
        since = now - timedelta(days=days)
        columns[f"orders_{days}d"] = _aggregate(mine, count, since)
        columns[f"spend_{days}d_minor"] = _aggregate(mine, spend, since)
        columns[f"window_{days}d_oldest_at"] = _aggregate(
            mine, sa.func.min(mine.c.occurred_at), since
        )
    columns["tier_since"] = _tier_since(members.c.id)
    columns["refreshed_at"] = sa.literal(now, profiles.c.refreshed_at.type)
    return sa.select(*(value.label(name) for name, value in columns.items())).where(
        members.c.id == person_id,
        members.c.merged_into_id.is_(None),
        members.c.status != constant(MemberStatus.ERASED.value),
    )


def _tier_since(person: Any) -> Any:
    """When the person reached their tier: kept from their row, else the latest
    `tier.changed` event still in the outbox, else NULL (unknown: the tier predates the
    profiles and its event was purged). The consumer sets it from each tier.changed."""
    events = OutboxEvent.__table__
    kept = sa.select(profiles.c.tier_since).where(profiles.c.person_id == person).scalar_subquery()
    latest = (
        sa.select(sa.func.max(events.c.occurred_at))
        .where(events.c.topic == constant("tier.changed"), events.c.member_id == person)
        .scalar_subquery()
    )
    return sa.case((members.c.tier_id.is_(None), None), else_=sa.func.coalesce(kept, latest))


def refresh_people(person_ids: Iterable[int], now: datetime) -> int:
    """Rewrite the profile rows (aggregates, categories, tags) of these people from the
    source tables. Ids that are merged or erased lose their rows. Returns the people
    written. Flushes, never commits."""
    ids = sorted(set(person_ids))
    if not ids:
        return 0
    # Computed before the delete: tier_since is read from the row being replaced.
    histories = _histories(ids)
    rows = [
        dict(row._mapping)
        for person, history in histories.items()
        for row in db.session.execute(_profile_select(person, history, now))
    ]
    for table in (categories, tags, profiles):
        db.session.execute(sa.delete(table).where(table.c.person_id.in_(ids)))
    if rows:
        db.session.execute(sa.insert(profiles), rows)
        written = [row["person_id"] for row in rows]
        _insert_categories({person: histories[person] for person in written})
        _insert_tags(written)
    return len(rows)


def _insert_categories(histories: dict[int, list[int]]) -> None:
    """The people's categories per channel, from their orders read by the resolved history
    ids (`orders.member_id IN (...)` on ix_orders_member_occurred, however many people a
    chunk holds; a merged id's orders are mapped to its person)."""
    owner = {member_id: person for person, ids in histories.items() for member_id in ids}
    merged = {member_id: person for member_id, person in owner.items() if member_id != person}
    person = (
        sa.case(merged, value=orders.c.member_id, else_=orders.c.member_id)
        if merged
        else orders.c.member_id
    )
    bought = (
        sa.select(
            person.label("person_id"),
            lines.c.category,
            orders.c.channel,
            orders.c.occurred_at,
        )
        .select_from(orders.join(lines, lines.c.order_id == orders.c.id))
        .where(
            any_of(orders.c.member_id, sorted(owner)),
            orders.c.status.in_([constant(s) for s in COUNTED_STATUSES]),
            lines.c.category.is_not(None),
            lines.c.refunded_quantity < lines.c.quantity,
        )
        .subquery("bought")
    )
    select = sa.select(
        bought.c.person_id,
        bought.c.category,
        bought.c.channel,
        sa.func.min(bought.c.occurred_at),
        sa.func.max(bought.c.occurred_at),
    ).group_by(bought.c.person_id, bought.c.category, bought.c.channel)
    db.session.execute(
        sa.insert(categories).from_select(
            ["person_id", "category", "channel", "first_at", "last_at"], select
        )
    )


def _insert_tags(person_ids: Sequence[int]) -> None:
    """Tags are the `tags` list in the member's free attributes (the person's own row and
    every row merged into it)."""
    found = db.session.execute(
        sa.select(
            sa.func.coalesce(members.c.merged_into_id, members.c.id), members.c.attributes
        ).where(sa.or_(members.c.id.in_(person_ids), members.c.merged_into_id.in_(person_ids)))
    ).all()
    values = {
        (person, tag.strip()[:64]) for person, attributes in found for tag in _tags(attributes)
    }
    if values:
        db.session.execute(sa.insert(tags), [{"person_id": p, "tag": t} for p, t in sorted(values)])


def _tags(attributes: Any) -> list[str]:
    listed = attributes.get("tags") if isinstance(attributes, dict) else None
    if not isinstance(listed, list):
        return []
    return [tag for tag in listed if isinstance(tag, str) and tag.strip()]


# --- the outbox consumer ---------------------------------------------------------------------

TOPICS = (
    "member.enrolled",
    "member.updated",
    "member.blocked",
    "member.unblocked",
    "member.merged",
    "member.erased",
    "members.imported",
    "order.posted",
    "order.refunded",
    "order.cancelled",
    "points.earned",
    "points.burned",
    "points.burn_reversed",
    "points.adjusted",
    "points.reversed",
    "points.released",
    "points.expired",
    "points.merged",
    "points.merged_away",
    "tier.changed",
)


def people_of(event: outbox.Event) -> set[int]:
    """The member ids an event changes the profile of (resolved to people when refreshed)."""
    ids: set[int] = set()
    if event.member_id is not None:
        ids.add(event.member_id)
    payload = event.payload or {}
    for key in ("survivor_id", "merged_id", "member_id"):
        if isinstance(payload.get(key), int):
            ids.add(payload[key])
    for member_id in payload.get("member_ids") or ():
        if isinstance(member_id, int):
            ids.add(member_id)
    return ids


def current_people(member_ids: Iterable[int]) -> set[int]:
    """Each id as the person it belongs to now; merged ids are kept too, so their own
    (now stale) rows are deleted by the refresh."""
    ids = set(member_ids)
    if not ids:
        return set()
    found = db.session.execute(
        sa.select(members.c.id, members.c.merged_into_id).where(members.c.id.in_(ids))
    ).all()
    return ids | {survivor for _, survivor in found if survivor is not None}


@outbox.consumer(*TOPICS, name="campaigns.profiles", batch=True)
def on_events(events: Sequence[outbox.Event]) -> None:
    """Refresh the profiles of the people a relay chunk of events names, all at once (one
    `refresh_people` for the chunk: its deletes, inserts, categories and tags are one
    statement each, not one set per event). Idempotent: the rows are rewritten from the
    source tables, so a redelivered event writes the same rows."""
    named: set[int] = set()
    for event in events:
        named |= people_of(event)
    # In slices of CHUNK people: a chunk of `members.imported` events names thousands each,
    # and every statement stays within a bounded IN list (and the drivers' parameter limit).
    listed, now = sorted(named), utcnow()
    for start in range(0, len(listed), CHUNK):
        refresh_people(current_people(listed[start : start + CHUNK]), now)
    for event in events:  # event id order: the latest tier change of a person wins
        if event.topic == "tier.changed" and event.member_id is not None:
            _set_tier_since(event.member_id, event.occurred_at)


def _set_tier_since(member_id: int, at: datetime) -> None:
    person = members.c.id == sa.func.coalesce(
        sa.select(members.c.merged_into_id).where(members.c.id == member_id).scalar_subquery(),
        member_id,
    )
    person_id = db.session.scalar(sa.select(members.c.id).where(person))
    db.session.execute(
        sa.update(profiles).where(profiles.c.person_id == person_id).values(tier_since=at)
    )


# --- rebuild, window refresh, RFM -------------------------------------------------------------


def rebuild_chunk(cursor: BatchCursor, now: datetime, *, limit: int = CHUNK) -> int:
    """Refresh the next `limit` people after `cursor.after_id` (id order). Returns the
    people written; `cursor.handled` counts the ids walked."""
    ids = list(
        db.session.scalars(
            sa.select(members.c.id)
            .where(members.c.id > (cursor.after_id or 0))
            .order_by(members.c.id)
            .limit(limit)
        )
    )
    if not ids:
        return 0
    cursor.after_id = ids[-1]
    cursor.handled += len(ids)
    return refresh_people(ids, now)


def stale_windows_chunk(cursor: BatchCursor, now: datetime, *, limit: int = CHUNK) -> int:
    """Refresh people whose oldest order in a rolling window has left it since their row
    was computed (each test is a range of its own index)."""
    ids: set[int] = set()
    for days in WINDOWS:
        column = profiles.c[f"window_{days}d_oldest_at"]
        ids.update(
            db.session.scalars(
                sa.select(profiles.c.person_id)
                .where(column < now - timedelta(days=days))
                .order_by(column)
                .limit(limit)
            )
        )
    if not ids:
        return 0
    cursor.handled += len(ids)
    return refresh_people(ids, now)


def score_rfm(now: datetime) -> int:
    """Recency, frequency, monetary quintiles (1-5, 5 best) among people with an order.

    Quintile of a value v among n people: ceil(5 * (people with a value <= v) / n), so ties
    share a score. Recency ranks the last order time (later is better), frequency the
    orders and monetary the spend of the last 365 days. One set-based UPDATE.
    """
    scored = sa.select(profiles.c.person_id).where(profiles.c.last_order_at.is_not(None))
    n = db.session.scalar(sa.select(sa.func.count()).select_from(scored.subquery())) or 0
    db.session.execute(
        sa.update(profiles)
        .where(profiles.c.last_order_at.is_(None))
        .values(rfm_recency=None, rfm_frequency=None, rfm_monetary=None)
    )
    if not n:
        return 0
    ranks = (
        sa.select(
            profiles.c.person_id,
            *(
                _quintile(column, n).label(name)
                for name, column in (
                    ("r", profiles.c.last_order_at),
                    ("f", profiles.c.orders_365d),
                    ("m", profiles.c.spend_365d_minor),
                )
            ),
        )
        .where(profiles.c.last_order_at.is_not(None))
        .subquery()
    )
    db.session.execute(
        sa.update(profiles)
        .where(profiles.c.person_id == ranks.c.person_id)
        .values(rfm_recency=ranks.c.r, rfm_frequency=ranks.c.f, rfm_monetary=ranks.c.m)
    )
    return n


def _quintile(column: Any, n: int) -> Any:
    # rank() over descending values = 1 + people above; so people at or below = n - rank + 1
    above = sa.func.rank().over(order_by=column.desc()) - 1
    at_or_below = n - above
    return (5 * at_or_below + n - 1) // n
