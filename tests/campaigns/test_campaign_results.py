"""Before launch (estimate, preview, test send) and after (results, attribution, lift with
its interval, the finance export)."""

from __future__ import annotations

import csv
import io
from datetime import timedelta

import pytest
import sqlalchemy as sa

from campaigns.results import newcombe, wilson
from loyalty.auth import scopes
from loyalty.clock import utcnow
from loyalty.coupons.models import CouponCode
from loyalty.db import db
from notifications.models import Message
from notifications.pipeline import record_provider_event
from notifications.providers.base import Channel
from tests.campaigns.campaign_factories import body, consent, deliver, phone, recipients, segment
from tests.coupons import factories as coupons
from tests.earning.factories import order_body
from tests.factories import idem
from tests.notifications.factories import send_round

BONUS_POINTS = {"kind": "bonus_points", "bonus_points": 70, "percent_bp": None}
MULTIPLIER = {"kind": "points_multiplier", "points_multiplier_pct": 200, "percent_bp": None}


@pytest.fixture
def marketer(make):
    return make.api_key(scopes.CAMPAIGNS_READ, scopes.CAMPAIGNS_WRITE)


def test_wilson_and_newcombe_match_the_published_examples():
    # Newcombe (1998), Statistics in Medicine 17:873-890, table II: 56/70 vs 48/80.
    low, high = newcombe(56, 70, 48, 80)
    assert (round(low, 4), round(high, 4)) == (0.0524, 0.3339)
    low, high = wilson(0, 10)
    assert low == 0.0 and round(high, 4) == 0.2775
    assert newcombe(1, 10, 0, 0) is None


def _launch(client, headers, data):
    created = client.post("/v1/campaigns", json=data, headers=idem(headers))
    assert created.status_code == 201, created.json
    launched = client.post(f"/v1/campaigns/{created.json['id']}/launch", headers=headers)
    assert launched.status_code == 200, launched.json
    return created.json["id"]


def test_the_estimate_counts_channels_after_consent_and_the_offer_exposure(client, marketer, make):
    sms = [make.member(region="north", phone=phone()) for _ in range(3)]
    email = make.member(region="north")
    make.member(region="north")  # no consent: no channel
    for member in sms:
        consent(member.id, Channel.SMS)
    consent(email.id, Channel.EMAIL)
    offer = coupons.offer(kind="fixed_amount", amount_minor=500, percent_bp=None)
    data = body(segment(), offer={"kind": "coupon", "offer_id": offer.id})
    created = client.post("/v1/campaigns", json=data, headers=idem(marketer)).json

    estimate = client.get(f"/v1/campaigns/{created['id']}/estimate", headers=marketer)
    assert estimate.status_code == 200, estimate.json
    figures = estimate.json
    assert figures["audience"] == 5 and figures["held_out"] == 0
    assert figures["messages"] == {"sms": 3, "email": 1, "push": 0}
    assert figures["no_channel"] == 1
    assert figures["max_discount_minor"] == 4 * 500
    assert figures["cost_minor"] == 3 * figures["prices_minor"]["sms"]


def test_preview_renders_each_channel_for_the_member_and_test_send_queues_to_an_address(
    client, marketer, make
):
    member = make.member(region="north", phone=phone(), name="Ada", locale="zh-CN")
    consent(member.id, Channel.SMS)
    offer = coupons.offer(name="Spring")
    data = body(segment(), offer={"kind": "coupon", "offer_id": offer.id})
    campaign_id = client.post("/v1/campaigns", json=data, headers=idem(marketer)).json["id"]

    preview = client.post(
        f"/v1/campaigns/{campaign_id}/preview", json={"member_id": member.id}, headers=marketer
    )
    assert preview.status_code == 200, preview.json
    assert preview.json["channel"] == "sms" and preview.json["variant"] == "A"
    sms, email = preview.json["rendered"]
    assert sms["locale"] == "zh-CN" and "PREVIEW-CODE" in sms["body"] and "Ada" in sms["body"]
    assert email["subject"] == "Spring"

    sent = client.post(
        f"/v1/campaigns/{campaign_id}/test-send",
        json={"member_id": member.id, "channel": "email", "to": "qa@example.com"},
        headers=idem(marketer),
    )
    assert sent.status_code == 202, sent.json
    assert recipients(campaign_id) == {}  # a test send is nobody's campaign message


