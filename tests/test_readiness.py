"""/readyz shows the background work's backlog, so a stalled worker is seen, not guessed."""

from __future__ import annotations

import time
from datetime import timedelta

import sqlalchemy as sa

from loyalty.clock import utcnow
from loyalty.coupons.models import CouponRedemption
from loyalty.db import db
from loyalty.ledger import operations as ledger
from loyalty.queue import get_queue, make_worker
from loyalty.scheduler import run_due_schedules
from tests.coupons import factories as coupons
from tests.factories import idem


def test_an_idle_service_reports_an_empty_backlog(client):
    response = client.get("/readyz")

    assert response.status_code == 200
    backlog = response.json["backlog"]
    assert backlog["outbox"]["undispatched_events"] == {
        "count": 0,
        "oldest": None,
        "age_seconds": 0,
    }
    assert backlog["outbox"]["dead_letters"]["count"] == 0
    for name in (
        "overdue_point_lots",
        "due_pending_points",
        "expired_point_holds",
        "expired_coupon_holds",
    ):
        assert backlog[name] == {"count": 0, "oldest": None, "age_seconds": 0}
    assert backlog["failed_jobs"] == {"default": 0, "ledger": 0, "notifications": 0, "campaigns": 0}
    assert backlog["scheduler"] == {"last_tick": None, "age_seconds": None}


def test_readiness_shows_what_the_jobs_have_yet_to_do(app, client, make):
    hour_ago = utcnow() - timedelta(hours=1)
    member = make.member(points=100)  # enrolment and earning emit two events
    make.earn(member.id, 40, expires_at=hour_ago)
    make.earn(member.id, 25, pending_days=1, now=utcnow() - timedelta(days=2))
    ledger.hold_points(
        member.id, 10, now=hour_ago, ttl_seconds=60, reference=None, client_id=None, store_id=None
    )
    db.session.commit()
    offer = coupons.offer()
    (code,) = coupons.codes(offer.id)
    body = coupons.body([code], channel="online", ttl_seconds=10, order_ref=None)
    held = client.post("/v1/coupons/holds", json=body, headers=idem(make.api_key()))
    assert held.status_code == 201, held.json
    db.session.execute(sa.update(CouponRedemption).values(expires_at=hour_ago))
    db.session.commit()
    get_queue("default").enqueue("loyalty.ledger.operations.lock_member_accounts", 999)
    make_worker(app, ("default",)).work(burst=True)  # fails: no member 999
    run_due_schedules(app, time.time() - 30)

    backlog = client.get("/readyz").json["backlog"]

    assert backlog["outbox"]["undispatched_events"]["count"] >= 4
    assert backlog["outbox"]["undispatched_events"]["oldest"] is not None
    assert backlog["overdue_point_lots"]["count"] == 1
    assert backlog["overdue_point_lots"]["age_seconds"] >= 3600 - 5
    assert backlog["due_pending_points"]["count"] == 1
    assert backlog["due_pending_points"]["age_seconds"] >= 86400 - 5
    assert backlog["expired_point_holds"]["count"] == 1
    assert backlog["expired_coupon_holds"]["count"] == 1
    assert backlog["failed_jobs"]["default"] == 1
    assert 29 <= backlog["scheduler"]["age_seconds"] <= 60
