"""Code batches generated in the background: a running batch is filled a chunk per
transaction by a job on the real queue (Redis on the PostgreSQL run, the embedded queue on
SQLite), one request key makes one batch, and a refusal stops the batch with its reason."""

from __future__ import annotations

from datetime import timedelta

import sqlalchemy as sa

from loyalty.clock import utcnow
from loyalty.coupons import jobs, offers
from loyalty.coupons.models import CouponBatch, CouponCode, OfferStatus
from loyalty.db import db
from loyalty.queue import get_queue, make_worker
from tests.coupons import factories as coupons


def _codes(batch_id: int) -> int:
    return db.session.scalar(
        sa.select(sa.func.count()).select_from(CouponCode).where(CouponCode.batch_id == batch_id)
    )


def _start(offer_id: int, count: int, key: str = "k1", **more) -> tuple[int, bool]:
    batch, created = offers.start_code_batch(
        offer_id, count, now=utcnow(), actor="test", request_key=key, **more
    )
    batch_id = batch.id
    db.session.commit()  # and no read after it: the worker writes next (SQLite: one writer)
    return batch_id, created


def test_a_batch_is_filled_a_chunk_at_a_time_until_it_holds_what_was_asked(app):
    offer = coupons.offer(valid_days_after_issue=30)
    batch_id, created = _start(offer.id, 25, prefix="SPR")
    assert created

    added = []
    for _ in range(5):
        added.append(offers.generate_codes_chunk(batch_id, now=utcnow(), limit=10))
        db.session.commit()
    assert added == [10, 10, 5, 0, 0]
    batch = db.session.get(CouponBatch, batch_id)
    assert (batch.status, batch.created_count, batch.requested) == ("done", 25, 25)
    assert _codes(batch_id) == 25
    codes = db.session.scalars(sa.select(CouponCode).where(CouponCode.batch_id == batch_id)).all()
    assert all(c.code.startswith("SPR") and len(c.code) == 15 for c in codes)
    # The expiry clock of every chunk's codes starts when the batch was asked for.
    assert {c.expires_at for c in codes} == {batch.created_at + timedelta(days=30)}


def test_the_same_request_key_finds_the_batch_it_made(app):
    offer = coupons.offer()
    first, created = _start(offer.id, 5, key="form-1")
    again, created_again = _start(offer.id, 5, key="form-1")
    other, created_other = _start(offer.id, 5, key="form-2")

    assert created and not created_again and created_other
    assert again == first and other != first
    assert db.session.scalar(sa.select(sa.func.count()).select_from(CouponBatch)) == 2


def test_the_job_generates_the_batch_on_the_queue_in_chunks(app):
    offer_id = coupons.offer().id
    count = offers.BACKGROUND_CHUNK * 2 + 500  # three transactions
    batch_id, _created = _start(offer_id, count)

    jobs.generate_code_batch.enqueue(batch_id)
    assert get_queue("default").count == 1
    make_worker(app, ("default",)).work(burst=True)

    db.session.expire_all()
    batch = db.session.get(CouponBatch, batch_id)
    assert (batch.status, batch.created_count, batch.error) == ("done", count, None)
    assert _codes(batch_id) == count
    assert get_queue("default").count == 0


def test_an_offer_ended_meanwhile_stops_the_batch_with_its_reason(app):
    offer = coupons.offer()
    batch_id, _created = _start(offer.id, 30)
    offers.generate_codes_chunk(batch_id, now=utcnow(), limit=10)
    db.session.commit()
    offers.get_offer(offer.id).status = OfferStatus.ENDED.value
    db.session.commit()

    assert jobs.generate_code_batch(batch_id) == 0

    db.session.expire_all()
    batch = db.session.get(CouponBatch, batch_id)
    assert batch.status == "failed" and "has ended" in batch.error
    assert batch.created_count == 10 == _codes(batch_id)  # what was made stays


def test_a_stalled_batch_is_enqueued_again(app):
    offer_id = coupons.offer().id
    batch_id, _created = _start(offer_id, 3)
    db.session.get(CouponBatch, batch_id).updated_at = utcnow() - timedelta(hours=1)
    db.session.commit()
    recent_id, _created = _start(offer_id, 2, key="k2")

    assert jobs.resume_code_batches() == 1
    make_worker(app, ("default",)).work(burst=True)

    db.session.expire_all()
    assert db.session.get(CouponBatch, batch_id).status == "done"
    assert db.session.get(CouponBatch, recent_id).status == "running"  # recent: its job runs


def test_the_stalled_batch_sweep_reads_page_after_page_until_none_is_left(app):
    offer_id = coupons.offer().id
    stalled = [_start(offer_id, 1, key=f"k{n}")[0] for n in range(5)]
    for batch_id in stalled:
        db.session.get(CouponBatch, batch_id).updated_at = utcnow() - timedelta(hours=1)
    db.session.commit()
    hour_ago = utcnow() - timedelta(minutes=30)

    pages = [offers.stalled_batches(hour_ago, limit=2)]
    while pages[-1]:
        pages.append(offers.stalled_batches(hour_ago, after_id=pages[-1][-1], limit=2))

    assert pages == [stalled[:2], stalled[2:4], stalled[4:], []]
    assert jobs.resume_code_batches() == 5