def test_results_count_reach_redemptions_attributed_orders_and_lift(client, marketer, make):
    people = [make.member(region="north", phone=phone()) for _ in range(40)]
    for person in people:
        consent(person.id, Channel.SMS)
    offer = coupons.offer(name="Spring", percent_bp=1000)
    data = body(segment(), offer={"kind": "coupon", "offer_id": offer.id}, holdout_pct=50)
    campaign_id = _launch(client, marketer, data)
    deliver()
    send_round(notify_quiet_hours=None, notify_marketing_cap=None)

    rows = recipients(campaign_id)
    treated = sorted(m for m, r in rows.items() if r.status == "queued")
    control = sorted(m for m, r in rows.items() if r.status == "held_out")
    assert len(treated) + len(control) == 40 and treated and control
    pos = make.api_key(scopes.ORDERS_WRITE, scopes.COUPONS_REDEEM)
    code = db.session.scalar(sa.select(CouponCode.code).where(CouponCode.member_id == treated[0]))
    orders = [
        order_body({"member_id": treated[0]}, channel="store", store_id=make.store("S1").id,
                   coupon_codes=[code]),
        order_body({"member_id": treated[1]}),
        order_body({"member_id": control[0]}),
    ]  # fmt: skip
    for order in orders:
        response = client.post("/v1/orders", json=order, headers=idem(pos))
        assert response.status_code == 201, response.json

    results = client.get(f"/v1/campaigns/{campaign_id}/results", headers=marketer).json
    assert results["targeted"] == 40 and results["held_out"] == len(control)
    assert results["sent"] == len(treated) and results["coupons_issued"] == len(treated)
    assert results["coupons_redeemed"] == 1
    assert results["redemptions"] == {"online": 0, "in_store": 1, "by_store": {"S1": 1}}
    assert results["discount_minor"] == 1000
    assert results["orders"] == 2
    assert results["revenue_minor"] == 9000 + 10000
    conversion = results["conversion"]
    assert (conversion["recipients_converted"], conversion["control_converted"]) == (2, 1)
    assert conversion["recipients"] == len(treated) and conversion["control"] == len(control)
    low, high = newcombe(2, len(treated), 1, len(control))
    assert conversion["interval"] == {"low": low, "high": high}
    expected = round((19000 / len(treated) - 10000 / len(control)) * len(treated))
    assert conversion["incremental_revenue_minor"] == expected
    assert [v["variant"] for v in results["variants"]] == ["A"]
    assert results["attribution_rule"].startswith("An order is attributed")

    export = client.get(f"/v1/campaigns/{campaign_id}/finance.csv", headers=marketer)
    assert export.mimetype == "text/csv"
    lines = list(csv.DictReader(io.StringIO(export.text)))
    assert [line["variant"] for line in lines] == ["A", "total"]
    assert lines[-1]["discount_minor"] == "1000" and lines[-1]["orders"] == "2"


def test_suppressions_are_counted_by_reason(client, marketer, make):
    reachable = make.member(region="north", phone=phone())
    consent(reachable.id, Channel.SMS)
    make.member(region="north")  # no consent
    campaign_id = _launch(client, marketer, body(segment()))
    deliver()
    consent(reachable.id, Channel.SMS, granted=False)  # opts out before the send
    send_round(notify_quiet_hours=None, notify_marketing_cap=None)
    results = client.get(f"/v1/campaigns/{campaign_id}/results", headers=marketer).json
    reasons = {item["reason"]: item["count"] for item in results["suppressed_by_reason"]}
    assert reasons == {"no marketing consent on sms, email": 1, "no marketing consent for sms": 1}
    assert results["opted_out"] == 1


def test_each_variant_has_its_own_results_and_finance_line(client, marketer, make):
    people = [make.member(region="north", phone=phone()) for _ in range(60)]
    for person in people:
        consent(person.id, Channel.SMS)
    content = {
        "variants": [
            {"name": "A", "weight": 1, "templates": {"sms": "campaign_offer"}},
            {"name": "B", "weight": 1, "templates": {"sms": "campaign_offer"}},
        ]
    }
    data = body(segment(), channel_order=["sms"], content=content, holdout_pct=20)
    campaign_id = _launch(client, marketer, data)
    deliver()
    send_round(notify_quiet_hours=None, notify_marketing_cap=None)
    rows = recipients(campaign_id)
    in_b = sorted(m for m, r in rows.items() if r.variant == "B" and r.status == "queued")
    pos = make.api_key(scopes.ORDERS_WRITE)
    response = client.post("/v1/orders", json=order_body({"member_id": in_b[0]}), headers=idem(pos))
    assert response.status_code == 201, response.json

    results = client.get(f"/v1/campaigns/{campaign_id}/results", headers=marketer).json
    by_name = {v["variant"]: v for v in results["variants"]}
    assert set(by_name) == {"A", "B"}
    for name, figures in by_name.items():
        queued = sum(1 for r in rows.values() if r.variant == name and r.status == "queued")
        assert figures["sent"] == queued and figures["held_out"] == 0
        assert figures["conversion"]["recipients"] == queued
        assert figures["conversion"]["control"] == results["held_out"]  # one shared control
    assert by_name["A"]["sent"] + by_name["B"]["sent"] == results["sent"]
    assert (by_name["A"]["orders"], by_name["B"]["orders"], results["orders"]) == (0, 1, 1)
    assert by_name["B"]["revenue_minor"] == results["revenue_minor"] == 10000
    assert by_name["B"]["conversion"]["recipients_converted"] == 1

    export = client.get(f"/v1/campaigns/{campaign_id}/finance.csv", headers=marketer)
    lines = {line["variant"]: line for line in csv.DictReader(io.StringIO(export.text))}
    assert set(lines) == {"A", "B", "total"}
    assert lines["B"]["orders"] == lines["total"]["orders"] == "1"
    assert int(lines["A"]["sent"]) + int(lines["B"]["sent"]) == int(lines["total"]["sent"])


