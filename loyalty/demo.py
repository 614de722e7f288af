"""Demo data for `make run`: stores, tiers, earning rules, offers, members and a year of orders.

A retailer's first look: 2,000 members across the web shop, the app and dozens of
stores, a year of orders with the seasons in them (a summer dip, the November and December
peak), tiers earned by them. The program, the members and the last
OMNILOYAL_MAX_ORDER_AGE_DAYS of orders (with coupon redemptions, returns and rewards bought
with points among them) go through the same schemas and operations as the API
(each with the clock at the moment it happened), so the demo is also a smoke test of the
write path; the older orders, which the API would refuse as too old, are written in bulk by
loyalty.demo_history exactly as posting them would have. Deterministic (seeded), so two runs
look alike. `make run` seeds it in about 15-25 s.
"""

from __future__ import annotations

import json
import os
import random
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from functools import partial
from typing import Any

import sqlalchemy as sa
from flask import current_app

from loyalty.auth import scopes
from loyalty.auth.keys import client_for_key, create_api_client
from loyalty.coupons import offers as coupon_offers
from loyalty.coupons import wallet
from loyalty.coupons.schemas import OfferCreateSchema, RewardCreateSchema
from loyalty.db import db
from loyalty.demo_history import PastOrder, write_past_orders
from loyalty.earning import operations as earning
from loyalty.earning.models import Order
from loyalty.earning.schemas import OrderRequestSchema, RefundRequestSchema, RuleCreateSchema
from loyalty.ledger.models import AccountKind, LedgerAccount
from loyalty.ledger.operations import member_balance
from loyalty.members.importer import bulk_insert
from loyalty.members.models import Member
from loyalty.members.operations import enrol_member, find_member_by_identity
from loyalty.outbox import consumers as outbox_consumers
from loyalty.outbox.models import DeliveryStatus, OutboxDelivery, OutboxEvent
from loyalty.stores.operations import create_store
from loyalty.stores.schemas import StoreCreateSchema
from loyalty.tiers.models import Tier
from loyalty.tiers.operations import create_tier, reevaluate_member_tier
from loyalty.tiers.schemas import TierCreateSchema

STORES = [
    {
        "id": "PAR-01",
        "name": "Paris Flagship",
        "region": "ile-de-france",
        "country": "FR",
        "timezone": "Europe/Paris",
        "partner": False,
    },
    {
        "id": "LYO-01",
        "name": "Lyon Part-Dieu",
        "region": "auvergne-rhone-alpes",
        "country": "FR",
        "timezone": "Europe/Paris",
        "partner": False,
    },
    {
        "id": "BER-01",
        "name": "Berlin Mitte",
        "region": "berlin",
        "country": "DE",
        "timezone": "Europe/Berlin",
        "partner": False,
    },
    {
        "id": "PTN-01",
        "name": "Partner: Galeries du Sport",
        "region": "ile-de-france",
        "country": "FR",
        "timezone": "Europe/Paris",
        "partner": True,
    },
]

