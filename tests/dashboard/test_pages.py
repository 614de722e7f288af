"""The pages call the same operations as the API and show what they did."""

from __future__ import annotations

import json
import re

import sqlalchemy as sa

from loyalty.clock import utcnow
from loyalty.dashboard import stats
from loyalty.dashboard.pages.segments import rows_from_rule, rule_from_form
from loyalty.db import db
from loyalty.ledger.operations import member_balance
from loyalty.members.models import Member
from tests.dashboard.conftest import post_form


def test_the_overview_shows_real_figures_as_charts_with_their_numbers(signed_in, make):
    client = signed_in("analyst")
    make.member(points=120)
    make.member(points=30)
    stats.refresh(utcnow())
    db.session.commit()

    html = client.get("/dashboard/").get_data(as_text=True)

    assert html.count('<svg class="chart"') == 4
    assert "<details><summary>" in html  # the numbers behind each chart
    figures = stats.latest_snapshot().figures
    assert figures["members_total"] == 2 and figures["liability_points"] == 150
    series = stats.daily_series(utcnow().date(), utcnow().date())
    assert series["points.issued"] == [150]


def test_the_refresh_counts_each_ledger_entry_once(app, make):
    make.member(points=100)
    stats.refresh(utcnow())
    stats.refresh(utcnow())  # nothing new: nothing added
    make.member(points=5)
    stats.refresh(utcnow())
    db.session.commit()
    today = utcnow().date()
    assert stats.daily_series(today, today)["points.issued"] == [105]


def test_member_search_by_identity_and_profile(signed_in, make):
    client = signed_in("support")
    member = make.member(points=42, email="find.me@example.com", phone="+33612345678")
    for query in ("find.me@example.com", "+33612345678", str(member.id)):
        response = client.get("/dashboard/members", query_string={"q": query})
        assert response.status_code == 302, query
        assert response.headers["Location"].endswith(f"/dashboard/members/{member.id}")
    page = client.get(f"/dashboard/members/{member.id}").get_data(as_text=True)
    assert "find.me@example.com" in page and 'id="balance">42<' in page
    assert "Nobody found" in client.get("/dashboard/members?q=nobody@x.test").get_data(as_text=True)


def test_merge_shows_a_preview_then_merges(signed_in, make):
    client = signed_in("support")
    survivor, duplicate = make.member(points=100), make.member(points=25)
    preview = client.get(f"/dashboard/members/{survivor.id}/merge?duplicate_id={duplicate.id}")
    assert "<strong>125</strong>" in preview.get_data(as_text=True)
    assert db.session.get(Member, duplicate.id).status == "active"  # a preview changes nothing

    form = {"duplicate_id": str(duplicate.id), "reason": "same person", "confirm": "yes"}
    post_form(client, f"/dashboard/members/{survivor.id}/merge", form)

    db.session.expire_all()
    assert db.session.get(Member, duplicate.id).merged_into_id == survivor.id
    assert member_balance(survivor.id).balance == 125


def test_export_gives_the_members_data(signed_in, make):
    client = signed_in("support")
    member = make.member(email="export.me@example.com")
    response = post_form(client, f"/dashboard/members/{member.id}/export", {})
    assert response.mimetype == "application/json"
    assert "export.me@example.com" in json.dumps(response.get_json())


def test_erase_needs_the_typed_confirmation(signed_in, make):
    client = signed_in("support")
    member = make.member(email="keep.me@example.com")
    post_form(client, f"/dashboard/members/{member.id}/erase",
              {"confirm_id": "999", "reason": "request"})  # fmt: skip
    db.session.expire_all()
    assert db.session.get(Member, member.id).status == "active"


def test_a_segment_form_becomes_a_rule_and_back():
    form = {
        "match": "all",
        "field_0": "points_balance", "op_0": "between", "value_0": "100-500",
        "field_1": "tier", "op_1": "in", "value_1": "gold, silver",
        "field_2": "categories", "op_2": "contains_any", "value_2": "running", "days_2": "90",
        "negate_2": "on",
    }  # fmt: skip
    rule = rule_from_form(form)
    assert rule == {
        "and": [
            {"field": "points_balance", "op": "between", "value": [100, 500]},
            {"field": "tier", "op": "in", "value": ["gold", "silver"]},
            {"not": {"field": "categories", "op": "contains_any", "value": ["running"],
                     "within_days": 90}},
        ]
    }  # fmt: skip
    match, rows = rows_from_rule(rule)
    assert match == "all" and rows[0]["value"] == "100-500" and rows[2]["negate"]