def test_the_finance_export_neutralises_names_a_spreadsheet_would_run(client, marketer, make):
    member = make.member(region="north", phone=phone())
    consent(member.id, Channel.SMS)
    data = body(segment(), name='=HYPERLINK("http://x.invalid","open")')
    campaign_id = _launch(client, marketer, data)
    deliver()
    export = client.get(f"/v1/campaigns/{campaign_id}/finance.csv", headers=marketer)
    names = {line["campaign"] for line in csv.DictReader(io.StringIO(export.text))}
    assert names == {'\'=HYPERLINK("http://x.invalid","open")'}


@pytest.mark.parametrize(
    ("offer", "expected"),
    [
        (lambda: {"kind": "points", "points": 50}, 2 * 50),
        (lambda: {"kind": "coupon", "offer_id": coupons.offer(**BONUS_POINTS).id}, 2 * 70),
        (lambda: {"kind": "multiplier", "multiplier_pct": 200, "days": 7}, None),
        (lambda: {"kind": "coupon", "offer_id": coupons.offer(**MULTIPLIER).id}, None),
        (lambda: {"kind": "none"}, 0),
    ],
    ids=["bonus-points", "bonus-points-coupon", "multiplier", "multiplier-coupon", "none"],
)
def test_the_estimate_states_the_points_exposure_of_every_offer_kind(
    client, marketer, make, offer, expected
):
    """Bonus points a coupon credits are points exposure too; a multiplier's depends on
    what is bought, so it is stated as unbounded (null), never as 0."""
    for _ in range(2):
        consent(make.member(region="north", phone=phone()).id, Channel.SMS)
    created = client.post(
        "/v1/campaigns", json=body(segment(), offer=offer()), headers=idem(marketer)
    )
    assert created.status_code == 201, created.json
    estimate = client.get(f"/v1/campaigns/{created.json['id']}/estimate", headers=marketer).json
    assert estimate["messages"]["sms"] == 2
    assert estimate["max_points"] == expected


def test_the_estimate_counts_people_at_the_marketing_cap_apart(client, marketer, make):
    capped, free = (make.member(region="north", phone=phone()) for _ in range(2))
    for member in (capped, free):
        consent(member.id, Channel.SMS)
    now = utcnow()
    for n in range(3):  # the default cap: 3 marketing messages in 7 days
        db.session.add(
            Message(
                member_id=capped.id, channel="sms", template="campaign_offer",
                purpose="marketing", dedupe_key=f"earlier:{n}", variables={}, state="sent",
                attempts=1, created_at=now, updated_at=now, sent_at=now - timedelta(days=n + 1),
            )
        )  # fmt: skip
    db.session.commit()
    created = client.post("/v1/campaigns", json=body(segment()), headers=idem(marketer)).json
    estimate = client.get(f"/v1/campaigns/{created['id']}/estimate", headers=marketer).json
    assert (estimate["messages"]["sms"], estimate["capped"]) == (1, 1)
    assert estimate["cost_minor"] == estimate["prices_minor"]["sms"]


def test_results_count_deliveries_failures_points_and_cost(client, marketer, make):
    people = [make.member(region="north", phone=phone()) for _ in range(3)]
    for person in people:
        consent(person.id, Channel.SMS)
    data = body(segment(), channel_order=["sms"], offer={"kind": "points", "points": 25})
    data["content"] = {"variants": [{"name": "A", "templates": {"sms": "campaign_offer"}}]}
    campaign_id = _launch(client, marketer, data)
    deliver()
    send_round(notify_quiet_hours=None, notify_marketing_cap=None)
    messages = {r.member_id: r.message_id for r in recipients(campaign_id).values()}
    now = utcnow()
    record_provider_event(messages[people[0].id], "delivered", reason=None, now=now)
    record_provider_event(messages[people[1].id], "failed", reason="unknown number", now=now)
    db.session.commit()

    results = client.get(f"/v1/campaigns/{campaign_id}/results", headers=marketer).json
    assert (results["sent"], results["delivered"], results["failed"]) == (2, 1, 1)
    assert results["points_issued"] == 3 * 25  # credited at the fan-out, to every recipient
    assert results["cost_minor"] == 2 * results_price(client, marketer, campaign_id)
    (variant,) = results["variants"]
    assert (variant["delivered"], variant["failed"], variant["points_issued"]) == (1, 1, 75)


def results_price(client, headers, campaign_id) -> int:
    estimate = client.get(f"/v1/campaigns/{campaign_id}/estimate", headers=headers).json
    return estimate["prices_minor"]["sms"]
