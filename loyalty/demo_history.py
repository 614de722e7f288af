"""The demo's older orders, written in bulk: the year before OMNILOYAL_MAX_ORDER_AGE_DAYS.

The API refuses orders older than that bound (a back-dated order would earn under ended
promotions), so the demo writes its older era itself, the way the member import writes
opening balances (loyalty.members.importer): ids reserved up front, one multi-row INSERT
per table. Each order gets exactly what `post_order` would have written for it, dated when
it happened: the order and its lines, the points computed by the earning engine from the
rules, one earn transaction, one entry from the program's ISSUED account to the member's
points account, one available lot expiring by the program's policy, and the member's points
balance raised by the same amount. So balance = sum of entries = sum of available lots
holds (tests/ledger/invariants.py), and the finance reports see each day's points on its day.
The recent era goes through the real operations (loyalty.demo).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from flask import current_app

from loyalty.basket import Basket, BasketLine
from loyalty.db import db
from loyalty.earning import engine
from loyalty.earning.models import EarningRule, Order, OrderLine, OrderStatus, RuleKind
from loyalty.earning.operations import order_cause_ref, order_fingerprint, rule_spec
from loyalty.ledger.models import (
    AccountKind,
    LedgerAccount,
    LedgerEntry,
    LedgerTransaction,
    LotStatus,
    PointLot,
    ProgramAccount,
    TransactionKind,
)
from loyalty.ledger.operations import program_account_id
from loyalty.members.importer import allocate_ids, bulk_insert
from loyalty.stores.operations import cached_store


@dataclass(frozen=True)
class PastOrder:
    """An order of the older era, as the demo made it up."""

    order_id: str
    member_id: int
    client_id: int
    channel: str
    store_id: str | None
    occurred_at: datetime
    lines: Sequence[dict[str, Any]]  # sku, category, quantity, unit_price_minor


def write_past_orders(orders: Sequence[PastOrder], *, actor: str) -> int:
    """Write `orders` (any order) as if each had been posted when it happened; returns the
    points earned. Flushes, never commits."""
    if not orders:
        return 0
    orders = sorted(orders, key=lambda order: order.occurred_at)
    rules = [
        rule_spec(rule)
        for rule in db.session.scalars(
            sa.select(EarningRule).where(
                EarningRule.active.is_(True), EarningRule.kind != RuleKind.EVENT_BONUS.value
            )
        )
    ]
    policy = current_app.extensions["omniloyal.settings"].points_expiry
    points_accounts = dict(
        db.session.execute(
            sa.select(LedgerAccount.member_id, LedgerAccount.id).where(
                LedgerAccount.kind == AccountKind.MEMBER_POINTS.value,
                LedgerAccount.member_id.in_({order.member_id for order in orders}),
            )
        ).all()
    )
    order_ids = allocate_ids(Order.__table__, len(orders))
    earned = [_earned(order, rules) for order in orders]
    with_points = [i for i, result in enumerate(earned) if result.total > 0]
    tx_ids = dict(
        zip(with_points, allocate_ids(LedgerTransaction.__table__, len(with_points)), strict=True)
    )
    lot_ids = dict(
        zip(with_points, allocate_ids(PointLot.__table__, len(with_points)), strict=True)
    )
    order_rows, line_rows, tx_rows, lot_rows, entry_rows = [], [], [], [], []
    balances: dict[int, int] = defaultdict(int)
    issued = program_account_id(ProgramAccount.ISSUED)
    for i, (order, result, order_pk) in enumerate(zip(orders, earned, order_ids, strict=True)):
        total = sum(line["quantity"] * line["unit_price_minor"] for line in order.lines)
        order_rows.append(
            {
                "id": order_pk,
                "client_id": order.client_id,
                "external_id": order.order_id,
                "channel": order.channel,
                "store_id": order.store_id,
                "member_id": order.member_id,
                "member_enrolled": False,
                "currency": "EUR",
                "subtotal_minor": total,
                "discount_minor": 0,
                "total_minor": total,
                "refunded_minor": 0,
                "occurred_at": order.occurred_at,
                "status": OrderStatus.POSTED.value,
                "points_earned": result.total,
                "points_reversed": 0,
                "pending_until": None,
                "fingerprint": order_fingerprint(_request_of(order)),
                "breakdown": [entry.as_dict() for entry in result.breakdown],
                "coupons": [],
                "ledger_transaction_id": tx_ids.get(i),
                "cancellation": None,
                "created_at": order.occurred_at,
                "updated_at": order.occurred_at,
            }
        )
        line_rows += [
            {
                "order_id": order_pk,
                "index": index,
                "sku": line["sku"],
                "category": line["category"],
                "quantity": line["quantity"],
                "unit_price_minor": line["unit_price_minor"],
                "discount_minor": 0,
                "refunded_quantity": 0,
                "refunded_minor": 0,
            }
            for index, line in enumerate(order.lines)
        ]
        if i not in tx_ids:
            continue
        tx_rows.append(
            {
                "id": tx_ids[i],
                "member_id": order.member_id,
                "kind": TransactionKind.EARN.value,
                "cause_type": "order",
                "cause_ref": order_cause_ref(order_pk),
                "amount": result.total,
                "reverses_id": None,
                "actor": actor,
                "reason": None,
                "details": {"order_id": order.order_id, "client_id": order.client_id},
                "created_at": order.occurred_at,
            }
        )
        lot_rows.append(
            {
                "id": lot_ids[i],
                "member_id": order.member_id,
                "status": LotStatus.AVAILABLE.value,
                "amount": result.total,
                "remaining": result.total,
                "earned_at": order.occurred_at,
                "available_at": None,
                "expires_at": policy.expires_at(order.occurred_at),
                "source_transaction_id": tx_ids[i],
                "cause_type": "order",
                "cause_ref": order_cause_ref(order_pk),
                "expired_points": 0,
                "reversed_points": 0,
            }
        )
        entry_rows.append(
            {
                "transaction_id": tx_ids[i],
                "from_account_id": issued,
                "to_account_id": points_accounts[order.member_id],
                "amount": result.total,
                "lot_id": lot_ids[i],
                "created_at": order.occurred_at,
            }
        )
        balances[order.member_id] += result.total
    bulk_insert(LedgerTransaction.__table__, tx_rows)  # first: orders and lots point to them
    bulk_insert(PointLot.__table__, lot_rows)
    bulk_insert(LedgerEntry.__table__, entry_rows)
    bulk_insert(Order.__table__, order_rows)
    bulk_insert(OrderLine.__table__, line_rows)
    accounts = LedgerAccount.__table__
    db.session.execute(
        accounts.update()
        .where(accounts.c.id == sa.bindparam("account"))
        .values(balance=accounts.c.balance + sa.bindparam("points")),
        [
            {"account": points_accounts[member_id], "points": points}
            for member_id, points in balances.items()
        ],
    )
    return sum(balances.values())


def _request_of(order: PastOrder) -> dict[str, Any]:
    """The order as its POST body would have said it (what the fingerprint covers)."""
    return {
        "order_id": order.order_id,
        "channel": order.channel,
        "store_id": order.store_id,
        "currency": "EUR",
        "member": {"member_id": order.member_id},
        "lines": [dict(line) for line in order.lines],
        "occurred_at": order.occurred_at,
    }


def _earned(order: PastOrder, rules: Sequence[engine.RuleSpec]) -> engine.EarnResult:
    store = cached_store(order.store_id) if order.store_id else None
    basket = Basket(
        currency="EUR",
        channel=order.channel,
        store_id=order.store_id,
        lines=tuple(
            BasketLine(
                index=index,
                sku=line["sku"],
                category=line["category"],
                quantity=line["quantity"],
                unit_price_minor=line["unit_price_minor"],
            )
            for index, line in enumerate(order.lines)
        ),
    )
    return engine.compute_points(
        basket,
        [rule for rule in rules if rule.in_window(order.occurred_at)],
        context=engine.EarnContext(
            channel=order.channel,
            store_id=order.store_id,
            region=store.region if store else None,
        ),
        now=order.occurred_at,
    )
