"""The audit log: every change from the dashboard and the admin API, who / what / when /
why / before / after, append-only in the database, searchable, exportable."""

from __future__ import annotations

import csv
import io

import pytest
import sqlalchemy as sa

from loyalty.clock import utcnow
from loyalty.dashboard import audit
from loyalty.dashboard.models import AuditEntry, AuditReason
from loyalty.db import db
from tests.dashboard.conftest import post_form


def _entries(action: str) -> list[AuditEntry]:
    return list(db.session.scalars(sa.select(AuditEntry).where(AuditEntry.action == action)))


def test_a_points_adjustment_records_who_what_when_why_before_and_after(signed_in, make):
    client = signed_in("support")
    member = make.member(points=100)

    response = post_form(
        client, f"/dashboard/members/{member.id}/adjust",
        {"points": "-30", "reason": "double credit on order 17"},
    )  # fmt: skip

    assert response.status_code == 302
    [entry] = _entries("points.adjust")
    assert entry.actor == "user:1:support@example.test"
    assert entry.source == "dashboard"
    assert (entry.target_type, entry.target_id) == ("member", str(member.id))
    assert entry.before["points"] == 100 and entry.after["points"] == 70
    assert entry.after["delta"] == -30
    reason = db.session.get(AuditReason, entry.id)
    assert reason.reason == "double credit on order 17"
    page = client.get(f"/dashboard/audit?target_type=member&target_id={member.id}")
    assert "double credit on order 17" in page.get_data(as_text=True)


def test_an_admin_api_change_is_audited_too(client, make):
    member = make.member(points=50)
    key = make.api_key("admin")
    response = client.post(
        f"/v1/members/{member.id}/adjustments",
        json={"points": 25, "reason": "api goodwill"},
        headers={**key, "Idempotency-Key": "audit-1"},
    )
    assert response.status_code == 201
    [entry] = _entries("api.points.adjust")
    assert entry.source == "api" and entry.actor.startswith("client:")
    assert entry.before["points"] == 50 and entry.after["points"] == 75
    assert db.session.get(AuditReason, entry.id).reason == "api goodwill"

    replay = client.post(
        f"/v1/members/{member.id}/adjustments",
        json={"points": 25, "reason": "api goodwill"},
        headers={**key, "Idempotency-Key": "audit-1"},
    )
    assert replay.headers.get("Idempotent-Replayed") == "true"
    assert len(_entries("api.points.adjust")) == 1  # a replay changed nothing


def test_a_pos_write_is_not_an_admin_change(client, make):
    member = make.member(points=500)
    key = make.api_key("points:write")
    response = client.post(
        f"/v1/members/{member.id}/holds", json={"points": 10},
        headers={**key, "Idempotency-Key": "hold-1"},
    )  # fmt: skip
    assert response.status_code == 201
    assert db.session.scalar(sa.select(sa.func.count()).select_from(AuditEntry)) == 0


def test_the_database_refuses_to_change_or_delete_an_entry(app):
    entry = audit.record(actor="t", action="x.y", now=utcnow())
    db.session.commit()
    for statement in (
        sa.update(AuditEntry).where(AuditEntry.id == entry.id).values(actor="someone else"),
        sa.delete(AuditEntry).where(AuditEntry.id == entry.id),
    ):
        with pytest.raises(sa.exc.DBAPIError):
            db.session.execute(statement)
            db.session.flush()
        db.session.rollback()
    assert db.session.get(AuditEntry, entry.id).actor == "t"


def test_search_and_csv_export(signed_in, make):
    client = signed_in("finance")
    for n in range(3):
        audit.record(actor=f"user:{n}:x", action="offers.create", now=utcnow(),
                     target_type="offer", target_id=n, reason="=HYPERLINK(1)")  # fmt: skip
    db.session.commit()
    found = audit.search(audit.AuditQuery(text="user:2:x"))
    assert [e.target_id for e, _r in found] == ["2"]

    response = client.get("/dashboard/audit.csv?action=offers.create")
    rows = list(csv.reader(io.StringIO(response.get_data(as_text=True))))
    assert rows[0][:3] == ["id", "at", "actor"]
    assert len(rows) == 4
    assert rows[1][7] == "'=HYPERLINK(1)"  # no formula reaches a spreadsheet
    assert _entries("audit.export")  # the export itself is audited


def test_erasing_a_member_removes_the_reasons_written_about_them(signed_in, make):
    client = signed_in("support")
    member = make.member(points=10)
    post_form(client, f"/dashboard/members/{member.id}/adjust",
              {"points": "5", "reason": "Jane Doe called"})  # fmt: skip
    [entry] = _entries("points.adjust")

    response = post_form(client, f"/dashboard/members/{member.id}/erase",
                         {"confirm_id": str(member.id), "reason": "privacy request 7"})  # fmt: skip

    assert response.status_code == 302
    assert db.session.get(AuditReason, entry.id) is None
    assert db.session.get(AuditEntry, entry.id) is not None  # who did what stays
    [erase] = _entries("members.erase")
    assert db.session.get(AuditReason, erase.id).reason == "privacy request 7"


def test_a_journey_written_with_the_api_is_audited_like_a_campaign(client, make):
    key = make.api_key("journeys:write")
    body = {"name": "Welcome", "trigger": "manual", "steps": [{"type": "points", "points": 5}]}
    response = client.post(
        "/v1/journeys", json=body, headers={**key, "Idempotency-Key": "journey-audit-1"}
    )
    assert response.status_code == 201, response.json
    entries = list(
        db.session.scalars(sa.select(AuditEntry).where(AuditEntry.action.like("api.journeys.%")))
    )
    assert len(entries) == 1 and entries[0].source == "api"
