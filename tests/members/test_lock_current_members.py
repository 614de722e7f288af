"""`lock_current_members`: the people behind several ids, locked in one statement in
ascending id order, merges followed under the lock."""

from __future__ import annotations

import pytest

from loyalty.clock import utcnow
from loyalty.db import db
from loyalty.errors import NotFound
from loyalty.members.merge import merge_members
from loyalty.members.resolution import lock_current_members
from tests.concurrency import run_between
from tests.statements import statements


def test_every_id_resolves_to_its_person_in_one_statement(app, make):
    a, b, c = (make.member().id for _ in range(3))
    merge_members(a, c, reason=None, now=utcnow(), actor="t")
    db.session.commit()
    db.session.expire_all()
    with statements() as seen:
        locked = lock_current_members([c, b, a, b])
    assert {given: member.id for given, member in locked.items()} == {a: a, b: b, c: a}
    assert len(seen) == 1
    if db.engine.dialect.name == "postgresql":
        assert "FOR NO KEY UPDATE OF members" in seen[0] and "ORDER BY members.id" in seen[0]
    db.session.rollback()
    with pytest.raises(NotFound):
        lock_current_members([a, 999_999])


def test_coupons_lock_their_members_in_one_statement(app, make):
    from loyalty.coupons.operations import _lock_members

    a, b = make.member().id, make.member().id
    merge_members(a, b, reason=None, now=utcnow(), actor="t")
    db.session.commit()
    db.session.expire_all()
    with statements() as seen:
        assert _lock_members([b, None, a]) == [a, a]
    assert len(seen) == 1


@pytest.mark.postgres
def test_a_merge_that_commits_while_we_wait_is_followed_to_the_survivor(app, make):
    survivor, merged, other = make.member().id, make.member().id, make.member().id
    found: dict[int, int] = {}

    def merging() -> None:
        merge_members(survivor, merged, reason=None, now=utcnow(), actor="t")

    def locking() -> None:
        found.update({k: m.id for k, m in lock_current_members([other, merged]).items()})

    assert run_between(app, merging, locking) == []
    assert found == {other: other, merged: survivor}