def test_segment_preview_counts_members(signed_in, make):
    client = signed_in("marketer")
    from campaigns.profiles import refresh_people

    people = [make.member(points=p) for p in (50, 150, 300)]
    refresh_people([person.id for person in people], utcnow())
    db.session.commit()
    form = {"match": "all", "field_0": "points_balance", "op_0": "gte", "value_0": "100"}
    preview = post_form(client, "/dashboard/segments/preview", form, page="/dashboard/segments/new")
    assert re.search(r'id="segment-count">2<', preview.get_data(as_text=True))

    saved = post_form(client, "/dashboard/segments/new", {**form, "name": "100+"},
                      page="/dashboard/segments/new")  # fmt: skip
    assert saved.status_code == 302
    page = client.get(saved.headers["Location"]).get_data(as_text=True)
    assert 'id="segment-count">2<' in page


def test_offer_create_generate_codes_and_export(app, signed_in):
    from loyalty.queue import make_worker

    client = signed_in("marketer")
    response = post_form(client, "/dashboard/offers",
                         {"name": "10 off", "kind": "fixed_amount", "amount_minor": "1000",
                          "currency": "EUR"})  # fmt: skip
    assert response.status_code == 302
    offer_url = response.headers["Location"]
    form = client.get(offer_url).get_data(as_text=True)
    key = re.search(r'name="request_key" value="([0-9a-f]{32})"', form).group(1)
    post_form(client, offer_url, {"action": "batch", "count": "25", "prefix": "TEN",
                                  "request_key": key})  # fmt: skip
    db.session.remove()  # the test's requests share this session: end its read first
    make_worker(app, ("default",)).work(burst=True)
    page = client.get(offer_url).get_data(as_text=True)
    assert "25/25" in page
    batch_id = re.search(r"/offers/batches/(\d+)\.csv", page).group(1)
    csv_text = client.get(f"/dashboard/offers/batches/{batch_id}.csv").get_data(as_text=True)
    assert csv_text.count("\n") == 26 and "TEN" in csv_text


def test_an_api_key_is_shown_once_and_revoked(signed_in, client):
    signed = signed_in("admin")
    page = post_form(signed, "/dashboard/settings",
                     {"action": "key", "name": "bi", "scopes": "finance:read"}).get_data(
        as_text=True
    )  # fmt: skip
    key = re.search(r"(olk_[A-Za-z0-9_\-]+)", page).group(1)
    assert (
        client.get("/v1/reports/liability", headers={"Authorization": f"Bearer {key}"}).status_code
        == 200
    )
    assert key not in signed.get("/dashboard/settings").get_data(as_text=True)  # once
    from loyalty.auth.models import ApiClient

    client_id = db.session.scalar(sa.select(ApiClient.id).where(ApiClient.name == "bi"))
    post_form(signed, "/dashboard/settings", {"action": "key-revoke", "client_id": str(client_id)})
    from loyalty import cache

    cache.clear_all()
    assert (
        client.get("/v1/reports/liability", headers={"Authorization": f"Bearer {key}"}).status_code
        == 401
    )


def test_template_preview_on_a_member(signed_in, make):
    client = signed_in("marketer")
    member = make.member(points=10)
    page = client.get(
        f"/dashboard/settings/templates?key=points_earned&channel=sms&locale=en&member_id={member.id}"
    ).get_data(as_text=True)
    assert "SMS segment" in page


def test_operations_page_and_metrics(app, signed_in, client):
    admin = signed_in("admin")
    assert "Scheduler heartbeat" in admin.get("/dashboard/operations").get_data(as_text=True)
    assert client.get("/metrics").status_code == 404  # no token configured: nothing exposed
    settings = app.extensions["omniloyal.settings"]
    from dataclasses import replace

    app.extensions["omniloyal.settings"] = replace(settings, metrics_token="t" * 20)
    try:
        assert client.get("/metrics").status_code == 401
        body = client.get("/metrics", headers={"Authorization": "Bearer " + "t" * 20})
        text = body.get_data(as_text=True)
        assert body.status_code == 200
        assert "omniloyal_http_requests_total" in text and "omniloyal_jobs" in text
    finally:
        app.extensions["omniloyal.settings"] = settings
