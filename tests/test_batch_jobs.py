"""Batch jobs keep up with a large member base: chunks until done, in one scheduled run."""

from __future__ import annotations

from datetime import timedelta

import sqlalchemy as sa

from loyalty.auth import scopes
from loyalty.batches import BatchCursor, batch_job_run, run_chunks
from loyalty.clock import utcnow
from loyalty.coupons import jobs as coupon_jobs
from loyalty.coupons.models import CouponRedemption
from loyalty.db import db
from loyalty.ledger import jobs as ledger_jobs
from loyalty.ledger import operations as ledger
from loyalty.ledger.models import ExpiryNotice, HoldStatus, LotStatus, PointHold, PointLot
from loyalty.queue import get_queue, make_worker
from loyalty.tiers import jobs as tier_jobs
from tests.coupons import factories as coupons
from tests.factories import idem

MEMBERS = 7  # more than one chunk of 2


def _members_with_points(make, count: int = MEMBERS, **earn) -> list[int]:
    ids = []
    for _ in range(count):
        member = make.member()
        make.earn(member.id, 100, **earn)
        ids.append(member.id)
    return ids


def _count(model, *where) -> int:
    return db.session.scalar(sa.select(sa.func.count()).select_from(model).where(*where))


def test_one_expiry_run_expires_every_due_member_not_just_the_first_chunk(app, make):
    ids = _members_with_points(make, expires_at=utcnow() - timedelta(seconds=1))

    assert ledger_jobs.expire_points(chunk=2) == MEMBERS * 100

    db.session.expire_all()
    assert [ledger.member_balance(m).balance for m in ids] == [0] * MEMBERS
    assert _count(PointLot, PointLot.status == LotStatus.AVAILABLE.value) == 0


def test_one_release_run_releases_every_due_pending_lot(app, make):
    ids = _members_with_points(make, pending_days=1, now=utcnow() - timedelta(days=2))

    assert ledger_jobs.release_pending_points(chunk=2) == MEMBERS * 100

    db.session.expire_all()
    assert [ledger.member_balance(m).available for m in ids] == [100] * MEMBERS


def test_one_run_expires_every_overdue_points_hold(app, make):
    ids = _members_with_points(make)
    for member_id in ids:
        ledger.hold_points(
            member_id, 30, now=utcnow() - timedelta(hours=1), ttl_seconds=60,
            reference=None, client_id=None, store_id=None,
        )  # fmt: skip
    db.session.commit()

    assert ledger_jobs.expire_holds(chunk=2) == MEMBERS

    assert _count(PointHold, PointHold.status == HoldStatus.ACTIVE.value) == 0
    assert [ledger.member_balance(m).available for m in ids] == [100] * MEMBERS


def test_one_run_releases_every_expired_coupon_hold(app, make, client):
    headers = make.api_key(scopes.COUPONS_REDEEM)
    offer = coupons.offer()
    codes = coupons.codes(offer.id, MEMBERS)
    for code in codes:
        body = coupons.body(
            [code], channel="online", member_id=make.member().id, ttl_seconds=10, order_ref=None
        )
        held = client.post("/v1/coupons/holds", json=body, headers=idem(headers))
        assert held.status_code == 201, held.json
    db.session.execute(sa.update(CouponRedemption).values(expires_at=utcnow()))
    db.session.commit()

    assert coupon_jobs.expire_coupon_holds(chunk=2) == MEMBERS

    assert _count(CouponRedemption, CouponRedemption.status == "held") == 0


def test_one_announcement_run_reaches_every_member_with_points_expiring_soon(app, make):
    _members_with_points(make, expires_at=utcnow() + timedelta(days=3))

    assert ledger_jobs.announce_expiring_points(chunk=2) == MEMBERS
    assert ledger_jobs.announce_expiring_points(chunk=2) == 0  # once only

    assert _count(ExpiryNotice) == MEMBERS


def test_a_member_whose_due_points_are_held_does_not_stop_the_run(app, make):
    """Held points can't expire now; the run skips that member and still finishes."""
    ids = _members_with_points(make, count=3, expires_at=utcnow() + timedelta(seconds=2))
    ledger.hold_points(
        ids[0], 100, now=utcnow(), ttl_seconds=3600, reference=None, client_id=None, store_id=None
    )
    db.session.commit()
    later = utcnow() + timedelta(seconds=3)
    cursor = BatchCursor()

    result = run_chunks(
        lambda c: ledger.expire_points(later, limit_members=1, cursor=c),
        what="test",
        cursor=cursor,
    )

    assert result.finished and result.total == 200
    assert cursor.skip == {ids[0]}
    assert ledger.member_balance(ids[0]).available == 0  # all of it held, none expired


def test_a_run_out_of_time_hands_the_rest_to_a_continuation_job(app, make):
    ids = _members_with_points(make, expires_at=utcnow() - timedelta(seconds=1))
    now = utcnow()

    first = batch_job_run(
        lambda c: ledger.expire_points(now, limit_members=2, cursor=c),
        what="test",
        continuation=ledger_jobs.expire_points,
        budget_seconds=0,  # one chunk, then time is up
    )

    assert first == 200
    assert get_queue("ledger").count == 1  # the continuation
    make_worker(app, ("ledger",)).work(burst=True)
    db.session.expire_all()
    assert [ledger.member_balance(m).balance for m in ids] == [0] * MEMBERS


def test_the_tier_evaluation_continues_from_the_member_it_stopped_at(app, make):
    ids = [make.member().id for _ in range(5)]
    cursor = BatchCursor(after_id=ids[2])

    batch_job_run(
        lambda c: 0 if c.after_id >= ids[-1] else _advance(c, ids),
        what="test",
        continuation=tier_jobs.evaluate_tiers,
        cursor=cursor,
        budget_seconds=0,
    )

    (queued,) = get_queue("default").jobs
    assert queued.kwargs == {"after_id": ids[3]}


def _advance(cursor: BatchCursor, ids: list[int]) -> int:
    cursor.after_id = next(i for i in ids if i > cursor.after_id)
    cursor.handled += 1
    return 0


def test_batch_jobs_declare_an_explicit_timeout(app):
    for job in (
        ledger_jobs.expire_points,
        ledger_jobs.release_pending_points,
        ledger_jobs.expire_holds,
        ledger_jobs.announce_expiring_points,
        coupon_jobs.expire_coupon_holds,
        tier_jobs.evaluate_tiers,
    ):
        queued = job.enqueue()
        assert queued.timeout == job.timeout >= 600
