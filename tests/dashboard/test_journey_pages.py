"""Journeys in the dashboard: the list with members per step, a journey's steps, pause and
resume (marketers and admins, audited), and a member's journeys on their profile."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
import sqlalchemy as sa

from campaigns import journeys
from campaigns.journey_models import Journey
from loyalty.clock import utcnow
from loyalty.dashboard.models import AuditEntry
from loyalty.db import db
from loyalty.members.merge import merge_members
from tests.dashboard.conftest import post_form
from tests.journeys.helpers import advance, journey

STEPS = [
    {"type": "points", "points": 5},
    {"type": "wait", "days": 2},
    {"type": "points", "points": 7},
    {"type": "wait", "days": 5},
    {"type": "exit"},
]


def _running_journey(make, n: int = 3) -> tuple[int, list[int]]:
    """A journey with one member done with it and the others at its two waits."""
    flow = journey(STEPS, name="Welcome series")
    flow_id = flow.id
    members = [make.member().id for _ in range(n)]
    start = utcnow() - timedelta(days=10)
    journeys.enter_manually(flow_id, members[:1], cause="old", now=start)
    journeys.enter_manually(flow_id, members[1:2], cause="mid", now=utcnow() - timedelta(days=3))
    journeys.enter_manually(flow_id, members[2:], cause="new", now=utcnow())
    db.session.commit()
    advance(utcnow())
    db.session.commit()
    return flow_id, members


def test_the_list_and_the_journey_show_members_per_step(signed_in, make):
    flow_id, _members = _running_journey(make, 4)
    client = signed_in("analyst")

    listing = client.get("/dashboard/journeys").get_data(as_text=True)
    assert "Welcome series" in listing
    # Two wait for the step after the first wait, one for the step after the second.
    assert "step 3: 2 · step 5: 1" in listing

    page = client.get(f"/dashboard/journeys/{flow_id}").get_data(as_text=True)
    assert re.search(r'id="at-step-3">2<', page)
    assert re.search(r'id="at-step-5">1<', page)
    assert re.search(r'id="entries-active">3<', page)
    assert "credited: 4" in page  # the first step ran for everyone
    assert "Pause" not in page  # the analyst changes nothing


@pytest.mark.parametrize(
    ("role", "allowed"),
    [("admin", True), ("marketer", True), ("support", False), ("analyst", False),
     ("finance", False)],
)  # fmt: skip
def test_pause_and_resume_are_for_marketers_and_admins_and_audited(signed_in, make, role, allowed):
    flow_id, _members = _running_journey(make, 1)
    client = signed_in(role)

    paused = post_form(client, f"/dashboard/journeys/{flow_id}/pause", {})
    db.session.expire_all()
    if not allowed:
        assert paused.status_code == 403
        assert db.session.get(Journey, flow_id).status == "active"
        return
    assert paused.status_code == 302
    assert db.session.get(Journey, flow_id).status == "paused"
    resumed = post_form(client, f"/dashboard/journeys/{flow_id}/resume", {})
    assert resumed.status_code == 302
    db.session.expire_all()
    assert db.session.get(Journey, flow_id).status == "active"
    entries = db.session.scalars(
        sa.select(AuditEntry).where(AuditEntry.target_type == "journey").order_by(AuditEntry.id)
    ).all()
    assert [(e.action, e.before["status"], e.after["status"]) for e in entries] == [
        ("journeys.pause", "active", "paused"),
        ("journeys.resume", "paused", "active"),
    ]


def test_a_refused_change_is_shown_and_changes_nothing(signed_in, make):
    flow_id = journey(STEPS, active=False).id
    client = signed_in("marketer")

    refused = post_form(client, f"/dashboard/journeys/{flow_id}/pause", {})
    page = client.get(refused.headers["Location"]).get_data(as_text=True)
    assert "a draft journey can&#39;t become paused" in page
    assert db.session.scalar(sa.select(sa.func.count()).select_from(AuditEntry).where(
        AuditEntry.action.like("journeys.%"))) == 0  # fmt: skip
    assert post_form(client, f"/dashboard/journeys/{flow_id}/archive", {}).status_code == 404


def test_without_the_csrf_token_nothing_changes(signed_in, make):
    flow_id, _members = _running_journey(make, 1)
    client = signed_in("marketer")
    assert client.post(f"/dashboard/journeys/{flow_id}/pause").status_code == 400
    db.session.expire_all()
    assert db.session.get(Journey, flow_id).status == "active"


def test_the_member_profile_lists_their_journeys_merged_ids_included(signed_in, make):
    _flow_id, members = _running_journey(make, 3)
    other = journey([{"type": "wait", "days": 1}, {"type": "points", "points": 1}],
                    name="Win-back")  # fmt: skip
    survivor = make.member().id
    journeys.enter_manually(other.id, [survivor], cause="w", now=utcnow())
    db.session.commit()
    merge_members(survivor, members[2], reason="duplicate", now=utcnow(), actor="t")
    db.session.commit()
    client = signed_in("support")

    page = client.get(f"/dashboard/members/{survivor}").get_data(as_text=True)
    table = page[page.index('id="member-journeys"') :]
    table = table[: table.index("</table>")]
    assert "Welcome series" in table and "Win-back" in table
    assert "3 of 5: 7 bonus points" in table  # the merged member's entry, after its wait
    assert "1 of 2: Wait 1 d" in table
    assert " UTC" in table  # entered and next action, in the page's clock

    done = client.get(f"/dashboard/members/{members[0]}").get_data(as_text=True)
    assert "completed" in done[done.index('id="member-journeys"') :]


def test_the_journey_pages_speak_chinese(signed_in, make):
    flow_id, _members = _running_journey(make, 2)
    client = signed_in("marketer")
    post_form(client, "/dashboard/account", {"action": "locale", "locale": "zh_CN"})

    page = client.get(f"/dashboard/journeys/{flow_id}").get_data(as_text=True)
    assert "等待此步骤的会员" in page and "等待 2 天" in page and "暂停" in page
