"""Bad ledger input the API fuzzer (tests/test_api_fuzz.py) found answered with a 500."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from loyalty.db import db
from loyalty.ledger.models import PointHold
from tests.factories import error_fields, idem

PROBLEM = "application/problem+json"


def test_a_points_hold_at_an_unknown_store_is_a_422_and_holds_nothing(client, make):
    member = make.member(points=100)
    response = client.post(
        f"/v1/members/{member.id}/holds",
        json={"points": 10, "store_id": "NO-SUCH-STORE"},
        headers=idem(make.api_key()),
    )
    assert response.status_code == 422 and response.mimetype == PROBLEM
    assert "store_id" in error_fields(response.json)
    assert db.session.scalar(sa.select(sa.func.count()).select_from(PointHold)) == 0
    balance = client.get(f"/v1/members/{member.id}/balance", headers=make.api_key()).json
    assert balance["available"] == 100


def test_capturing_more_points_than_the_database_can_hold_is_a_422(client, make):
    member = make.member(points=100)
    headers = make.api_key()
    hold = client.post(
        f"/v1/members/{member.id}/holds", json={"points": 10}, headers=idem(headers)
    ).json
    response = client.post(
        f"/v1/holds/{hold['id']}/capture", json={"points": 2**70}, headers=idem(headers)
    )
    assert response.status_code == 422 and "points" in error_fields(response.json)


@pytest.mark.parametrize("cursor", ["99999999999999999999999", "²", "-1", "1 "])
def test_a_history_cursor_that_is_no_bigint_id_is_a_422(client, make, cursor):
    member = make.member(points=10)
    response = client.get(
        f"/v1/members/{member.id}/ledger", query_string={"cursor": cursor}, headers=make.api_key()
    )
    assert response.status_code == 422 and "cursor" in error_fields(response.json)


@pytest.mark.parametrize(
    ("since", "until"), [("9999-12-30", "9999-12-31"), ("0001-01-01", "0001-01-02")]
)
def test_a_points_activity_report_far_outside_1970_9000_is_a_422(client, make, since, until):
    response = client.get(
        "/v1/reports/points-activity",
        query_string={"since": since, "until": until},
        headers=make.api_key(),
    )
    assert response.status_code == 422 and response.mimetype == PROBLEM