# Dozens of stores: the retailer's own across France, Germany and Benelux, and partners.
_CITIES = [
    ("MRS", "Marseille", "provence-alpes-cote-d-azur", "FR", "Europe/Paris"),
    ("TLS", "Toulouse", "occitanie", "FR", "Europe/Paris"),
    ("NCE", "Nice", "provence-alpes-cote-d-azur", "FR", "Europe/Paris"),
    ("NTE", "Nantes", "pays-de-la-loire", "FR", "Europe/Paris"),
    ("STR", "Strasbourg", "grand-est", "FR", "Europe/Paris"),
    ("BOD", "Bordeaux", "nouvelle-aquitaine", "FR", "Europe/Paris"),
    ("LIL", "Lille", "hauts-de-france", "FR", "Europe/Paris"),
    ("REN", "Rennes", "bretagne", "FR", "Europe/Paris"),
    ("GRE", "Grenoble", "auvergne-rhone-alpes", "FR", "Europe/Paris"),
    ("MPL", "Montpellier", "occitanie", "FR", "Europe/Paris"),
    ("HAM", "Hamburg", "hamburg", "DE", "Europe/Berlin"),
    ("MUC", "Munich", "bayern", "DE", "Europe/Berlin"),
    ("CGN", "Cologne", "nordrhein-westfalen", "DE", "Europe/Berlin"),
    ("FRA", "Frankfurt", "hessen", "DE", "Europe/Berlin"),
    ("STU", "Stuttgart", "baden-wuerttemberg", "DE", "Europe/Berlin"),
    ("DUS", "Dusseldorf", "nordrhein-westfalen", "DE", "Europe/Berlin"),
    ("LEJ", "Leipzig", "sachsen", "DE", "Europe/Berlin"),
    ("BRU", "Brussels", "brussels", "BE", "Europe/Brussels"),
    ("ANR", "Antwerp", "flanders", "BE", "Europe/Brussels"),
    ("AMS", "Amsterdam", "noord-holland", "NL", "Europe/Amsterdam"),
    ("RTM", "Rotterdam", "zuid-holland", "NL", "Europe/Amsterdam"),
    ("LUX", "Luxembourg", "luxembourg", "LU", "Europe/Luxembourg"),
]
STORES += [
    {
        "id": f"{code}-01",
        "name": city,
        "region": region,
        "country": country,
        "timezone": timezone,
        "partner": False,
    }
    for code, city, region, country, timezone in _CITIES
]
STORES += [
    {
        "id": f"PTN-{n:02d}",
        "name": f"Partner: {name}",
        "region": region,
        "country": country,
        "timezone": timezone,
        "partner": True,
    }
    for n, (name, region, country, timezone) in enumerate(
        [
            ("Sport Haus Mitte", "berlin", "DE", "Europe/Berlin"),
            ("Run Lyon", "auvergne-rhone-alpes", "FR", "Europe/Paris"),
            ("Outdoor Gent", "flanders", "BE", "Europe/Brussels"),
            ("Bordeaux Marathon Shop", "nouvelle-aquitaine", "FR", "Europe/Paris"),
        ],
        start=2,
    )
]

TIERS = [
    {"code": "member", "name": "Member", "rank": 0, "threshold": 0},
    {
        "code": "silver",
        "name": "Silver",
        "rank": 1,
        "threshold": 500,
        "earn_multiplier_pct": 125,
        "benefits": "Free shipping",
    },
    {
        "code": "gold",
        "name": "Gold",
        "rank": 2,
        "threshold": 2000,
        "earn_multiplier_pct": 150,
        "benefits": "Free shipping, early access, birthday gift",
    },
]

RULES = [
    {
        "name": "1 point per euro online",
        "kind": "base_rate",
        "currency": "EUR",
        "channels": ["online", "app"],
        "points": 1,
        "per_minor": 100,
    },
    {
        "name": "2 points per euro in store",
        "kind": "base_rate",
        "currency": "EUR",
        "channels": ["store", "partner"],
        "points": 2,
        "per_minor": 100,
    },
    {
        "name": "Double points on running shoes",
        "kind": "multiplier",
        "categories": ["running"],
        "multiplier_pct": 200,
    },
    {"name": "At most 5,000 points per order", "kind": "order_cap", "max_points": 5000},
    {
        "name": "Welcome bonus",
        "kind": "event_bonus",
        "activity_kind": "signup",
        "bonus_points": 100,
    },
    {
        "name": "Birthday bonus",
        "kind": "event_bonus",
        "activity_kind": "birthday",
        "bonus_points": 250,
    },
]

CATALOGUE = [
    ("RUN-SHOE-1", "running", 11999),
    ("RUN-SOCKS", "running", 1299),
    ("TEE-BASIC", "apparel", 1999),
    ("HOODIE", "apparel", 5999),
    ("BOTTLE", "accessories", 1499),
    ("CAP", "accessories", 2499),
]

FIRST_NAMES = ["Ada", "Grace", "Alan", "Linus", "Marie", "Nina", "Omar", "Sofia", "Yuki", "Li"]
LAST_NAMES = ["Lovelace", "Hopper", "Turing", "Curie", "Diaz", "Okafor", "Rossi", "Tanaka"]


def database_is_empty() -> bool:
    return db.session.scalar(sa.select(sa.func.count()).select_from(Member)) == 0


# The member `make run` suggests trying: a regular of the web shop and the Paris stores.
DEMO_MEMBER = {
    "name": "Marie Curie",
    "email": "marie.curie@example.com",
    "phone": "+33612345678",
    "card": "OLDEMO0001",
}
HISTORY_DAYS = 365
SPRING25_MIN_SPEND = 2500
REWARD_POINTS = 300
# Orders per month relative to an average month: a summer dip, the November-December peak
# (Black Friday, Christmas), the January sales. And per weekday (Monday first).
MONTH_WEIGHTS = {
    1: 1.05, 2: 0.75, 3: 0.85, 4: 0.95, 5: 1.0, 6: 1.05,
    7: 0.85, 8: 0.65, 9: 0.95, 10: 1.0, 11: 1.5, 12: 1.85,
}  # fmt: skip
WEEKDAY_WEIGHTS = (0.8, 0.8, 0.85, 0.9, 1.1, 1.45, 0.75)


