"""The merge rule: any id leads to the person it belongs to now, on every read and write.

See loyalty.members.resolution and docs/architecture.md, "The merge rule".
"""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from loyalty.auth import scopes
from loyalty.clock import utcnow
from loyalty.db import db
from loyalty.ledger import operations as ledger
from loyalty.ledger.models import LedgerTransaction
from loyalty.members.merge import merge_members
from loyalty.members.models import Member
from loyalty.members.resolution import current_member_id, history_member_ids
from tests.concurrency import run_between
from tests.ledger.invariants import assert_ledger_consistent


def merge(survivor_id: int, merged_id: int) -> None:
    merge_members(survivor_id, merged_id, reason="same person", now=utcnow(), actor="support:1")
    db.session.commit()


def test_a_chain_of_merges_resolves_in_one_hop(make):
    a, b, c = make.member(points=10), make.member(points=20), make.member(points=30)
    merge(b.id, a.id)
    merge(c.id, b.id)

    assert {current_member_id(m.id) for m in (a, b, c)} == {c.id}
    # merged_into_id always names the person: a's row was repointed from b to c.
    assert db.session.scalar(sa.select(Member.merged_into_id).where(Member.id == a.id)) == c.id
    assert history_member_ids(a.id) == [c.id, a.id, b.id]
    assert ledger.member_balance(c.id).balance == 60


def test_a_merged_members_own_ledger_adds_up_to_what_its_accounts_hold(make):
    survivor, duplicate = make.member(points=100), make.member(points=40)
    make.earn(duplicate.id, 25, pending_days=14)
    merge(survivor.id, duplicate.id)

    def ledger_sum(member_id: int) -> int:
        return db.session.scalar(
            sa.select(sa.func.coalesce(sa.func.sum(LedgerTransaction.amount), 0)).where(
                LedgerTransaction.member_id == member_id
            )
        )

    emptied = db.session.execute(
        sa.text("SELECT sum(balance) FROM ledger_accounts WHERE member_id = :m"),
        {"m": duplicate.id},
    ).scalar()
    assert emptied == 0 and ledger_sum(duplicate.id) == 0  # an outgoing merge of -65
    out = db.session.scalar(
        sa.select(LedgerTransaction).where(
            LedgerTransaction.member_id == duplicate.id, LedgerTransaction.kind == "merge"
        )
    )
    assert (out.amount, out.details["survivor_id"]) == (-65, survivor.id)
    survivor_balance = ledger.member_balance(survivor.id)
    assert ledger_sum(survivor.id) == survivor_balance.balance + survivor_balance.pending == 165
    assert_ledger_consistent()


def test_member_routes_naming_a_merged_id_all_answer_for_the_person(client, make):
    survivor, duplicate = make.member(points=100), make.member(points=40)
    token = make.member_token(duplicate.id)  # minted before the merge
    merge(survivor.id, duplicate.id)
    admin = make.api_key(scopes.ADMIN, scopes.MEMBERS_READ)

    me = client.get("/v1/me/balance", headers=token).json
    history = client.get("/v1/me/history?limit=100", headers=token).json["items"]
    assert me["member_id"] == survivor.id and me["balance"] == 140
    assert sum(item["points"] for item in history) == 140
    assert client.get("/v1/me/profile", headers=token).json["id"] == survivor.id

    balance = client.get(f"/v1/members/{duplicate.id}/balance", headers=admin).json
    items = client.get(f"/v1/members/{duplicate.id}/ledger?limit=100", headers=admin).json["items"]
    assert balance["balance"] == sum(item["points"] for item in items) == 140
    # The person's history shows the duplicate's own movements and both sides of the merge.
    merges = sorted((i["points"], i["member_id"]) for i in items if i["kind"] == "merge")
    assert merges == [(-40, duplicate.id), (40, survivor.id)]


@pytest.mark.postgres
def test_a_write_waiting_on_a_member_being_merged_lands_on_the_survivor(app, make):
    """Resolve, then lock: a merge that commits while the write waits for the member's row
    lock is followed under the lock (the +41 once booked on a merged member)."""
    survivor, duplicate = make.member(points=100).id, make.member(points=40).id

    def merging() -> None:
        merge_members(survivor, duplicate, reason="r", now=utcnow(), actor="t")

    def adjusting() -> None:
        resolved = current_member_id(duplicate)  # before the merge commits
        assert resolved == duplicate
        ledger.adjust_points(
            resolved, 41, reason="goodwill", actor="t", now=utcnow(), reference="r"
        )

    assert run_between(app, merging, adjusting) == []
    db.session.expire_all()
    assert ledger.member_balance(survivor).balance == 181
    assert ledger.member_balance(duplicate).balance == 0
    assert_ledger_consistent()
