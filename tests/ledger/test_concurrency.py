"""Concurrency on PostgreSQL with real threads and connections.

Threads get ids, not ORM objects: each thread has its own session.
"""

from __future__ import annotations

import uuid

import pytest
import sqlalchemy as sa

from loyalty.clock import utcnow
from loyalty.db import db
from loyalty.errors import Conflict, InsufficientPoints
from loyalty.ledger import operations as ledger
from loyalty.ledger.models import PointHold
from tests.concurrency import in_threads
from tests.ledger.invariants import assert_ledger_consistent

pytestmark = pytest.mark.postgres


def test_fifty_concurrent_burns_never_overdraw_a_member(app, make):
    member_id = make.member(points=1000).id

    def burn(i):
        try:
            ledger.burn_points(member_id, 30, ledger.Cause("t", str(i)), now=utcnow(), actor="t")
            db.session.commit()
            return "ok"
        except InsufficientPoints:
            db.session.rollback()
            return "refused"

    results = in_threads(app, 50, burn)
    assert results.count("ok") == 33 and results.count("refused") == 17
    assert ledger.member_balance(member_id).balance == 10
    assert_ledger_consistent()


def test_concurrent_holds_over_http_never_reserve_more_than_available(app, make):
    member_id = make.member(points=1000).id
    headers = make.api_key()

    def hold(i):
        response = app.test_client().post(
            f"/v1/members/{member_id}/holds",
            json={"points": 30},
            headers={**headers, "Idempotency-Key": uuid.uuid4().hex},
        )
        return response.status_code

    codes = in_threads(app, 50, hold)
    assert codes.count(201) == 33 and codes.count(409) == 17
    balance = ledger.member_balance(member_id)
    assert (balance.held, balance.available) == (990, 10)


def test_one_idempotency_key_sent_concurrently_has_one_effect(app, make):
    member_id = make.member(points=1000).id
    headers = {**make.api_key(), "Idempotency-Key": "checkout-42"}

    def hold(_):
        response = app.test_client().post(
            f"/v1/members/{member_id}/holds",
            json={"points": 100, "reference": "basket-42"},
            headers=headers,
        )
        return response.status_code, response.get_data()

    results = in_threads(app, 20, hold)
    assert {status for status, _ in results} == {201}
    assert len({body for _, body in results}) == 1
    assert db.session.scalar(sa.select(sa.func.count()).select_from(PointHold)) == 1
    assert ledger.member_balance(member_id).held == 100


def test_capture_racing_release_and_capture_closes_a_hold_exactly_once(app, make):
    member_id = make.member(points=500).id
    hold_id = ledger.hold_points(
        member_id,
        300,
        now=utcnow(),
        ttl_seconds=600,
        reference=None,
        client_id=None,
        store_id=None,
    ).id
    db.session.commit()

    def close(i):
        try:
            if i % 2:
                ledger.release_hold(hold_id, now=utcnow())
            else:
                ledger.capture_hold(
                    hold_id, 200, ledger.Cause("t", str(i)), now=utcnow(), actor="t"
                )
            db.session.commit()
            return "release" if i % 2 else "capture"
        except Conflict:
            db.session.rollback()
            return "refused"

    results = in_threads(app, 10, close)
    hold = db.session.get(PointHold, hold_id)
    db.session.refresh(hold)
    balance = ledger.member_balance(member_id)
    assert balance.held == 0
    if hold.status == "captured":
        assert results.count("capture") == 1 and balance.balance == 300
    else:
        assert results.count("capture") == 0 and balance.balance == 500
    assert_ledger_consistent()
