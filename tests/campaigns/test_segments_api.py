"""The segments API: attributes, CRUD, validation errors naming the path, count, sample,
export, static snapshots and CSV uploads, and who may call what."""

from __future__ import annotations

from datetime import timedelta

import pytest

from campaigns import profiles
from loyalty.auth import scopes
from loyalty.clock import utcnow
from loyalty.db import db
from loyalty.members.merge import merge_members
from tests.factories import idem

PROBLEM = "application/problem+json"
GOLD_RULE = {"field": "region", "op": "eq", "value": "north"}


@pytest.fixture
def reader(make):
    return make.api_key(scopes.SEGMENTS_READ)


@pytest.fixture
def writer(make):
    return make.api_key(scopes.SEGMENTS_READ, scopes.SEGMENTS_WRITE)


@pytest.fixture
def people(make):
    """Three northerners (one with 900 points expiring soon), two southerners."""
    north = [make.member(region="north") for _ in range(3)]
    south = [make.member(region="south") for _ in range(2)]
    make.earn(north[0].id, 900, expires_at=utcnow() + timedelta(days=10))
    profiles.refresh_people([m.id for m in north + south], utcnow())
    db.session.commit()
    return north, south


def test_attributes_are_listed_with_their_types_and_operators(client, reader):
    response = client.get("/v1/segments/attributes", headers=reader)
    assert response.status_code == 200
    by_name = {item["name"]: item for item in response.json["items"]}
    assert by_name["points_expiring_30d"]["type"] == "number"
    assert "gte" in by_name["points_expiring_30d"]["operators"]
    assert by_name["categories"]["type"] == "set"
    assert by_name["categories"]["options"] == ["within_days", "channels"]
    assert by_name["last_order_at"]["type"] == "date"
    assert by_name["omnichannel"]["type"] == "boolean"
    assert by_name["last_order_channel"]["values"] == ["online", "app", "store", "partner"]
    assert "within_last_days" not in by_name["birthday"]["operators"]
    assert {"rfm_recency", "rfm_frequency", "rfm_monetary", "tier", "tags"} <= set(by_name)
    reach = {f"marketing_consent_{c}" for c in ("sms", "email", "push")} | {
        "sms_reachable",
        "email_reachable",
        "push_reachable",
    }
    assert {by_name[name]["type"] for name in reach} == {"boolean"}
    assert by_name["marketing_messages_30d"]["type"] == "number"
    assert by_name["last_marketing_message_at"]["type"] == by_name["last_engagement_at"]["type"]
    assert by_name["last_engagement_at"]["type"] == "date"


def test_a_dynamic_segment_is_counted_sampled_and_exported_as_it_is_now(
    client, writer, people, make
):
    north, _ = people
    created = client.post(
        "/v1/segments", json={"name": "North", "rule": GOLD_RULE}, headers=idem(writer)
    )
    assert created.status_code == 201, created.json
    segment = created.json
    assert (segment["kind"], segment["version"]) == ("dynamic", 1)

    count = client.get(f"/v1/segments/{segment['id']}/count", headers=writer)
    assert count.json["count"] == 3
    sample = client.get(f"/v1/segments/{segment['id']}/sample?size=2", headers=writer)
    assert [item["member_id"] for item in sample.json["members"]] == sorted(m.id for m in north)[:2]
    assert "name" not in sample.json["members"][0]  # no contact details in a sample

    later = make.member(region="north")  # evaluated when used: a new member counts at once
    exported = client.get(f"/v1/segments/{segment['id']}/export.csv", headers=writer)
    assert exported.mimetype == "text/csv"
    assert exported.text.split() == [
        "member_id",
        *map(str, sorted([*(m.id for m in north), later.id])),
    ]


def test_preview_counts_a_rule_while_it_is_edited(client, reader, people):
    north, _ = people
    rule = {
        "and": [
            GOLD_RULE,
            {"field": "points_expiring_30d", "op": "gte", "value": 500},
        ]
    }
    response = client.post("/v1/segments/preview", json={"rule": rule}, headers=reader)
    assert response.status_code == 200, response.json
    assert response.json["count"] == 1
    assert response.json["sample"][0]["member_id"] == north[0].id


