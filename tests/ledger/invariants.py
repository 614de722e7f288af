"""Checks of the ledger invariants, straight from the tables (shared by the ledger tests)."""

from __future__ import annotations

from collections import defaultdict

import sqlalchemy as sa

from loyalty.db import db
from loyalty.ledger.models import (
    AccountKind,
    HoldStatus,
    LedgerAccount,
    LedgerEntry,
    LotStatus,
    PointHold,
    PointLot,
)


def assert_ledger_consistent() -> None:
    """Every invariant of docs/architecture.md "The ledger", over the whole database."""
    derived: dict[int, int] = defaultdict(int)
    for source, target, amount in db.session.execute(
        sa.select(LedgerEntry.from_account_id, LedgerEntry.to_account_id, LedgerEntry.amount)
    ):
        assert amount > 0
        derived[source] -= amount
        derived[target] += amount
    # Double entry: all points that exist came from somewhere.
    assert sum(derived.values()) == 0

    lots: dict[tuple[int, str], int] = defaultdict(int)
    for member_id, status, remaining in db.session.execute(
        sa.select(PointLot.member_id, PointLot.status, PointLot.remaining)
    ):
        lots[(member_id, status)] += remaining
    holds: dict[int, int] = defaultdict(int)
    for member_id, amount in db.session.execute(
        sa.select(PointHold.member_id, PointHold.amount).where(
            PointHold.status == HoldStatus.ACTIVE.value
        )
    ):
        holds[member_id] += amount

    for account in db.session.scalars(sa.select(LedgerAccount)):
        if account.kind == AccountKind.PROGRAM:
            continue
        where = f"member {account.member_id} {account.kind}"
        assert account.balance == derived[account.id], f"{where}: balance != sum of entries"
        if account.kind == AccountKind.MEMBER_POINTS:
            assert account.balance == lots[(account.member_id, LotStatus.AVAILABLE.value)], (
                f"{where}: balance != sum of available lot remainders"
            )
            assert account.held == holds[account.member_id], f"{where}: held != active holds"
            assert 0 <= account.held <= account.balance
        elif account.kind == AccountKind.MEMBER_PENDING:
            assert account.balance == lots[(account.member_id, LotStatus.PENDING.value)], (
                f"{where}: balance != sum of pending lot remainders"
            )
        else:
            assert account.balance <= 0
