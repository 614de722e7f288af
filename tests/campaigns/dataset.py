"""A random member base built straight into the tables, and a brute-force Python evaluator
of segment rules over it (written from the rule semantics, not from the compiler)."""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

import sqlalchemy as sa

from campaigns import profiles
from loyalty.auth.keys import create_api_client
from loyalty.batches import run_chunks
from loyalty.db import db
from loyalty.earning.models import ActivityEvent, Order, OrderLine
from loyalty.ledger import operations as ledger
from loyalty.ledger.models import LedgerAccount, PointLot
from loyalty.members.merge import merge_members
from loyalty.members.models import Member
from loyalty.members.operations import block_member, enrol_member
from loyalty.stores.models import Store
from loyalty.tiers.models import Tier
from notifications.bulk import reachable
from notifications.consent import ConsentSource, Purpose, allows, record_consent
from notifications.models import Message
from notifications.providers.base import Channel
from notifications.push import register_subscription

CHANNELS = ["online", "app", "store", "partner"]
CATEGORIES = ["phones", "shoes", "books", "food"]
TAGS = ["vip", "staff", "press"]
REGIONS = ["north", "south", "east"]
TIERS = ["silver", "gold", "platinum"]
STORES = ["S1", "S2", "S3"]


@dataclass
class Person:
    id: int
    ids: list[int]
    member: Member
    tier: str | None
    orders: list[Order] = field(default_factory=list)
    lines: list[tuple[Order, OrderLine]] = field(default_factory=list)
    lots: list[PointLot] = field(default_factory=list)
    balance: int = 0
    tags: set[str] = field(default_factory=set)
    rfm: tuple[int | None, int | None, int | None] = (None, None, None)
    consents: set[str] = field(default_factory=set)  # marketing opt-ins, as sending sees them
    reachable: set[str] = field(default_factory=set)  # channels with a destination now
    marketing_sent: list[datetime] = field(default_factory=list)  # over every merged id
    activities: list[datetime] = field(default_factory=list)  # over every merged id


def build(seed: int, *, members: int, now: datetime) -> dict[int, Person]:
    """Members (a few merged, one blocked), orders with lines over two years, point lots
    with and without expiry, tiers, tags; then the profiles rebuilt and RFM scored."""
    rng = random.Random(seed)
    for code in STORES:
        db.session.add(
            Store(id=code, name=code, region="north", timezone="UTC", active=True, created_at=now)
        )
    tiers = {}
    for rank, code in enumerate(TIERS):
        tier = Tier(code=code, name=code, rank=rank + 1, threshold=rank * 100, created_at=now)
        db.session.add(tier)
        tiers[code] = tier
    client = create_api_client(name="till", scopes=["orders:write"], store_id=None, now=now).client
    db.session.flush()
    created: list[Member] = []
    for n in range(members):
        identities = {}
        if rng.random() < 0.5:
            identities["phone"] = f"+49151{seed:02d}{n:06d}"
        if not identities or rng.random() < 0.7:
            identities["email"] = f"m{seed}-{n}@example.com"
        member = enrol_member(
            identities=identities,
            now=now - timedelta(days=rng.randint(0, 700), minutes=rng.randint(0, 1000)),
            channel=rng.choice([*CHANNELS, None]),
            profile={
                "region": rng.choice([*REGIONS, None]),
                "birthday": rng.choice([None, date(1990, rng.randint(1, 12), rng.randint(1, 28))]),
                "attributes": {"tags": rng.sample(TAGS, rng.randint(0, 2))},
            },
        )
        tier = rng.choice([*TIERS, None])
        member.tier_id = tiers[tier].id if tier else None
        created.append(member)
    db.session.flush()
    for member in created:
        for k in range(rng.choice([0, 0, 1, 2, 3, 5])):
            _order(rng, member.id, client.id, now, f"{member.id}-{k}")
        for _ in range(rng.randint(0, 3)):
            expires = rng.choice([None, now + timedelta(days=rng.randint(-2, 120))])
            ledger.earn_points(
                member.id,
                rng.choice([100, 300, 500, 800]),
                ledger.Cause("test", f"lot-{member.id}-{rng.random()}"),
                now=now - timedelta(days=1),
                actor="test",
                expires_at=expires,
            )
        _reach_and_engagement(rng, member.id, now)
    db.session.flush()
    # A few merges (some chained) and a blocked member.
    ids = [m.id for m in created]
    rng.shuffle(ids)
    for survivor, merged in zip(ids[0:6:2], ids[1:6:2], strict=True):
        merge_members(survivor, merged, reason=None, now=now, actor="test")
    if len(ids) > 8:
        merge_members(ids[0], ids[2], reason=None, now=now, actor="test")
        block_member(ids[7], reason="test", now=now, actor="test")
    db.session.commit()
    run_chunks(lambda cursor: profiles.rebuild_chunk(cursor, now, limit=7), what="test rebuild")
    profiles.score_rfm(now)
    db.session.commit()
    return load(now)


