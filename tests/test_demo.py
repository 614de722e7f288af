"""The demo data `make run` seeds goes through the real write path and keeps the books."""

from __future__ import annotations

from loyalty.clock import utcnow
from loyalty.db import db
from loyalty.demo import database_is_empty, seed_demo
from tests.ledger.invariants import assert_ledger_consistent


def test_demo_seeding_fills_an_empty_program_and_keeps_the_ledger_consistent(app, client):
    assert database_is_empty()
    keys = seed_demo(member_count=12, now=utcnow())
    db.session.commit()
    assert not database_is_empty()
    assert_ledger_consistent()
    admin = {"Authorization": f"Bearer {keys['admin']}"}
    liability = client.get("/v1/reports/liability", headers=admin)
    assert liability.status_code == 200 and liability.json["outstanding"] > 0
    pos = {"Authorization": f"Bearer {keys['pos PAR-01']}"}
    assert client.get("/v1/members/1/balance", headers=pos).status_code == 200
