"""Limits under real concurrency on PostgreSQL: HTTP requests from a pool of 32 threads.

Each thread uses its own app context, session and test client; counts are exact.
"""

from __future__ import annotations

import threading
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import pytest
import sqlalchemy as sa

from loyalty.auth import scopes
from loyalty.coupons.models import CouponMemberUse, CouponOffer, CouponRedemption
from loyalty.db import db
from tests.coupons import factories as f

pytestmark = pytest.mark.postgres

THREADS = 32


def in_parallel(app, count, work):
    """Run work(i) for i in range(count) on 32 threads, released together."""
    start = threading.Event()

    def run(i):
        start.wait()
        with app.app_context():
            try:
                return work(i)
            finally:
                db.session.remove()

    with ThreadPoolExecutor(max_workers=THREADS) as pool:
        futures = [pool.submit(run, i) for i in range(count)]
        start.set()
        return [future.result() for future in futures]


def post(app, url, headers, json=None):
    response = app.test_client().post(
        url, json=json, headers={**headers, "Idempotency-Key": uuid.uuid4().hex}
    )
    return response.status_code, response.get_json()


def counters(offer_id, code):
    db.session.expire_all()
    offer = db.session.get(CouponOffer, offer_id)
    live = db.session.scalar(
        sa.select(sa.func.count()).where(
            CouponRedemption.offer_id == offer_id,
            CouponRedemption.status.in_(["held", "redeemed"]),
        )
    )
    return f.code_row(code).uses, offer.redemptions_count, offer.discount_spent_minor, live


@pytest.fixture
def pos(make):
    make.store("S1")
    return make.api_key(scopes.COUPONS_REDEEM, store_id="S1")


def test_200_concurrent_redemptions_of_a_single_use_code_succeed_exactly_once(app, pos):
    [code] = f.codes(f.offer().id)

    def attempt(i):
        return post(app, "/v1/coupons/redeem", pos, f.body([code], order_ref=f"till-{i}"))[0]

    statuses = Counter(in_parallel(app, 200, attempt))
    assert statuses[201] == 1
    assert set(statuses) <= {201, 409, 422}
    assert f.code_row(code).uses == 1


def test_a_shared_code_limited_to_100_redeems_exactly_100_times_out_of_1000(app, pos):
    offer = f.offer(max_redemptions=100, budget_minor=10**9)
    code = f.shared(offer.id, "SPRING25", max_uses=100)

    def attempt(i):
        return post(app, "/v1/coupons/redeem", pos, f.body([code], order_ref=f"o-{i}"))[0]

    statuses = Counter(in_parallel(app, 1000, attempt))
    assert statuses == {201: 100, 409: 900}
    assert counters(offer.id, code) == (100, 100, 100 * 1100, 100)


def test_per_member_limits_hold_under_concurrency(app, pos, make):
    member = make.member()
    offer = f.offer(per_member_limit=3)
    code = f.shared(offer.id, "THREEEACH")

    def attempt(i):
        body = f.body([code], order_ref=f"o-{i}", member_id=member.id)
        return post(app, "/v1/coupons/redeem", pos, body)[0]

    statuses = Counter(in_parallel(app, 60, attempt))
    assert statuses == {201: 3, 409: 57}
    uses = db.session.scalar(sa.select(CouponMemberUse.uses))
    assert uses == 3


def test_a_budget_is_never_overspent_under_concurrency(app, pos):
    offer = f.offer(budget_minor=5000)  # 1100 per basket: room for 4
    code = f.shared(offer.id, "BUDGETED")

    def attempt(i):
        return post(app, "/v1/coupons/redeem", pos, f.body([code], order_ref=f"o-{i}"))[0]

    statuses = Counter(in_parallel(app, 60, attempt))
    assert statuses == {201: 4, 409: 56}
    uses, _count, spent, live = counters(offer.id, code)
    assert (uses, spent, live) == (4, 4400, 4)


