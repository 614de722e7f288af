"""Campaign pages: the wizard, the review with its estimate, preview and test send,
launch / pause / resume / cancel per role, and the results with their charts."""

from __future__ import annotations

import re

import sqlalchemy as sa

from loyalty.clock import utcnow
from loyalty.dashboard.models import AuditEntry
from loyalty.db import db
from notifications.providers.base import Channel
from tests.campaigns import campaign_factories as cf
from tests.dashboard.conftest import post_form


def _audience(make, n: int = 4) -> tuple[int, list[int]]:
    members = [make.member(phone=cf.phone(), region=cf.REGION).id for _ in range(n)]
    for member_id in members:
        cf.consent(member_id, Channel.SMS, Channel.EMAIL)
    return cf.segment(), members


WIZARD = {
    "name": "Spring push",
    "offer_kind": "points",
    "points": "50",
    "channels": ["sms", "email"],
    "template": "campaign_offer",
    "schedule_kind": "now",
    "holdout_pct": "0",
    "attribution_days": "7",
}


def test_the_wizard_reviews_tests_launches_and_shows_results(signed_in, make):
    segment_id, members = _audience(make)
    client = signed_in("marketer")

    created = post_form(client, "/dashboard/campaigns/new", {**WIZARD, "segment_id": segment_id})
    assert created.status_code == 302, created.get_data(as_text=True)[:400]
    url = created.headers["Location"]
    review = client.get(f"{url}?member_id={members[0]}&locale=zh-CN").get_data(as_text=True)
    assert re.search(r'id="estimate-audience">4<', review)
    assert "<pre>" in review  # the rendered message

    sent = post_form(client, url, {"member_id": str(members[0]), "channel": "sms",
                                   "to": "+4915100000999"})  # fmt: skip
    assert sent.status_code == 302
    launched = post_form(client, f"{url}/launch", {})
    assert launched.status_code == 302
    cf.deliver()
    campaign_id = int(url.rsplit("/", 1)[1])
    page = client.get(f"/dashboard/campaigns/{campaign_id}/results").get_data(as_text=True)
    assert page.count('<svg class="chart"') == 4
    actions = set(db.session.scalars(sa.select(AuditEntry.action)))
    assert {"campaigns.create", "campaigns.test_send", "campaigns.launch"} <= actions


def test_support_cannot_launch_and_an_analyst_cannot_build(signed_in, make, app):
    segment_id, _members = _audience(make, 1)
    marketer = signed_in("marketer")
    url = post_form(marketer, "/dashboard/campaigns/new",
                    {**WIZARD, "segment_id": segment_id}).headers["Location"]  # fmt: skip
    post_form(marketer, "/dashboard/logout", {})
    support = signed_in("support")
    assert post_form(support, f"{url}/launch", {}).status_code == 403
    assert support.get(url).status_code == 200  # reading is fine
    post_form(support, "/dashboard/logout", {})
    analyst = signed_in("analyst")
    refused = post_form(analyst, "/dashboard/campaigns/new", {**WIZARD, "segment_id": segment_id})
    assert refused.status_code == 403


def test_pause_resume_cancel(signed_in, make):
    segment_id, _members = _audience(make, 2)
    client = signed_in("marketer")
    url = post_form(client, "/dashboard/campaigns/new",
                    {**WIZARD, "segment_id": segment_id, "schedule_kind": "at",
                     "schedule_at": "2099-01-01T10:00"}).headers["Location"]  # fmt: skip
    for action, status in (("launch", "scheduled"), ("pause", "paused"),
                           ("resume", "scheduled"), ("cancel", "cancelled")):  # fmt: skip
        post_form(client, f"{url}/{action}", {})
        page = client.get(url).get_data(as_text=True)
        assert re.search(rf'id="campaign-status">{status}<', page), (action, status)


TRIGGERED = {
    **WIZARD,
    "name": "Welcome: 50 points",
    "send_kind": "trigger",
    "trigger": "member.enrolled",
}


def test_a_triggered_send_is_a_journey_that_starts_on_the_event(signed_in, make):
    from campaigns.journey_models import Journey
    from loyalty.ledger.operations import member_balance
    from tests.journeys.helpers import advance, messages, relay

    segment_id = cf.segment()
    client = signed_in("marketer")
    page = client.get("/dashboard/campaigns/new").get_data(as_text=True)
    assert 'value="trigger"' in page and "saved as a journey" in page

    created = post_form(client, "/dashboard/campaigns/new",
                        {**TRIGGERED, "segment_id": segment_id})  # fmt: skip
    assert created.status_code == 302, created.get_data(as_text=True)[:400]
    url = created.headers["Location"]
    assert "/dashboard/journeys/" in url
    journey_id = int(url.rsplit("/", 1)[1])
    saved = db.session.get(Journey, journey_id)
    assert (saved.status, saved.trigger, saved.reentry) == ("draft", "member.enrolled", "never")
    assert post_form(client, f"{url}/activate", {}).status_code == 302

    north = make.member(region=cf.REGION, phone=cf.phone()).id
    south = make.member(region="south", phone=cf.phone()).id
    for member_id in (north, south):
        cf.consent(member_id, Channel.SMS)
    relay()
    db.session.commit()
    advance(utcnow())
    db.session.commit()

    assert member_balance(north).available == 50
    assert messages(north) == [("campaign_offer", "sms")]
    assert member_balance(south).available == 0 and messages(south) == []  # not the audience
    actions = [a for a in db.session.scalars(sa.select(AuditEntry.action).order_by(AuditEntry.id))
               if a.startswith("journeys.")]  # fmt: skip
    assert actions == ["journeys.create", "journeys.activate"]


def test_a_triggered_send_refuses_what_a_journey_cannot_do(signed_in, make):
    from campaigns.journey_models import Journey

    segment_id = cf.segment()
    client = signed_in("marketer")
    multiplier = post_form(client, "/dashboard/campaigns/new",
                           {**TRIGGERED, "segment_id": segment_id, "offer_kind": "multiplier",
                            "multiplier_pct": "200", "days": "7"})  # fmt: skip
    assert multiplier.status_code == 200
    assert "A triggered send gives a coupon or points." in multiplier.get_data(as_text=True)
    lapsed = {**TRIGGERED, "segment_id": segment_id, "trigger": "no_purchase"}
    lapsed = post_form(client, "/dashboard/campaigns/new", lapsed)
    assert "no_purchase needs trigger_days" in lapsed.get_data(as_text=True)
    assert db.session.scalar(sa.select(sa.func.count()).select_from(Journey)) == 0
    analyst = post_form(signed_in("analyst"), "/dashboard/campaigns/new",
                        {**TRIGGERED, "segment_id": segment_id})  # fmt: skip
    assert analyst.status_code == 403
