"""Each role sees and does what it may, and nothing else: every page and action checked.

A marketer can't adjust points, support can't create offers or segments (nor launch
campaigns), an analyst changes nothing, only admins reach operations and settings writes.
"""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from loyalty.dashboard.models import AuditEntry
from loyalty.db import db
from tests.dashboard.conftest import post_form

ROLES = ("admin", "marketer", "analyst", "support", "finance")

PAGES = {
    "/dashboard/": set(ROLES),
    "/dashboard/members": set(ROLES),
    "/dashboard/segments": set(ROLES),
    "/dashboard/campaigns": set(ROLES),
    "/dashboard/journeys": set(ROLES),
    "/dashboard/offers": set(ROLES),
    "/dashboard/settings": set(ROLES),
    "/dashboard/audit": {"admin", "finance", "support"},
    "/dashboard/operations": {"admin"},
}


@pytest.mark.parametrize("role", ROLES)
def test_pages_per_role(signed_in, role):
    client = signed_in(role)
    for path, allowed in PAGES.items():
        status = client.get(path).status_code
        assert status == (200 if role in allowed else 403), (role, path, status)


def _adjust(client, make):
    member = make.member(points=10)
    return post_form(
        client, f"/dashboard/members/{member.id}/adjust", {"points": "5", "reason": "goodwill"}
    )


def _segment(client, make):
    return post_form(
        client,
        "/dashboard/segments/new",
        {"name": "big spenders", "match": "all", "field_0": "points_balance", "op_0": "gte",
         "value_0": "100"},
    )  # fmt: skip


def _offer(client, make):
    return post_form(
        client, "/dashboard/offers",
        {"name": "5 off", "kind": "fixed_amount", "amount_minor": "500", "currency": "EUR"},
    )  # fmt: skip


def _tier(client, make):
    return post_form(
        client, "/dashboard/settings",
        {"action": "tier", "code": "vip", "name": "VIP", "rank": "9", "threshold": "9000"},
    )  # fmt: skip


def _api_key(client, make):
    return post_form(
        client,
        "/dashboard/settings",
        {"action": "key", "name": "bi tool", "scopes": "finance:read"},
    )


def _merge(client, make):
    a, b = make.member(points=1), make.member(points=2)
    return post_form(
        client, f"/dashboard/members/{a.id}/merge",
        {"duplicate_id": str(b.id), "reason": "same person", "confirm": "yes"},
    )  # fmt: skip


def _erase(client, make):
    member = make.member()
    return post_form(
        client, f"/dashboard/members/{member.id}/erase",
        {"confirm_id": str(member.id), "reason": "request 42"},
    )  # fmt: skip


def _campaign(client, make):
    from tests.campaigns import campaign_factories as cf

    return post_form(
        client, "/dashboard/campaigns/new",
        {"name": "c", "segment_id": str(cf.segment()), "channels": "sms", "holdout_pct": "0"},
    )  # fmt: skip


def _launch(client, make):
    from campaigns import lifecycle
    from loyalty.clock import utcnow
    from tests.campaigns import campaign_factories as cf

    created = lifecycle.create_campaign(
        {**cf.body(cf.segment()), "holdout_pct": 0, "attribution_days": 7}, now=utcnow(),
        actor="test",
    )  # fmt: skip
    db.session.commit()
    return post_form(client, f"/dashboard/campaigns/{created.id}/launch", {})


def _rule(client, make):
    return post_form(
        client, "/dashboard/settings/rules/new",
        {"name": "double", "kind": "multiplier", "multiplier_pct": "200", "active": "on"},
    )  # fmt: skip


def _webhook(client, make):
    # A public address literal: accepted without a DNS lookup; nothing is sent in a test.
    return post_form(
        client, "/dashboard/settings",
        {"action": "webhook", "url": "https://93.184.216.34/hook", "topics": "points.earned"},
    )  # fmt: skip


def _consent_text(client, make):
    page = "/dashboard/settings/consent-texts?channel=email&purpose=marketing&locale=en"
    return post_form(client, page, {"text": "I agree to marketing emails."})


def _template(client, make):
    page = "/dashboard/settings/templates?key=points_earned&channel=push&locale=en"
    source = (
        "{% block subject %}+{{ points }}{% endblock %}{% block body %}+{{ points }}{% endblock %}"
    )
    return post_form(client, page, {"source": source, "action": "save"})


def _pause_journey(client, make):
    from tests.journeys.helpers import journey

    flow_id = journey([{"type": "wait", "days": 1}]).id
    return post_form(client, f"/dashboard/journeys/{flow_id}/pause", {})


ACTIONS = {
    "campaigns.create": (_campaign, {"admin", "marketer"}),
    "campaigns.launch": (_launch, {"admin", "marketer"}),
    "journeys.pause": (_pause_journey, {"admin", "marketer"}),
    "points.adjust": (_adjust, {"admin", "support"}),
    "segments.create": (_segment, {"admin", "marketer"}),
    "offers.create": (_offer, {"admin", "marketer"}),
    "tiers.create": (_tier, {"admin"}),
    "api_keys.create": (_api_key, {"admin"}),
    "earning_rules.create": (_rule, {"admin"}),
    "webhooks.create": (_webhook, {"admin"}),
    "consent_texts.publish": (_consent_text, {"admin"}),
    "templates.save_version": (_template, {"admin", "marketer"}),
    "members.merge": (_merge, {"admin", "support"}),
    "members.erase": (_erase, {"admin", "support"}),
}


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("action", sorted(ACTIONS))
def test_actions_per_role(signed_in, make, role, action):
    client = signed_in(role)
    run, allowed = ACTIONS[action]
    response = run(client, make)
    done = db.session.scalar(
        sa.select(sa.func.count()).select_from(AuditEntry).where(AuditEntry.action == action)
    )
    if role in allowed:
        assert response.status_code in (200, 302), response.get_data(as_text=True)[:500]
        assert done == 1
    else:
        assert response.status_code == 403
        assert done == 0


def test_an_analyst_changes_nothing_anywhere(app, signed_in, make):
    """Every POST route of the dashboard refuses the analyst (sign-out aside)."""
    client = signed_in("analyst")
    member = make.member(points=10)
    refused = []
    for rule in app.url_map.iter_rules():
        if not rule.rule.startswith("/dashboard") or "POST" not in rule.methods:
            continue
        if rule.endpoint in ("dashboard.login", "dashboard.totp", "dashboard.logout",
                             "dashboard.account", "dashboard.segment_preview"):  # fmt: skip
            continue
        path = rule.rule.replace("<int:member_id>", str(member.id)).replace("<int:offer_id>", "1")
        path = path.replace("<int:segment_id>", "1").replace("<int:batch_id>", "1")
        path = path.replace("<int:campaign_id>", "1").replace("<action>", "launch")
        path = path.replace("<int:rule_id>", "1")
        path = path.replace("<int:journey_id>", "1")
        refused.append((path, post_form(client, path, {}).status_code))
    wrong = [(path, status) for path, status in refused if status != 403]
    assert refused and not wrong, wrong
    assert (
        db.session.scalar(
            sa.select(sa.func.count())
            .select_from(AuditEntry)
            .where(~AuditEntry.action.like("auth.%"))
        )
        == 0
    )