def _reach_and_engagement(rng: random.Random, member_id: int, now: datetime) -> None:
    """Marketing consents (granted, withdrawn or never asked), push subscriptions (some
    expired), marketing and transactional messages and activity events over the past
    months: what the reach and engagement attributes read."""
    for channel in Channel:
        choice = rng.choice([None, True, False])
        if choice is not None:
            record_consent(
                member_id, channel, Purpose.MARKETING, choice,
                source=ConsentSource.IMPORT.value, now=now - timedelta(days=rng.randint(0, 99)),
                actor="test",
            )  # fmt: skip
    if rng.random() < 0.4:
        register_subscription(
            member_id,
            endpoint=f"https://push.example/{member_id}",
            p256dh="key",
            auth="auth",
            expires_at=rng.choice([None, now - timedelta(days=1), now + timedelta(days=30)]),
            now=now,
        )
    for k in range(rng.choice([0, 0, 1, 2, 4])):
        sent = rng.choice(
            [None, now - timedelta(days=rng.randint(0, 120), hours=rng.randint(0, 23))]
        )
        db.session.add(
            Message(
                member_id=member_id, channel="sms", template="campaign_offer",
                purpose=rng.choice(["marketing", "marketing", "transactional"]),
                dedupe_key=f"dataset:{member_id}:{k}", variables={},
                state="sent" if sent else "queued", attempts=1 if sent else 0,
                created_at=now, updated_at=now, sent_at=sent,
            )
        )  # fmt: skip
    for k in range(rng.choice([0, 0, 1, 2])):
        db.session.add(
            ActivityEvent(
                member_id=member_id, kind="check_in", dedupe_key=f"dataset-{k}", points=0,
                breakdown=[], created_at=now - timedelta(days=rng.randint(0, 600)),
            )
        )  # fmt: skip


