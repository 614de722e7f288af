"""The external id is unique under concurrency (PostgreSQL): racing requests for one id get
one member, never a duplicate and never a 500."""

from __future__ import annotations

from collections import Counter

import pytest
import sqlalchemy as sa

from loyalty.db import db
from loyalty.members.models import Member
from tests.coupons.test_concurrency import in_parallel, post

pytestmark = pytest.mark.postgres


def test_racing_enrolments_with_one_external_id_make_one_member(app, make):
    admin = make.api_key()

    def enrol(i):
        body = {"identities": {"email": f"race{i}@example.com"}, "external_id": "RACE-1"}
        return post(app, "/v1/members", admin, body)

    answers = in_parallel(app, 24, enrol)
    assert Counter(status for status, _ in answers) == {201: 1, 200: 23}
    assert len({body["member"]["id"] for _, body in answers}) == 1
    holders = db.session.scalar(sa.select(sa.func.count()).where(Member.external_id == "RACE-1"))
    assert holders == 1


def test_racing_updates_to_one_external_id_give_it_to_one_member(app, make):
    admin = make.api_key()
    ids = [make.member().id for _ in range(12)]

    def claim(i):
        response = app.test_client().patch(
            f"/v1/members/{ids[i]}",
            json={"external_id": "CLAIMED"},
            headers={**admin, "Idempotency-Key": f"claim-{i}"},
        )
        return response.status_code

    assert Counter(in_parallel(app, 12, claim)) == {200: 1, 409: 11}