def seed_demo(*, member_count: int, now: datetime) -> dict[str, str]:
    """Seed the demo program; returns the API keys created (shown once)."""
    rng = random.Random(42)
    for store in STORES:
        create_store(StoreCreateSchema().load(store), now=now)
    for tier in TIERS:
        create_tier(TierCreateSchema().load(tier), now=now)
    for rule in RULES:
        earning.create_rule(RuleCreateSchema().load(rule), now=now)
    keys = _api_keys(now)
    clients = {
        "online": _client_id_of(keys["web shop"]),
        "store": _client_id_of(keys["pos PAR-01"]),
    }
    shoppers = sorted(
        [_demo_shopper(now)] + [_shopper(rng, n, now) for n in range(1, member_count)],
        key=lambda shopper: shopper.joined_at,
    )
    members = [_enrol(shopper) for shopper in shoppers]
    db.session.flush()
    orders = [
        order
        for shopper, member in zip(shoppers, members, strict=True)
        for order in _orders_of(rng, shopper, member.id, clients, now)
    ]
    # The API takes orders up to OMNILOYAL_MAX_ORDER_AGE_DAYS old: older ones in bulk, the
    # rest posted through the real operation, in the order they happened.
    bound = now - timedelta(days=_settings().max_order_age_days - 1)
    write_past_orders([o for o in orders if o.occurred_at < bound], actor="demo")
    recent = sorted((o for o in orders if o.occurred_at >= bound), key=lambda o: o.occurred_at)
    reward_id = _offers(members, bound - timedelta(hours=1))  # running since the recent era
    demo_id = next(
        member.id
        for shopper, member in zip(shoppers, members, strict=True)
        if shopper.identities.get("email") == DEMO_MEMBER["email"]
    )
    _recent_era(rng, recent, reward_id=reward_id, keep_untouched=demo_id, now=now)
    for member in members:
        reevaluate_member_tier(member.id, now, allow_downgrade=True, reason="demo")
    _history_already_delivered([member.id for member in members], now)
    return keys


def _history_already_delivered(member_ids: list[int], now: datetime) -> None:
    """The demo's year is history, delivered before `make run` starts serving.

    No member is sent "you earned points" for an order of last spring (as the member import
    sends no welcome), no webhook is subscribed yet, and the segment profiles are built
    here in bulk rather than event by event: every consumer's delivery of these events is
    written as done (the relay creates only missing deliveries), so the embedded worker
    starts with no backlog and a login code goes out at once.
    """
    from campaigns.profiles import refresh_people

    for start in range(0, len(member_ids), 500):
        refresh_people(member_ids[start : start + 500], now)
    events = OutboxEvent.__table__
    rows = db.session.execute(
        sa.select(events.c.id, events.c.topic, events.c.member_id).where(
            events.c.dispatched_at.is_(None)
        )
    ).all()
    bulk_insert(
        OutboxDelivery.__table__,
        [
            {
                "event_id": row.id,
                "consumer": consumer,
                "member_id": row.member_id,
                "status": DeliveryStatus.DONE.value,
                "attempts": 0,
                "next_attempt_at": now,
                "claim_token": None,
                "last_error": None,
                "created_at": now,
                "updated_at": now,
                "done_at": now,
            }
            for row in rows
            for consumer in outbox_consumers.subscribers(row.topic)
        ],
    )
    db.session.execute(
        sa.update(events).where(events.c.dispatched_at.is_(None)).values(dispatched_at=now)
    )


def demo_member() -> dict[str, Any] | None:
    """The member `make run` suggests trying, with what the app would show first."""
    member = find_member_by_identity("email", DEMO_MEMBER["email"])
    if member is None:
        return None
    tier = db.session.get(Tier, member.tier_id) if member.tier_id else None
    return {
        **DEMO_MEMBER,
        "id": member.id,
        "tier": tier.name if tier else None,
        "balance": member_balance(member.id).balance,
    }


