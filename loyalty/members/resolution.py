"""The merge rule: how any domain finds the person behind a member id.

A merge keeps the merged member's row (status 'merged', `merged_into_id` = the survivor),
and rows of other domains may stay under the old id (ledger transactions, redemptions,
holds, orders posted while the merge ran). So every domain asks two questions, here:

- `current_member_id(id)`: the member an id belongs to now. Every write that credits,
  debits or changes a member uses it (the lock helpers resolve once more under the row
  lock, see `lock_current_member`), and every read that answers "for this member".
- `history_member_ids(id)` / `history_members(ids)`: every id whose rows are the person's
  history. Every aggregate (tier qualification, net spend, exports) sums over them.

`merged_into_id` always names a member that is not merged itself: a merge repoints the
members merged earlier into the merged member (`repoint_merged_into`), so resolving is one
lookup and a person's history ids are one indexed query, however many merges happened.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from functools import cache
from typing import Any

import sqlalchemy as sa

from loyalty.db import any_of, db
from loyalty.errors import Conflict, NotFound
from loyalty.members.models import Member, MemberStatus

# Chains are repointed at every merge; following a few hops covers rows written before
# that rule (and a merge that committed between our lookup and our lock).
MAX_HOPS = 16


def current_member_id(member_id: int) -> int:
    """The id of the member `member_id` belongs to now (itself unless it was merged).

    Raises NotFound for an unknown id. Reads committed data (no lock): writers resolve
    again under the row lock (`lock_current_member`).
    """
    table = Member.__table__
    target = member_id
    for _ in range(MAX_HOPS):
        survivor = db.session.execute(
            sa.select(table.c.merged_into_id).where(table.c.id == target)
        ).first()
        if survivor is None:
            raise NotFound(f"no member {member_id}")
        if survivor[0] is None:
            return target
        target = survivor[0]
    raise Conflict(f"member {member_id} resolves through too many merges")


@cache
def _lock_person_statement() -> sa.Select[Any]:
    """Built once: every ledger write runs it."""
    table = Member.__table__
    person = (
        sa.select(sa.func.coalesce(table.c.merged_into_id, table.c.id))
        .where(table.c.id == sa.bindparam("member_id"))
        .scalar_subquery()
    )
    return (
        sa.select(Member)
        .where(Member.id == person)
        .with_for_update(key_share=True)
        .execution_options(populate_existing=True)
    )


def get_member(member_id: int) -> Member:
    """The member row `member_id` belongs to now (merges followed), through the session's
    identity map. NotFound for an unknown id. No lock: writers use `lock_current_member`."""
    member = db.session.get(Member, member_id)
    if member is None:
        raise NotFound(f"no member {member_id}")
    return current_member(member)


def current_member(member: Member) -> Member:
    """The member a loaded row belongs to now (itself unless it was merged)."""
    if member.status != MemberStatus.MERGED:
        return member
    return db.session.get(Member, current_member_id(member.id))  # type: ignore[return-value]


def person_of(member_id: int) -> Member | None:
    """Like `get_member`, but None for an unknown id (message senders skip such a member).
    Through the identity map, so a chunk of messages to the same members reads each once;
    `merged_into_id` always names a survivor, so one hop is enough."""
    member = db.session.get(Member, member_id)
    if member is not None and member.merged_into_id is not None:
        member = db.session.get(Member, member.merged_into_id)
    return member


def lock_current_member(member_id: int) -> Member:
    """Lock the row of the member `member_id` belongs to now, and return it.

    One statement resolves the id and locks the person's row (the merged row itself is not
    locked). Then, under the lock, the row is checked again: a merge of that member that
    committed while we waited is followed to the survivor, whose row is locked in turn.
    FOR NO KEY UPDATE (key_share), the lock every member write takes (see the ledger's
    lock_member_accounts). Raises NotFound for an unknown id.
    """
    target = member_id
    for _ in range(MAX_HOPS):
        member = db.session.scalar(_lock_person_statement(), {"member_id": target})
        if member is None:
            raise NotFound(f"no member {member_id}")
        if member.status != MemberStatus.MERGED or member.merged_into_id is None:
            return member
        target = member.merged_into_id  # merged while we waited for the lock: follow it
    raise Conflict(f"member {member_id} resolves through too many merges")


def lock_current_members(member_ids: Iterable[int]) -> dict[int, Member]:
    """Lock the people the ids belong to now, in ascending id order, in one statement;
    returns {given id: the locked member}.

    One SELECT ... FOR NO KEY UPDATE OF the person's row joins each given id to the member
    it resolves to and locks those rows (never the merged rows themselves: a later merge
    repoints them) in id order, so callers locking overlapping sets queue instead of
    deadlocking (lock order step 2). Under the lock each row is read again: a merge that
    committed while we waited is followed to its survivor, one more statement only then.
    NotFound for an unknown id.
    """
    wanted = sorted(set(member_ids))
    if not wanted:
        return {}
    person: dict[int, int] = {}
    locked: dict[int, Member] = {}
    pending = wanted
    for _ in range(MAX_HOPS):
        given = sa.orm.aliased(Member, name="given")
        rows = db.session.execute(
            sa.select(Member, given.id)
            .join(given, Member.id == sa.func.coalesce(given.merged_into_id, given.id))
            .where(any_of(given.id, pending))
            .order_by(Member.id)
            .with_for_update(key_share=True, of=Member)
            .execution_options(populate_existing=True)
        ).all()
        for member, given_id in rows:
            locked[member.id] = member
            person.setdefault(given_id, member.id)
        missing = [m for m in wanted if m not in person]
        if missing:
            raise NotFound(f"no member {missing[0]}")
        follow = set()
        for name in wanted:
            member = locked[person[name]]
            if member.status == MemberStatus.MERGED and member.merged_into_id is not None:
                person[name] = member.merged_into_id  # merged while we waited: follow it
                follow.add(member.merged_into_id)
        if not follow:
            return {name: locked[person[name]] for name in wanted}
        pending = sorted(follow)
    raise Conflict(f"members {wanted} resolve through too many merges")


def history_member_ids(member_id: int) -> list[int]:
    """The person's ids: the member `member_id` belongs to now, then every id merged into
    it (by id). Aggregates over a person's history sum over all of them. One statement
    (merged_into_id is one hop, see the module docstring). NotFound for an unknown id."""
    table = Member.__table__
    person = (
        sa.select(sa.func.coalesce(table.c.merged_into_id, table.c.id))
        .where(table.c.id == member_id)
        .scalar_subquery()
    )
    rows = db.session.execute(
        sa.select(table.c.id, table.c.merged_into_id)
        .where(sa.or_(table.c.id == person, table.c.merged_into_id == person))
        .order_by(table.c.merged_into_id.is_not(None), table.c.id)
    ).all()
    if not rows or rows[0][1] is not None:
        raise NotFound(f"no member {member_id}")
    return [row[0] for row in rows]


def history_members(person_ids: Sequence[int]) -> sa.Subquery:
    """(member_id, person_id) for every id whose rows belong to one of `person_ids`.

    Join an aggregate's member column to `member_id` and group by `person_id` to sum each
    person's whole history, merged ids included, in one statement.
    """
    table = Member.__table__
    return (
        sa.select(
            table.c.id.label("member_id"),
            sa.func.coalesce(table.c.merged_into_id, table.c.id).label("person_id"),
        )
        .where(sa.or_(any_of(table.c.id, person_ids), any_of(table.c.merged_into_id, person_ids)))
        .subquery("history_members")
    )


def repoint_merged_into(merged_id: int, survivor_id: int) -> int:
    """Members merged earlier into `merged_id` now name `survivor_id` (the merge calls this
    in its transaction, so `merged_into_id` never points at a merged member)."""
    table = Member.__table__
    result = db.session.execute(
        sa.update(table)
        .where(table.c.merged_into_id == merged_id)
        .values(merged_into_id=survivor_id)
    )
    return result.rowcount or 0
