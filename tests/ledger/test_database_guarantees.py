"""The database itself refuses what would break the ledger, whatever the Python code does."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from loyalty.db import db
from loyalty.ledger.models import AccountKind, LedgerAccount, LedgerEntry, LedgerTransaction


def _refused(statement: sa.Executable) -> None:
    with pytest.raises(sa.exc.DBAPIError):
        db.session.execute(statement)
        db.session.flush()
    db.session.rollback()


def test_ledger_transactions_and_entries_are_append_only(app, make):
    make.member(points=10)
    _refused(sa.update(LedgerEntry).values(amount=999))
    _refused(sa.delete(LedgerEntry))
    _refused(sa.update(LedgerTransaction).values(amount=999))
    _refused(sa.delete(LedgerTransaction))


def test_a_points_account_can_never_be_overdrawn(app, make):
    member = make.member(points=10)
    points = sa.and_(
        LedgerAccount.member_id == member.id, LedgerAccount.kind == AccountKind.MEMBER_POINTS.value
    )
    _refused(sa.update(LedgerAccount).where(points).values(balance=-1))
    _refused(sa.update(LedgerAccount).where(points).values(held=11))


def test_an_entry_moves_a_positive_amount_between_two_accounts(app, make):
    member = make.member(points=10)
    account = db.session.scalar(
        sa.select(LedgerAccount).where(LedgerAccount.member_id == member.id)
    )
    tx_id = db.session.scalar(sa.select(LedgerTransaction.id))
    for amount, target in ((0, account.id + 1), (5, account.id)):
        _refused(
            sa.insert(LedgerEntry).values(
                transaction_id=tx_id,
                from_account_id=account.id,
                to_account_id=target,
                amount=amount,
                created_at=sa.func.now(),
            )
        )
