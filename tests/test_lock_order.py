"""The service's one lock order (docs/architecture.md, "Lock order"), under real concurrency.

Each test puts one transaction behind a lock held by a third connection, starts the other
so that both are inside their critical sections at once, then lets go: with two paths
taking the same rows in opposite orders PostgreSQL detects a deadlock (a 500, or a retry
at the edge). Following the one order, the second request simply waits for the first.
"""

from __future__ import annotations

import logging

import pytest
import sqlalchemy as sa

from loyalty.clock import utcnow
from loyalty.coupons import wallet
from loyalty.db import db
from loyalty.earning.models import Order
from loyalty.ledger import operations as ledger
from loyalty.members.models import Member
from tests.concurrency import rows_locked, start_in_thread, wait_for_lock_waiters
from tests.coupons import factories as coupons
from tests.earning.factories import base_rate, order_body
from tests.factories import idem
from tests.ledger.invariants import assert_ledger_consistent

pytestmark = pytest.mark.postgres

ACCOUNTS_OF = "SELECT id FROM ledger_accounts WHERE member_id = :member_id FOR UPDATE"
OFFER_ROW = "SELECT id FROM coupon_offers WHERE id = :offer_id FOR UPDATE"


def _post(app, path: str, body: dict | None, headers: dict[str, str]):
    def call() -> tuple[int, dict]:
        response = app.test_client().post(path, json=body, headers=headers)
        return response.status_code, response.json

    return call


def _no_retries(caplog: pytest.LogCaptureFixture) -> list[str]:
    """The retries at the edge (each one logged): none, when the lock order holds."""
    assert not logging.getLogger("loyalty.transactions").disabled
    return [r.getMessage() for r in caplog.records if "retrying" in r.getMessage()]


def _merge(app, survivor_id: int, merged_id: int, headers: dict[str, str]):
    body = {"merged_member_id": merged_id, "reason": "same person"}
    return _post(app, f"/v1/members/{survivor_id}/merge", body, idem(headers))


def test_a_merge_and_an_order_redeeming_the_merged_members_own_coupon_both_succeed(
    app, make, caplog
):
    """merge (member -> code) vs order (code -> member, before the fix)."""
    caplog.set_level(logging.WARNING)
    base_rate()
    headers = make.api_key()
    survivor, duplicate = make.member(points=10), make.member(points=20)
    offer = coupons.offer()
    (own,) = wallet.issue_to_members(offer.id, [duplicate.id], now=utcnow(), actor="test")
    code = own.code
    db.session.commit()
    order = order_body({"member_id": duplicate.id}, coupon_codes=[code])

    with rows_locked(ACCOUNTS_OF, member_id=survivor.id):
        merging = start_in_thread(app, _merge(app, survivor.id, duplicate.id, headers))
        wait_for_lock_waiters(1)  # the merge holds both members, waits for the accounts
        ordering = start_in_thread(app, _post(app, "/v1/orders", order, headers))
        wait_for_lock_waiters(2)
    merged, posted = merging.result(timeout=30), ordering.result(timeout=30)

    assert merged[0] == 200, merged
    assert posted[0] == 201, posted
    assert posted[1]["member_id"] == survivor.id  # the order waited, then followed the merge
    assert posted[1]["discount_minor"] == 1_000
    assert _no_retries(caplog) == []
    assert ledger.member_balance(survivor.id).balance == 10 + 20 + 90
    assert_ledger_consistent()


@pytest.mark.parametrize("action", ["refund", "cancel"])
def test_a_merge_and_a_refund_or_cancel_of_the_merged_members_order_both_succeed(
    app, make, caplog, action
):
    """merge (member -> order) vs refund/cancel (order -> member, before the fix)."""
    caplog.set_level(logging.WARNING)
    base_rate()
    headers = make.api_key()
    survivor, duplicate = make.member(points=10), make.member()
    client = app.test_client()
    posted = client.post(
        "/v1/orders", json=order_body({"member_id": duplicate.id}, order_id="O-1"), headers=headers
    )
    assert posted.status_code == 201 and posted.json["points_earned"] == 100
    if action == "refund":
        body = {"refund_id": "R-1", "amount_minor": 10_000}
        undo = _post(app, "/v1/orders/O-1/refunds", body, headers)
    else:
        undo = _post(app, "/v1/orders/O-1/cancel", None, headers)

    with rows_locked(ACCOUNTS_OF, member_id=survivor.id):
        merging = start_in_thread(app, _merge(app, survivor.id, duplicate.id, headers))
        wait_for_lock_waiters(1)
        undoing = start_in_thread(app, undo)
        wait_for_lock_waiters(2)
    merged, undone = merging.result(timeout=30), undoing.result(timeout=30)

    assert merged[0] == 200, merged
    assert undone[0] in (200, 201), undone
    assert _no_retries(caplog) == []
    order = db.session.scalar(sa.select(Order).where(Order.external_id == "O-1"))
    assert order.member_id == survivor.id and order.points_reversed == 100
    assert ledger.member_balance(survivor.id).balance == 10
    assert_ledger_consistent()


def test_a_full_refund_and_a_new_order_with_the_same_shared_code_both_succeed(app, make, caplog):
    """refund (member -> code) vs order (code -> member, before the fix)."""
    caplog.set_level(logging.WARNING)
    base_rate()
    headers = make.api_key()
    member = make.member()
    offer = coupons.offer(max_redemptions=1_000)  # the offer row is taken by every use
    code = coupons.shared(offer.id, "SPRING10")
    client = app.test_client()
    first = client.post(
        "/v1/orders",
        json=order_body({"member_id": member.id}, order_id="O-1", coupon_codes=[code]),
        headers=headers,
    )
    assert first.status_code == 201, first.json
    second = order_body({"member_id": member.id}, order_id="O-2", coupon_codes=[code])
    refund = {"refund_id": "R-1", "amount_minor": first.json["total_minor"]}

    with rows_locked(OFFER_ROW, offer_id=offer.id):
        ordering = start_in_thread(app, _post(app, "/v1/orders", second, headers))
        wait_for_lock_waiters(1)  # the new order waits for the offer row
        refunding = start_in_thread(app, _post(app, "/v1/orders/O-1/refunds", refund, headers))
        wait_for_lock_waiters(2)
    posted, refunded = ordering.result(timeout=30), refunding.result(timeout=30)

    assert posted[0] == 201, posted
    assert refunded[0] == 201, refunded
    assert _no_retries(caplog) == []
    assert db.session.get(Member, member.id).status == "active"
    assert ledger.member_balance(member.id).balance == 90  # O-2 only: O-1 was reversed
    assert_ledger_consistent()
