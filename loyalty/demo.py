"""Demo data for `make run`: stores, tiers, earning rules, offers, members and their orders.

Everything goes through the same schemas and operations as the API, so the demo is also a
smoke test of the whole write path. Deterministic (seeded), so two runs look alike.
"""

from __future__ import annotations

import json
import os
import random
from collections.abc import Iterable, Mapping
from datetime import date, datetime, timedelta
from typing import Any

import sqlalchemy as sa

from loyalty.auth import scopes
from loyalty.auth.keys import client_for_key, create_api_client
from loyalty.coupons import offers as coupon_offers
from loyalty.coupons import wallet
from loyalty.coupons.schemas import OfferCreateSchema, RewardCreateSchema
from loyalty.db import db
from loyalty.earning import operations as earning
from loyalty.earning.schemas import OrderRequestSchema, RuleCreateSchema
from loyalty.members.models import Member
from loyalty.members.operations import enrol_member
from loyalty.stores.operations import create_store
from loyalty.stores.schemas import StoreCreateSchema
from loyalty.tiers.operations import create_tier
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
    pos_client_id = _client_id_of(keys["pos PAR-01"])
    members = [_member(rng, n, now) for n in range(member_count)]
    db.session.flush()
    for member in members:
        _orders(rng, member, pos_client_id, now)
    _offers(members, now)
    return keys


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


def _member(rng: random.Random, n: int, now: datetime) -> Member:
    first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
    store = rng.choice(STORES)
    identities = {"email": f"{first}.{last}.{n}@example.com".lower()}
    if rng.random() < 0.7:
        identities["phone"] = f"+3361{n:07d}"
    if rng.random() < 0.4:
        identities["card"] = f"OL{n:08d}"
    return enrol_member(
        identities=identities,
        now=now - timedelta(days=rng.randint(30, 700)),
        channel=rng.choice(["online", "app", "store"]),
        store_id=store["id"],
        profile={
            "name": f"{first} {last}",
            "birthday": date(rng.randint(1960, 2004), rng.randint(1, 12), rng.randint(1, 28)),
            "timezone": store["timezone"],
            "locale": "fr-FR" if store["country"] == "FR" else "de-DE",
            "region": store["region"],
        },
    )


def _orders(rng: random.Random, member: Member, pos_client_id: int, now: datetime) -> None:
    for n in range(rng.randint(0, 6)):
        store = rng.choice(STORES)
        channel = rng.choice(["online", "app", "store", "store"])
        lines = [
            {
                "sku": sku,
                "category": category,
                "quantity": rng.randint(1, 2),
                "unit_price_minor": price,
            }
            for sku, category, price in rng.sample(CATALOGUE, rng.randint(1, 3))
        ]
        body: dict[str, Any] = {
            "order_id": f"demo-{member.id}-{n}",
            "channel": channel,
            "member": {"member_id": member.id},
            "lines": lines,
            "currency": "EUR",
            # Within OMNILOYAL_MAX_ORDER_AGE_DAYS (default 30), as a till would post them.
            "occurred_at": (now - timedelta(days=rng.randint(0, 29))).isoformat(),
        }
        if channel == "store":
            body["store_id"] = store["id"]
        earning.post_order(
            OrderRequestSchema().load(body), client_id=pos_client_id, now=now, actor="demo"
        )


def _offers(members: list[Member], now: datetime) -> None:
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
                "min_spend_minor": 2500,
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
    wallet.create_reward(
        RewardCreateSchema().load(
            {"offer_id": bottle.id, "name": "A free water bottle", "points_cost": 300, "stock": 500}
        ),
        now=now,
    )
