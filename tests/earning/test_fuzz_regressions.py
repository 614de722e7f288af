"""Bad earning input the API fuzzer (tests/test_api_fuzz.py) found answered with a 500."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from loyalty.db import db
from loyalty.earning.models import Order
from tests.earning.factories import base_rate, order_body
from tests.factories import error_fields, idem

PROBLEM = "application/problem+json"


@pytest.mark.parametrize(
    "occurred_at",
    [
        "0001-01-01T00:00:00+14:00",  # before year 1 in UTC: OverflowError converting it
        "9999-12-31T23:59:59-12:00",  # after year 9999 in UTC
        "1969-12-31T23:59:59Z",
        "2026-03-01T10:00:00",  # no offset
    ],
)
def test_an_order_time_out_of_range_or_without_offset_is_a_422(client, make, occurred_at):
    base_rate()
    member = make.member()
    body = {**order_body({"member_id": member.id}), "occurred_at": occurred_at}
    response = client.post("/v1/orders", json=body, headers=idem(make.api_key()))
    assert response.status_code == 422 and response.mimetype == PROBLEM
    assert "occurred_at" in error_fields(response.json)
    assert db.session.scalar(sa.select(sa.func.count()).select_from(Order)) == 0


def test_a_rule_window_beyond_year_9000_is_a_422(client, make):
    rule = {
        "name": "r",
        "kind": "base_rate",
        "currency": "EUR",
        "points": 1,
        "per_minor": 100,
        "ends_at": "9999-12-31T23:59:59-12:00",
    }
    response = client.post("/v1/earning-rules", json=rule, headers=idem(make.api_key()))
    assert response.status_code == 422 and "ends_at" in error_fields(response.json)
