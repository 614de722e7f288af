"""Merging duplicate members: identities, points, lots, tier; audited; once only."""

from __future__ import annotations

import threading

import pytest
import sqlalchemy as sa

from loyalty.auth import scopes
from loyalty.clock import utcnow
from loyalty.db import db
from loyalty.errors import Conflict, InvalidInput
from loyalty.ledger import operations as ledger
from loyalty.ledger.models import PointLot
from loyalty.members import merge as merge_module
from loyalty.members.merge import merge_members, register_merge_step
from loyalty.members.models import Member, MemberMerge
from loyalty.members.operations import find_member_by_identity
from loyalty.members.resolution import get_member
from tests.factories import error_fields, idem
from tests.ledger.invariants import assert_ledger_consistent
from tests.members.factories import PROBLEM, make_tier, topics


def merge(survivor_id: int, merged_id: int, reason: str = "same person") -> MemberMerge:
    audit = merge_members(survivor_id, merged_id, reason=reason, now=utcnow(), actor="support:1")
    db.session.commit()
    return audit


def test_identities_points_lots_and_debt_move_to_the_survivor(make):
    survivor = make.member(email="online@example.com", points=100)
    duplicate = make.member(phone="+33612345678", points=40)
    make.earn(duplicate.id, 25, pending_days=14)
    audit = merge(survivor.id, duplicate.id)

    assert find_member_by_identity("phone", "+33612345678").id == survivor.id
    assert get_member(duplicate.id).id == survivor.id
    merged = db.session.get(Member, duplicate.id)
    assert merged.status == "merged" and merged.merged_into_id == survivor.id
    balance = ledger.member_balance(survivor.id)
    assert (balance.available, balance.pending) == (140, 25)
    assert ledger.member_balance(duplicate.id).balance == 0
    assert (
        db.session.scalar(
            sa.select(sa.func.count())
            .select_from(PointLot)
            .where(PointLot.member_id == survivor.id)
        )
        == 3
    )
    assert audit.actor == "support:1" and audit.reason == "same person"
    assert audit.summary["identities"] == 2 and audit.summary["lots"] == 2
    assert audit.summary["points"] == 65
    assert "member.merged" in topics(survivor.id)
    assert_ledger_consistent()


def test_the_survivor_keeps_the_higher_tier(make):
    silver, gold = make_tier("silver", 1), make_tier("gold", 2)
    survivor, duplicate = make.member(), make.member()
    for member, tier in ((survivor, silver), (duplicate, gold)):
        db.session.get(Member, member.id).tier_id = tier.id
    db.session.commit()
    audit = merge(survivor.id, duplicate.id)
    assert db.session.get(Member, survivor.id).tier_code == "gold"
    assert audit.summary["tier"] == {"from": "silver", "to": "gold"}
    other, lower = make.member(), make.member()
    db.session.get(Member, other.id).tier_id = gold.id
    db.session.get(Member, lower.id).tier_id = silver.id
    db.session.commit()
    merge(other.id, lower.id)
    assert db.session.get(Member, other.id).tier_code == "gold"


def test_impossible_merges_are_refused_clearly(make):
    a, b, c = make.member(), make.member(), make.member()
    with pytest.raises(InvalidInput):
        merge(a.id, a.id)
    merge(a.id, b.id)
    for survivor, merged in ((a.id, b.id), (c.id, b.id), (b.id, c.id)):
        with pytest.raises(Conflict):
            merge(survivor, merged)
        db.session.rollback()
    assert db.session.scalar(sa.select(sa.func.count()).select_from(MemberMerge)) == 1


def test_a_member_with_points_on_hold_is_not_merged_away(make):
    survivor, duplicate = make.member(), make.member(points=50)
    ledger.hold_points(
        duplicate.id,
        20,
        now=utcnow(),
        ttl_seconds=600,
        reference="basket",
        client_id=None,
        store_id=None,
    )
    db.session.commit()
    with pytest.raises(Conflict):
        merge(survivor.id, duplicate.id)
    db.session.rollback()
    assert db.session.get(Member, duplicate.id).status == "active"
    assert ledger.member_balance(duplicate.id).balance == 50