@pytest.mark.parametrize(
    ("rule", "path", "says"),
    [
        ({"field": "shoe_size", "op": "eq", "value": 1}, "rule.field", "unknown attribute"),
        (
            {"and": [GOLD_RULE, {"field": "tier", "op": "gte", "value": "x"}]},
            "rule.and[1].op",
            "takes",
        ),
        (
            {"not": {"field": "points_balance", "op": "gt", "value": "many"}},
            "rule.not.value",
            "number",
        ),
        ({"or": []}, "rule.or", "non-empty"),
        (
            {"field": "categories", "op": "contains_any", "value": ["x"], "channels": ["fax"]},
            "rule.channels",
            "channels",
        ),
        ({"field": "last_order_at", "op": "before", "value": "yesterday"}, "rule.value", "ISO"),
        ({"field": "region", "op": "eq", "value": "north", "colour": 1}, "rule.colour", "unknown"),
        ({"field": "omnichannel", "op": "is", "value": "yes"}, "rule.value", "true or false"),
        ({"and": [GOLD_RULE], "or": [GOLD_RULE]}, "rule", "alone"),
        (
            {"field": "points_balance", "op": "between", "value": [5, 1]},
            "rule.value",
            "low <= high",
        ),
    ],
)
def test_bad_rules_get_a_422_naming_the_path(client, writer, rule, path, says):
    response = client.post("/v1/segments", json={"name": "bad", "rule": rule}, headers=idem(writer))
    assert response.status_code == 422, response.json
    assert response.mimetype == PROBLEM
    assert path in _messages(response), response.json["errors"]
    assert says in " ".join(_messages(response)[path])
    preview = client.post("/v1/segments/preview", json={"rule": rule}, headers=writer)
    assert preview.status_code == 422 and path in _messages(preview)


def _messages(response) -> dict[str, list[str]]:
    """A 422's `errors` ([{field, message}]) as each field's messages."""
    found: dict[str, list[str]] = {}
    for error in response.json["errors"]:
        found.setdefault(error["field"], []).append(error["message"])
    return found


def test_a_dynamic_segment_needs_a_rule_and_edits_bump_the_version(client, writer):
    response = client.post("/v1/segments", json={"name": "x"}, headers=idem(writer))
    assert response.status_code == 422 and "rule" in _messages(response)
    created = client.post(
        "/v1/segments", json={"name": "x", "rule": GOLD_RULE}, headers=idem(writer)
    ).json
    changed = client.patch(
        f"/v1/segments/{created['id']}",
        json={"rule": {"field": "region", "op": "eq", "value": "south"}},
        headers=idem(writer),
    )
    assert changed.json["version"] == 2
    renamed = client.patch(
        f"/v1/segments/{created['id']}", json={"name": "y"}, headers=idem(writer)
    )
    assert (renamed.json["name"], renamed.json["version"]) == ("y", 2)
    assert client.delete(f"/v1/segments/{created['id']}", headers=idem(writer)).status_code == 204
    assert client.get(f"/v1/segments/{created['id']}", headers=writer).status_code == 404


def test_a_static_snapshot_keeps_its_people_until_retaken(client, writer, people, make):
    created = client.post(
        "/v1/segments",
        json={"name": "North now", "kind": "static", "rule": GOLD_RULE},
        headers=idem(writer),
    ).json
    make.member(region="north")  # joins after the snapshot: not in it
    count = client.get(f"/v1/segments/{created['id']}/count", headers=writer)
    assert count.json["count"] == 3
    retaken = client.post(f"/v1/segments/{created['id']}/snapshot", headers=idem(writer))
    assert retaken.json["count"] == 4


def test_an_uploaded_csv_reports_the_rows_that_matched_nobody(client, writer, make):
    alice = make.member(email="alice@example.com")
    bob = make.member(email="bob@example.com")
    carol = make.member(email="carol@example.com")
    merge_members(alice.id, carol.id, reason=None, now=utcnow(), actor="test")
    db.session.commit()
    segment = client.post(
        "/v1/segments", json={"name": "list", "kind": "static"}, headers=idem(writer)
    ).json
    text = (
        "email,comment\n"
        "ALICE@example.com ,first\n"
        "bob@example.com,\n"
        "carol@example.com,merged into alice\n"
        "nobody@example.com,\n"
        "not-an-email,\n"
        "\n"
    )
    response = client.post(
        f"/v1/segments/{segment['id']}/upload", json={"csv": text}, headers=idem(writer)
    )
    assert response.status_code == 200, response.json
    report = response.json
    assert (report["rows"], report["matched"], report["added"]) == (5, 3, 2)
    assert [(row["line"], row["reason"]) for row in report["unmatched"]] == [
        (5, "no active member"),
        (6, "'not-an-email' is not an email address"),
    ]
    exported = client.get(f"/v1/segments/{segment['id']}/export.csv", headers=writer)
    assert exported.text.split()[1:] == [str(alice.id), str(bob.id)]

    bad = client.post(
        f"/v1/segments/{segment['id']}/upload", json={"csv": "name\nx\n"}, headers=idem(writer)
    )
    assert bad.status_code == 422 and "csv" in _messages(bad)