# The demo's API keys: name -> (client name, scopes, bound store, what it is for).
DEMO_KEYS: dict[str, tuple[str, frozenset[str], str | None, str]] = {
    "admin": ("demo admin", scopes.ALL, None, "every scope"),
    "pos PAR-01": ("demo till PAR-01", scopes.POS, "PAR-01", "a till: POS scopes, store PAR-01"),
    "web shop": (
        "demo web shop",
        scopes.POS | {scopes.MEMBER_TOKENS},
        None,
        "POS scopes + member tokens for the app",
    ),
    "member app": (
        "demo member app",
        frozenset({scopes.MEMBER_LOGIN}),
        None,
        "one-time-code login only (may ship inside the app)",
    ),
}
# Where `omniloyal demo` keeps the demo keys (in the instance folder, mode 0600): a key's
# secret is stored only as a digest, so this file is how `make run` can print working keys
# again on its next start instead of minting new ones every time.
DEMO_KEYS_FILE = "demo-keys.json"


def reuse_demo_keys(saved: Mapping[str, str], now: datetime) -> tuple[dict[str, str], list[str]]:
    """The demo keys for an already-seeded database, and the names of those minted now.

    Saved keys that still authenticate (not revoked, same database) are reused; the others
    are minted afresh.
    """
    keys = {
        name: key
        for name, key in saved.items()
        if name in DEMO_KEYS and isinstance(key, str) and client_for_key(key) is not None
    }
    minted = [name for name in DEMO_KEYS if name not in keys]
    keys.update(_api_keys(now, minted))
    return {name: keys[name] for name in DEMO_KEYS}, minted


def read_saved_keys(path: str) -> dict[str, str]:
    """The keys in `path`; nothing when the file is missing or unreadable (keys get minted)."""
    try:
        with open(path, encoding="utf-8") as file:
            saved = json.load(file)
    except (OSError, ValueError):
        return {}
    return saved if isinstance(saved, dict) else {}


def save_keys(path: str, keys: Mapping[str, str]) -> None:
    """Write the keys readable by the owner only (0600), replacing the file atomically."""
    temporary = f"{path}.tmp"
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as file:
        json.dump(dict(keys), file, indent=2)
        file.write("\n")
    os.chmod(temporary, 0o600)  # O_CREAT keeps the mode of a file left over from before
    os.replace(temporary, path)


def _api_keys(now: datetime, names: Iterable[str] = DEMO_KEYS) -> dict[str, str]:
    stamp = now.strftime("%Y-%m-%d %H:%M")
    keys = {}
    for name in names:
        client_name, key_scopes, store_id, _ = DEMO_KEYS[name]
        keys[name] = create_api_client(
            name=f"{client_name} ({stamp})", scopes=sorted(key_scopes), store_id=store_id, now=now
        ).key
    return keys


def _client_id_of(key: str) -> int:
    client = client_for_key(key)
    assert client is not None
    return client.id


@dataclass(frozen=True)
class Shopper:
    """A demo member before enrolment, and how they shop."""

    identities: dict[str, str]
    profile: dict[str, Any]
    joined_at: datetime
    channel: str  # where they enrolled: online, app, store
    store_id: str  # their home store
    habit: str  # online, store or both
    orders_per_year: int


def _demo_shopper(now: datetime) -> Shopper:
    return Shopper(
        identities={k: DEMO_MEMBER[k] for k in ("email", "phone", "card")},
        profile={
            "name": DEMO_MEMBER["name"],
            "birthday": date(1987, 11, 7),
            "timezone": "Europe/Paris",
            "locale": "fr-FR",
            "region": "ile-de-france",
        },
        joined_at=now - timedelta(days=735),  # the first member: the welcome coupon is hers
        channel="store",
        store_id="PAR-01",
        habit="both",
        orders_per_year=26,
    )


def _shopper(rng: random.Random, n: int, now: datetime) -> Shopper:
    first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
    store = rng.choice([s for s in STORES if not s["partner"]])
    identities = {"email": f"{first}.{last}.{n}@example.com".lower()}
    if rng.random() < 0.7:
        identities["phone"] = f"+3361{n:07d}"
    if rng.random() < 0.4:
        identities["card"] = f"OL{n:08d}"
    habit = rng.choices(["online", "store", "both"], weights=[45, 40, 15])[0]
    kind = rng.random()
    per_year = 1 if kind < 0.3 else rng.randint(2, 8) if kind < 0.85 else rng.randint(9, 20)
    return Shopper(
        identities=identities,
        profile={
            "name": f"{first} {last}",
            "birthday": date(rng.randint(1960, 2004), rng.randint(1, 12), rng.randint(1, 28)),
            "timezone": store["timezone"],
            "locale": {"FR": "fr-FR", "DE": "de-DE", "NL": "nl-NL"}.get(store["country"], "fr-BE"),
            "region": store["region"],
        },
        # A growing program: more members joined recently than long ago.
        joined_at=now
        - timedelta(days=int(730 * rng.random() ** 1.4), minutes=rng.randint(0, 1440)),
        channel={"online": rng.choice(["online", "app"]), "store": "store"}.get(
            habit, rng.choice(["online", "app", "store"])
        ),
        store_id=store["id"],
        habit=habit,
        orders_per_year=per_year,
    )


