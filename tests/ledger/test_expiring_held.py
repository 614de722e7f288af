"""Held points don't expire while held: /v1/me/expiring and the expiry reminders report
them as `held`, apart from the points that really expire."""

from __future__ import annotations

from datetime import timedelta

import sqlalchemy as sa

from loyalty.batches import BatchCursor, run_chunks
from loyalty.clock import utcnow
from loyalty.db import db
from loyalty.ledger import operations as ledger
from loyalty.outbox import OutboxEvent

NOW = utcnow()


def lots(make, member_id: int) -> None:
    for points, days in ((100, 10), (40, 20), (50, 100)):
        make.earn(member_id, points, now=NOW - timedelta(days=1),
                  expires_at=NOW + timedelta(days=days))  # fmt: skip


def hold(member_id: int, points: int) -> int:
    placed = ledger.hold_points(member_id, points, now=utcnow(), ttl_seconds=3600,
                                reference=None, client_id=None, store_id=None)  # fmt: skip
    db.session.commit()
    return placed.id


def test_me_expiring_reports_held_points_apart(client, make):
    member = make.member()
    lots(make, member.id)
    hold(member.id, 120)  # the soonest 120: all 100 of day 10 and 20 of day 20
    answer = client.get("/v1/me/expiring?days=30", headers=make.member_token(member.id))
    assert answer.status_code == 200, answer.json
    assert (answer.json["total"], answer.json["held"]) == (20, 120)
    assert [(b["points"], b["held"]) for b in answer.json["buckets"]] == [(0, 100), (20, 20)]


def expiring_events() -> list[dict]:
    return list(
        db.session.scalars(
            sa.select(OutboxEvent.payload)
            .where(OutboxEvent.topic == "points.expiring")
            .order_by(OutboxEvent.id)
        )
    )


def test_reminders_leave_out_held_points_and_announce_them_once_the_hold_ends(app, make):
    member = make.member()
    lots(make, member.id)
    hold_id = hold(member.id, 120)
    # The batch job's loop ends although the fully held instant stays due.
    result = run_chunks(
        lambda cursor: ledger.announce_expiring_points(NOW, within_days=30, cursor=cursor),
        what="test",
        cursor=BatchCursor(),
    )
    assert result.finished and result.total == 1
    assert [(e["points"], e["held"]) for e in expiring_events()] == [(20, 20)]

    ledger.release_hold(hold_id, now=utcnow())
    db.session.commit()
    assert ledger.announce_expiring_points(NOW, within_days=30) == 1
    db.session.commit()
    assert [(e["points"], e["held"]) for e in expiring_events()] == [(20, 20), (100, 0)]