def test_read_keys_cannot_change_segments(client, reader):
    response = client.post(
        "/v1/segments", json={"name": "x", "rule": GOLD_RULE}, headers=idem(reader)
    )
    assert response.status_code == 403
    assert response.mimetype == PROBLEM


def test_segments_are_listed_in_pages_followed_by_cursor(client, writer):
    created = [
        client.post(
            "/v1/segments", json={"name": f"s{n}", "rule": GOLD_RULE}, headers=idem(writer)
        ).json["id"]
        for n in range(3)
    ]
    first = client.get("/v1/segments?limit=2", headers=writer).json
    assert [item["id"] for item in first["items"]] == created[:2]
    after = client.get(f"/v1/segments?limit=2&cursor={first['next_cursor']}", headers=writer).json
    assert ([item["id"] for item in after["items"]], after["next_cursor"]) == (created[2:], None)
    bad = client.get("/v1/segments?cursor=nope", headers=writer)
    assert bad.status_code == 422 and _messages(bad) == {
        "cursor": [bad.json["errors"][0]["message"]]
    }


def test_a_store_bound_key_cannot_reach_segments_of_the_whole_program(client, make, writer):
    """Segments count, sample and export every member: a key bound to one store is refused
    them even when it holds the scopes (it would see far beyond its store)."""
    segment = client.post(
        "/v1/segments", json={"name": "gold", "rule": GOLD_RULE}, headers=idem(writer)
    ).json
    store_key = make.api_key(scopes.SEGMENTS_READ, scopes.SEGMENTS_WRITE, store_id=make.store().id)
    for method, path in [
        ("get", "/v1/segments"),
        ("get", f"/v1/segments/{segment['id']}/count"),
        ("get", f"/v1/segments/{segment['id']}/export.csv"),
        ("post", "/v1/segments/preview"),
    ]:
        response = getattr(client, method)(path, json={"rule": GOLD_RULE}, headers=store_key)
        assert response.status_code == 403 and response.mimetype == PROBLEM, path
        assert "store-bound" in response.json["detail"]
    created = client.post(
        "/v1/segments", json={"name": "x", "rule": GOLD_RULE}, headers=idem(store_key)
    )
    assert created.status_code == 403


def test_a_segment_a_campaign_or_journey_targets_cannot_be_deleted(client, make, writer):
    from tests.campaigns.campaign_factories import body
    from tests.journeys.helpers import journey

    marketer = make.api_key(scopes.CAMPAIGNS_READ, scopes.CAMPAIGNS_WRITE)
    used = client.post(
        "/v1/segments", json={"name": "used", "rule": GOLD_RULE}, headers=idem(writer)
    ).json
    unused = client.post(
        "/v1/segments", json={"name": "unused", "rule": GOLD_RULE}, headers=idem(writer)
    ).json
    campaign = client.post("/v1/campaigns", json=body(used["id"]), headers=idem(marketer)).json

    refused = client.delete(f"/v1/segments/{used['id']}", headers=idem(writer))
    assert refused.status_code == 409 and refused.mimetype == PROBLEM, refused.json
    assert (refused.json["campaign_ids"], refused.json["journey_ids"]) == ([campaign["id"]], [])
    assert (
        client.get(f"/v1/campaigns/{campaign['id']}/estimate", headers=marketer).status_code == 200
    )
    assert client.delete(f"/v1/segments/{unused['id']}", headers=idem(writer)).status_code == 204

    announced = client.post(
        "/v1/segments", json={"name": "announced", "rule": GOLD_RULE}, headers=idem(writer)
    ).json
    entered = journey(
        [{"type": "wait", "days": 1}], trigger="segment", segment_id=announced["id"], active=False
    )
    refused = client.delete(f"/v1/segments/{announced['id']}", headers=idem(writer))
    assert (refused.status_code, refused.json["journey_ids"]) == (409, [entered.id])