def _enrol(shopper: Shopper) -> Member:
    return enrol_member(
        identities=shopper.identities,
        now=shopper.joined_at,
        channel=shopper.channel,
        store_id=shopper.store_id if shopper.channel == "store" else None,
        profile={**shopper.profile, "home_store_id": shopper.store_id},
    )


def _order_times(rng: random.Random, count: int, start: datetime, end: datetime) -> list[datetime]:
    """`count` moments between start and end, denser in busy months and on Saturdays."""
    span = (end - start).total_seconds()
    if span <= 0:
        return []
    times: list[datetime] = []
    ceiling = max(MONTH_WEIGHTS.values()) * max(WEEKDAY_WEIGHTS)
    while len(times) < count:
        moment = start + timedelta(seconds=rng.random() * span)
        weight = MONTH_WEIGHTS[moment.month] * WEEKDAY_WEIGHTS[moment.weekday()]
        if rng.random() * ceiling < weight:
            # shops open 9:00-20:00 (UTC here is close enough for a demo)
            times.append(moment.replace(hour=rng.randint(8, 19), minute=rng.randint(0, 59)))
    return [t for t in times if t <= end]


def _orders_of(
    rng: random.Random, shopper: Shopper, member_id: int, clients: dict[str, int], now: datetime
) -> list[PastOrder]:
    start = max(shopper.joined_at, now - timedelta(days=HISTORY_DAYS))
    years = (now - start).days / 365
    count = round(shopper.orders_per_year * years + rng.random() - 0.5)
    orders = []
    for n, moment in enumerate(sorted(_order_times(rng, count, start, now))):
        in_store = {"store": True, "online": False}.get(shopper.habit, rng.random() < 0.5)
        store = None
        if in_store:
            home = rng.random() < 0.8
            store = next(s for s in STORES if s["id"] == shopper.store_id) if home else None
            store = store or rng.choice(STORES)
        channel = ("partner" if store["partner"] else "store") if store else None
        lines = [
            {
                "sku": sku,
                "category": category,
                "quantity": rng.randint(1, 2),
                "unit_price_minor": price,
            }
            for sku, category, price in rng.sample(CATALOGUE, rng.randint(1, 3))
        ]
        orders.append(
            PastOrder(
                order_id=f"demo-{member_id}-{n}",
                member_id=member_id,
                client_id=clients["store" if store else "online"],
                channel=channel or rng.choice(["online", "online", "app"]),
                store_id=store["id"] if store else None,
                occurred_at=moment,
                lines=lines,
            )
        )
    return orders


def _recent_era(
    rng: random.Random,
    orders: list[PastOrder],
    *,
    reward_id: int,
    keep_untouched: int,
    now: datetime,
) -> None:
    """The recent weeks through the real operations, each when it happened: the orders,
    every 5th that can pays with the SPRING25 code (once per member), every 10th returns a
    line days later, and every 3rd order of a member who can afford the reward is followed
    by its purchase with points (once per member). By count rather than by chance, so even
    a small demo has each. The demo member (`keep_untouched`) keeps her SPRING25 use and
    her points for the guides to try."""
    affordable = set(
        db.session.scalars(
            sa.select(LedgerAccount.member_id).where(
                LedgerAccount.kind == AccountKind.MEMBER_POINTS.value,
                LedgerAccount.balance - LedgerAccount.held >= REWARD_POINTS,
            )
        )
    ) - {keep_untouched}
    timeline: list[tuple[datetime, int, Callable[[], Any]]] = []
    spring_used: set[int] = set()
    seen = {"spring": 0, "return": 0, "reward": 0}
    for n, order in enumerate(orders):
        at = min(order.occurred_at + timedelta(minutes=2), now)
        total = sum(line["quantity"] * line["unit_price_minor"] for line in order.lines)
        codes: list[str] = []
        if order.member_id not in spring_used | {keep_untouched} and total >= SPRING25_MIN_SPEND:
            seen["spring"] += 1
            if seen["spring"] % 5 == 1:
                spring_used.add(order.member_id)
                codes = ["SPRING25"]
        timeline.append((at, n, partial(_post, order, posted_at=at, codes=codes)))
        later = at + timedelta(days=rng.randint(1, 12), hours=rng.randint(0, 12))
        if order.member_id == keep_untouched or later >= now:
            continue
        seen["return"] += 1
        if seen["return"] % 10 == 1:
            timeline.append((later, n, partial(_return_a_line, order, at=later)))
        elif order.member_id in affordable:
            seen["reward"] += 1
            if seen["reward"] % 3 == 1:
                affordable.discard(order.member_id)
                buy = partial(_buy_reward, order.member_id, reward_id, at=later)
                timeline.append((later, n, buy))
    for _, _, step in sorted(timeline, key=lambda event: (event[0], event[1])):
        step()