def test_registered_steps_run_inside_the_merge_and_land_in_the_audit(make, monkeypatch):
    calls = []

    def move_orders(merged_id: int, survivor_id: int, now) -> dict:
        calls.append((merged_id, survivor_id))
        return {"orders": 3}

    monkeypatch.setattr(merge_module, "_merge_steps", [])
    register_merge_step(move_orders)
    register_merge_step(move_orders)  # registering twice runs it once
    survivor, duplicate = make.member(), make.member()
    audit = merge(survivor.id, duplicate.id)
    assert calls == [(duplicate.id, survivor.id)]
    key = f"{__name__}.test_registered_steps_run_inside_the_merge_and_land_in_the_audit"
    assert audit.summary[f"{key}.<locals>.move_orders"] == {"orders": 3}


def test_a_failing_step_aborts_the_whole_merge(make, monkeypatch):
    def broken(merged_id: int, survivor_id: int, now) -> dict:
        raise Conflict("coupon in use")

    monkeypatch.setattr(merge_module, "_merge_steps", [broken])
    survivor, duplicate = make.member(points=5), make.member(points=7)
    with pytest.raises(Conflict):
        merge(survivor.id, duplicate.id)
    db.session.rollback()
    assert ledger.member_balance(duplicate.id).balance == 7
    assert db.session.get(Member, duplicate.id).status == "active"


# --- API ------------------------------------------------------------------------------------


def test_merge_over_the_api(client, make):
    admin = make.api_key(scopes.ADMIN)
    survivor, duplicate = make.member(points=10), make.member(points=5)
    url = f"/v1/members/{survivor.id}/merge"
    response = client.post(
        url, json={"merged_member_id": duplicate.id, "reason": "dup"}, headers=idem(admin)
    )
    assert response.status_code == 200, response.json
    assert response.json["merged_id"] == duplicate.id and response.json["summary"]["points"] == 5
    again = client.post(
        url, json={"merged_member_id": duplicate.id, "reason": "dup"}, headers=idem(admin)
    )
    assert again.status_code == 409 and again.mimetype == PROBLEM
    itself = client.post(
        url, json={"merged_member_id": survivor.id, "reason": "x"}, headers=idem(admin)
    )
    assert itself.status_code == 422 and "merged_member_id" in error_fields(itself.json)
    for body in (
        {"merged_member_id": "2", "reason": "x"},
        {"merged_member_id": 2},
        {"merged_member_id": 2, "reason": "x", "force": True},
    ):
        assert client.post(url, json=body, headers=idem(admin)).status_code == 422
    missing = client.post(url, json={"merged_member_id": 99999, "reason": "x"}, headers=idem(admin))
    assert missing.status_code == 404


@pytest.mark.postgres
@pytest.mark.parametrize("opposite", [False, True], ids=["same-direction", "opposite"])
def test_two_concurrent_merges_of_the_same_pair_move_the_points_once(app, make, opposite):
    admin = make.api_key(scopes.ADMIN)
    for _ in range(5):
        a, b = make.member(points=30), make.member(points=70)
        make.earn(b.id, 11, pending_days=5)
        attempts = [(a.id, b.id), (b.id, a.id) if opposite else (a.id, b.id)]
        barrier = threading.Barrier(2)
        statuses: list[int] = []

        def attempt(
            survivor: int,
            merged: int,
            barrier: threading.Barrier = barrier,
            statuses: list[int] = statuses,
        ) -> None:
            with app.app_context():
                client = app.test_client()
                barrier.wait()
                response = client.post(
                    f"/v1/members/{survivor}/merge",
                    json={"merged_member_id": merged, "reason": "race"},
                    headers=idem(admin),
                )
                statuses.append(response.status_code)

        threads = [threading.Thread(target=attempt, args=args) for args in attempts]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert sorted(statuses) == [200, 409], statuses
        db.session.expire_all()
        balances = sorted(
            (ledger.member_balance(m) for m in (a.id, b.id)), key=lambda bal: bal.balance
        )
        assert (balances[0].balance, balances[0].pending) == (0, 0)
        assert (balances[1].balance, balances[1].pending) == (100, 11)
        assert (
            db.session.scalar(
                sa.select(sa.func.count())
                .select_from(MemberMerge)
                .where(MemberMerge.merged_id.in_([a.id, b.id]))
            )
            == 1
        )
    assert_ledger_consistent()