def test_rollbacks_racing_redemptions_keep_every_count_exact(app, pos):
    offer = f.offer(max_redemptions=20, budget_minor=10**9)
    code = f.shared(offer.id, "RACE", max_uses=20)
    first = [
        post(app, "/v1/coupons/redeem", pos, f.body([code], order_ref=f"first-{i}"))[1]
        for i in range(20)
    ]
    redemption_ids = [body["redemptions"][0]["id"] for body in first]

    def work(i):
        if i < 20:
            return post(app, f"/v1/coupons/redemptions/{redemption_ids[i]}/rollback", pos)[0]
        return post(app, "/v1/coupons/redeem", pos, f.body([code], order_ref=f"late-{i}"))[0]

    statuses = Counter(in_parallel(app, 80, work))
    assert statuses[200] == 20 and set(statuses) <= {200, 201, 409}
    uses, count, spent, live = counters(offer.id, code)
    assert uses == count == live == statuses[201] <= 20
    assert spent == 1100 * live


def test_two_concurrent_rollbacks_of_one_redemption_restore_one_use(app, pos):
    offer = f.offer(max_redemptions=30, budget_minor=10**9)
    code = f.shared(offer.id, "TWICEBACK", max_uses=30)
    ids = [
        post(app, "/v1/coupons/redeem", pos, f.body([code], order_ref=f"o-{i}"))[1]["redemptions"][
            0
        ]["id"]
        for i in range(15)
    ]

    def rollback(i):
        return post(app, f"/v1/coupons/redemptions/{ids[i // 2]}/rollback", pos)[0]

    statuses = Counter(in_parallel(app, 30, rollback))
    assert statuses == {200: 30}
    assert counters(offer.id, code) == (0, 0, 0, 0)


# --- issuing codes from one offer -------------------------------------------------------------


def _issue(offer_id: int, member_id: int) -> None:
    from loyalty.clock import utcnow
    from loyalty.coupons.wallet import issue_to_members

    issue_to_members(offer_id, [member_id], now=utcnow(), actor="test")


def test_two_issues_from_one_offer_go_side_by_side(app, make):
    """A campaign's fan-out chunks issue codes from the same offer at once: the second does
    not wait for the first to commit (the offer is only read-locked, FOR SHARE)."""
    from tests.concurrency import start_in_thread

    offer = f.offer()
    first, second, warm = make.member().id, make.member().id, make.member().id
    _issue(offer.id, warm)  # the offer has had codes: issuers now share its row
    db.session.commit()
    holding, may_commit = threading.Event(), threading.Event()

    def hold() -> None:
        _issue(offer.id, first)
        holding.set()
        assert may_commit.wait(10)
        db.session.commit()

    held = start_in_thread(app, hold)
    assert holding.wait(10)
    beside = start_in_thread(app, lambda: (_issue(offer.id, second), db.session.commit()))
    beside.result(timeout=5)  # finished while the first still holds its transaction open
    may_commit.set()
    held.result(timeout=10)


def test_ending_an_offer_waits_for_an_issue_in_progress_and_then_no_code_is_issued(app, make):
    from loyalty.clock import utcnow
    from loyalty.coupons.offers import update_offer
    from loyalty.errors import Conflict
    from tests.concurrency import run_between

    offer = f.offer()
    _issue(offer.id, make.member().id)
    db.session.commit()
    member = make.member().id
    errors = run_between(
        app,
        lambda: _issue(offer.id, member),
        lambda: update_offer(offer.id, {"status": "ended"}, now=utcnow(), actor="test"),
    )
    assert errors == []
    with pytest.raises(Conflict):
        _issue(offer.id, make.member().id)
    db.session.rollback()
    assert db.session.get(CouponOffer, offer.id).status == "ended"


def test_checkouts_racing_for_the_last_use_of_one_of_their_codes_keep_nothing_when_they_lose(
    app, pos
):
    """Each checkout has a code of its own (taken first: lower id) and the one single-use
    code they all want. One wins both; every other checkout is refused, and its own code's
    use, taken before the contested one failed, is given back with its redemption."""
    stackable = f.offer(stacking="stackable")
    own_codes = f.codes(stackable.id, 64)
    kind = {"kind": "fixed_amount", "amount_minor": 100, "percent_bp": None}
    [contested] = f.codes(f.offer(stacking="stackable", **kind).id)

    def attempt(i):
        body = f.body([own_codes[i], contested], order_ref=f"till-{i}")
        return post(app, "/v1/coupons/redeem", pos, body)[0]

    statuses = Counter(in_parallel(app, 64, attempt))
    assert statuses[201] == 1 and set(statuses) <= {201, 409}
    assert sum(f.code_row(code).uses for code in own_codes) == 1
    assert f.code_row(contested).uses == 1
    assert db.session.scalar(sa.select(sa.func.count()).select_from(CouponRedemption)) == 2