def _return_a_line(order: PastOrder, *, at: datetime) -> None:
    """One unit of the order's first line comes back (POST /v1/orders/{id}/refunds)."""
    row = db.session.scalar(
        sa.select(Order).where(
            Order.client_id == order.client_id, Order.external_id == order.order_id
        )
    )
    assert row is not None
    request = {"refund_id": f"{order.order_id}-r1", "lines": [{"index": 0, "quantity": 1}]}
    earning.refund_order(
        row, RefundRequestSchema().load(request), client_id=order.client_id, now=at, actor="demo"
    )


def _buy_reward(member_id: int, reward_id: int, *, at: datetime) -> None:
    """The member spends points on the reward, when they have enough."""
    if member_balance(member_id).available >= REWARD_POINTS:
        wallet.buy_reward(reward_id, member_id=member_id, now=at, actor="demo")


def _post(order: PastOrder, *, posted_at: datetime, codes: Sequence[str] = ()) -> None:
    """A recent order through the API's own schema and operation, posted when it happened."""
    body: dict[str, Any] = {
        "order_id": order.order_id,
        "channel": order.channel,
        "member": {"member_id": order.member_id},
        "lines": list(order.lines),
        "currency": "EUR",
        "occurred_at": order.occurred_at.isoformat(),
    }
    if order.store_id:
        body["store_id"] = order.store_id
    if codes:
        body["coupon_codes"] = list(codes)
    earning.post_order(
        OrderRequestSchema().load(body), client_id=order.client_id, now=posted_at, actor="demo"
    )


def _settings() -> Any:
    return current_app.extensions["omniloyal.settings"]


def _offers(members: list[Member], now: datetime) -> int:
    """The demo's offers, codes and reward, created at `now`; returns the reward's id."""
    welcome = coupon_offers.create_offer(
        OfferCreateSchema().load(
            {
                "name": "Welcome: 10% off",
                "kind": "percent",
                "percent_bp": 1000,
                "max_discount_minor": 2000,
                "currency": "EUR",
                "valid_days_after_issue": 60,
            }
        ),
        now=now,
        actor="demo",
    )
    spring = coupon_offers.create_offer(
        OfferCreateSchema().load(
            {
                "name": "SPRING25: 5 EUR off 25 EUR",
                "kind": "fixed_amount",
                "amount_minor": 500,
                "currency": "EUR",
                "min_spend_minor": SPRING25_MIN_SPEND,
                "per_member_limit": 1,
            }
        ),
        now=now,
        actor="demo",
    )
    coupon_offers.create_shared_code(spring.id, "SPRING25", max_uses=1000, now=now, actor="demo")
    coupon_offers.generate_codes(welcome.id, 50, now=now, actor="demo", prefix="WLC")
    wallet.issue_to_members(welcome.id, [m.id for m in members[:20]], now=now, actor="demo")
    bottle = coupon_offers.create_offer(
        OfferCreateSchema().load(
            {
                "name": "Free bottle",
                "kind": "free_item",
                "free_sku": "BOTTLE",
                "valid_days_after_issue": 90,
            }
        ),
        now=now,
        actor="demo",
    )
    reward = wallet.create_reward(
        RewardCreateSchema().load(
            {
                "offer_id": bottle.id,
                "name": "A free water bottle",
                "points_cost": REWARD_POINTS,
                "stock": 500,
            }
        ),
        now=now,
    )
    return reward.id