def _order(rng: random.Random, member_id: int, client_id: int, now: datetime, ref: str) -> None:
    channel = rng.choice(CHANNELS)
    status = rng.choice(["posted"] * 5 + ["partially_refunded", "refunded", "cancelled"])
    occurred = now - timedelta(days=rng.randint(0, 500), hours=rng.randint(0, 23))
    lines = [
        (rng.choice([*CATEGORIES, None]), rng.randint(1, 3), rng.choice([500, 1000, 2500]))
        for _ in range(rng.randint(1, 3))
    ]
    total = sum(q * p for _, q, p in lines)
    refunded = {"refunded": total, "partially_refunded": total // 2}.get(status, 0)
    order = Order(
        client_id=client_id,
        external_id=ref,
        channel=channel,
        store_id=rng.choice(STORES) if channel in ("store", "partner") else None,
        member_id=member_id,
        currency="EUR",
        subtotal_minor=total,
        discount_minor=0,
        total_minor=total,
        refunded_minor=refunded,
        occurred_at=occurred,
        status=status,
        fingerprint="x" * 64,
        created_at=now,
        updated_at=now,
    )
    db.session.add(order)
    db.session.flush()
    for index, (category, quantity, price) in enumerate(lines):
        refunded_quantity = quantity if status == "refunded" else rng.choice([0, 0, quantity])
        db.session.add(
            OrderLine(
                order_id=order.id,
                index=index,
                sku=f"SKU{index}",
                category=category,
                quantity=quantity,
                unit_price_minor=price,
                refunded_quantity=refunded_quantity if status != "posted" else 0,
            )
        )


def load(now: datetime) -> dict[int, Person]:
    """Every active person with their raw rows, read back from the source tables."""
    all_members = list(db.session.scalars(sa.select(Member)))
    tiers = {t.id: t.code for t in db.session.scalars(sa.select(Tier))}
    people: dict[int, Person] = {}
    for member in all_members:
        if member.status == "active":
            people[member.id] = Person(member.id, [], member, tiers.get(member.tier_id))
    owner = {m.id: (m.merged_into_id or m.id) for m in all_members}
    for member in all_members:
        person = people.get(owner[member.id])
        if person is not None:
            person.ids.append(member.id)
            person.tags.update(t for t in (member.attributes or {}).get("tags", []))
    for order in db.session.scalars(sa.select(Order)):
        person = people.get(owner[order.member_id])
        if person is not None and order.status in ("posted", "partially_refunded"):
            person.orders.append(order)
    for line in db.session.scalars(sa.select(OrderLine)):
        order = db.session.get(Order, line.order_id)
        person = people.get(owner[order.member_id])
        counted = order.status in ("posted", "partially_refunded")
        if (
            person is not None
            and counted
            and line.category
            and line.refunded_quantity < line.quantity
        ):
            person.lines.append((order, line))
    for lot in db.session.scalars(sa.select(PointLot).where(PointLot.status == "available")):
        person = people.get(owner[lot.member_id])
        if person is not None:
            person.lots.append(lot)
    for account in db.session.scalars(
        sa.select(LedgerAccount).where(LedgerAccount.kind == "member_points")
    ):
        person = people.get(owner[account.member_id])
        if person is not None:
            person.balance += account.balance
    for message in db.session.scalars(
        sa.select(Message).where(Message.purpose == "marketing", Message.sent_at.is_not(None))
    ):
        person = people.get(owner[message.member_id])
        if person is not None:
            person.marketing_sent.append(message.sent_at)
    for activity in db.session.scalars(sa.select(ActivityEvent)):
        person = people.get(owner[activity.member_id])
        if person is not None:
            person.activities.append(activity.created_at)
    reach = reachable(list(people), now)
    for person in people.values():
        # As the send pipeline sees them: the consent check it runs per message, and the
        # fan-out's destinations.
        person.consents = {c.value for c in Channel if allows(person.id, c, Purpose.MARKETING)}
        person.reachable = {c.value for c in reach[person.id]}
    _rfm(people, now)
    return people


def _quintiles(values: dict[int, Any]) -> dict[int, int]:
    n = len(values)
    return {
        key: -(-5 * sum(1 for other in values.values() if other <= value) // n)
        for key, value in values.items()
    }


def _rfm(people: dict[int, Person], now: datetime) -> None:
    """RFM over every person with a profile and an order (blocked ones included: the
    nightly scoring ranks every profile), from the definition: ceil(5 * at_or_below / n)."""
    now_people = {p.id: p for p in people.values() if p.orders}
    everyone = _scored_population(now)
    recency = {pid: last for pid, (last, _, _) in everyone.items()}
    frequency = {pid: f for pid, (_, f, _) in everyone.items()}
    monetary = {pid: m for pid, (_, _, m) in everyone.items()}
    r, f, m = _quintiles(recency), _quintiles(frequency), _quintiles(monetary)
    for pid, person in now_people.items():
        person.rfm = (r[pid], f[pid], m[pid])


def _scored_population(now: datetime) -> dict[int, tuple[Any, int, int]]:
    """(last order, orders 365d, spend 365d) per person with an order, from raw orders."""
    members = list(db.session.scalars(sa.select(Member)))
    owner = {m.id: (m.merged_into_id or m.id) for m in members}
    status = {m.id: m.status for m in members}
    result: dict[int, list[Any]] = {}
    for order in db.session.scalars(sa.select(Order)):
        pid = owner[order.member_id]
        if status[pid] not in ("active", "blocked") or order.status not in (
            "posted",
            "partially_refunded",
        ):
            continue
        entry = result.setdefault(pid, [order.occurred_at, 0, 0])
        entry[0] = max(entry[0], order.occurred_at)
        if order.occurred_at >= now - timedelta(days=365):
            entry[1] += 1
            entry[2] += order.total_minor - order.refunded_minor
    return {pid: tuple(v) for pid, v in result.items()}  # type: ignore[misc]


# --- the evaluator --------------------------------------------------------------------------


def values(person: Person, now: datetime) -> dict[str, Any]:
    orders = person.orders

    def window(days: int | None) -> list[Order]:
        if days is None:
            return orders
        return [o for o in orders if o.occurred_at >= now - timedelta(days=days)]

    def net(chosen: list[Order]) -> int:
        return sum(o.total_minor - o.refunded_minor for o in chosen)

    ordered = sorted(orders, key=lambda o: (o.occurred_at, o.id))
    first, last = (ordered[0], ordered[-1]) if ordered else (None, None)
    online = sum(1 for o in orders if o.channel in ("online", "app"))
    store = sum(1 for o in orders if o.channel in ("store", "partner"))
    counts = Counter(o.store_id for o in orders if o.store_id)
    latest = {s: max(o.occurred_at for o in orders if o.store_id == s) for s in counts}
    favourite = (
        sorted(counts, key=lambda s: (-counts[s], -latest[s].timestamp(), s))[0] if counts else None
    )
    member = person.member
    result: dict[str, Any] = {
        "points_balance": person.balance,
        "orders_lifetime": len(orders),
        "spend_lifetime_minor": net(orders),
        "online_share_pct": online * 100 // len(orders) if orders else None,
        "store_share_pct": store * 100 // len(orders) if orders else None,
        "rfm_recency": person.rfm[0],
        "rfm_frequency": person.rfm[1],
        "rfm_monetary": person.rfm[2],
        "birthday_month": member.birthday.month if member.birthday else None,
        "first_order_at": first.occurred_at if first else None,
        "last_order_at": last.occurred_at if last else None,
        "enrolled_at": member.created_at,
        "tier_since": None,
        "birthday": member.birthday,
        "first_order_channel": first.channel if first else None,
        "last_order_channel": last.channel if last else None,
        "first_order_store": first.store_id if first else None,
        "last_order_store": last.store_id if last else None,
        "favourite_store": favourite,
        "tier": person.tier,
        "enrolled_channel": member.enrolled_channel,
        "enrolled_store": member.enrolled_store_id,
        "home_store": member.home_store_id,
        "region": member.region,
        "omnichannel": online > 0 and store > 0,
        "tags": person.tags,
    }
    for channel in Channel:
        result[f"marketing_consent_{channel.value}"] = channel.value in person.consents
        result[f"{channel.value}_reachable"] = channel.value in person.reachable
    for days in (30, 90):
        horizon = now - timedelta(days=days)
        result[f"marketing_messages_{days}d"] = sum(
            1 for at in person.marketing_sent if at >= horizon
        )
    result["last_marketing_message_at"] = max(person.marketing_sent, default=None)
    result["last_engagement_at"] = max(
        [*(o.occurred_at for o in orders), *person.activities], default=None
    )
    for days in (30, 90, 365):
        result[f"orders_{days}d"] = len(window(days))
        result[f"spend_{days}d_minor"] = net(window(days))
    for days in (30, 60, 90):
        horizon = now + timedelta(days=days)
        result[f"points_expiring_{days}d"] = sum(
            lot.remaining for lot in person.lots if lot.expires_at and lot.expires_at <= horizon
        )
    return result


def _categories(person: Person, node: dict[str, Any], wanted: list[str], now: datetime) -> bool:
    for order, line in person.lines:
        if line.category not in wanted:
            continue
        if node.get("channels") and order.channel not in node["channels"]:
            continue
        if node.get("within_days") is not None:
            # the latest purchase of that category on that channel must be recent enough
            latest = max(
                o.occurred_at
                for o, ln in person.lines
                if ln.category == line.category and o.channel == order.channel
            )
            if latest < now - timedelta(days=node["within_days"]):
                continue
        return True
    return False


def evaluate(rule: dict[str, Any], person: Person, attrs: dict[str, Any], now: datetime) -> bool:
    if "and" in rule:
        return all(evaluate(child, person, attrs, now) for child in rule["and"])
    if "or" in rule:
        return any(evaluate(child, person, attrs, now) for child in rule["or"])
    if "not" in rule:
        return not evaluate(rule["not"], person, attrs, now)
    name, op, value = rule["field"], rule["op"], rule.get("value")
    if name == "categories":
        has = [_categories(person, rule, [v], now) for v in value]
        return {"contains_any": any(has), "contains_all": all(has), "contains_none": not any(has)}[
            op
        ]
    if name == "tags":
        has = [v in person.tags for v in value]
        return {"contains_any": any(has), "contains_all": all(has), "contains_none": not any(has)}[
            op
        ]
    current = attrs[name]
    if op == "is":
        return current is value
    if op == "is_null":
        return current is None
    if op == "is_not_null":
        return current is not None
    if current is None:
        return False
    if op == "within_last_days":
        return current >= now - timedelta(days=value)
    if op == "more_than_days_ago":
        return current < now - timedelta(days=value)
    if op in ("before", "after"):
        value = (
            date.fromisoformat(value)
            if isinstance(current, date) and not isinstance(current, datetime)
            else datetime.fromisoformat(value).replace(tzinfo=UTC)
        )
    return {
        "eq": lambda: current == value,
        "ne": lambda: current != value,
        "gt": lambda: current > value,
        "gte": lambda: current >= value,
        "lt": lambda: current < value,
        "lte": lambda: current <= value,
        "in": lambda: current in value,
        "not_in": lambda: current not in value,
        "between": lambda: value[0] <= current <= value[1],
        "before": lambda: current < value,
        "after": lambda: current > value,
    }[op]()
