"""Ledger tables. See docs/architecture.md, "The ledger", for the model and invariants.

Every movement of points is a `LedgerTransaction` made of `LedgerEntry` transfers. Each
entry moves a positive amount from one account to another, so every transaction sums to
zero by construction (enforced by CHECKs on every database, not by a trigger that SQLite
could not defer). Entries and transactions are append-only (triggers refuse UPDATE and
DELETE). Member account balances are denormalised onto `LedgerAccount.balance`, kept in
step by the operations under a row lock, and constrained by CHECKs:

- member_points: 0 <= held <= balance (never overdrawn, holds never exceed it);
- member_pending: balance >= 0;
- member_debt: balance <= 0 (claw-backs the points balance couldn't cover).

Program accounts (issued, redeemed, expired, ...) do not keep a running balance: every
earn would update the same row and serialise the whole program on it. Their balances are
sums over entries, computed by the reports.
"""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from loyalty.db import BigInt, JSONType, UTCDateTime, db


class AccountKind(enum.StrEnum):
    MEMBER_POINTS = "member_points"
    MEMBER_PENDING = "member_pending"
    MEMBER_DEBT = "member_debt"
    PROGRAM = "program"


class ProgramAccount(enum.StrEnum):
    ISSUED = "issued"  # source of every point earned (orders, events, rules)
    REDEEMED = "redeemed"  # points spent on baskets and rewards
    EXPIRED = "expired"  # points that reached their lot's expiry
    ADJUSTMENTS = "adjustments"  # support's manual corrections, both ways
    OPENING = "opening"  # opening balances brought from a previous system
    # Points in transit between two members being merged: the merged member's outgoing
    # transaction pays in, the survivor's incoming one takes out the same amount (nets to 0).
    MERGES = "merges"


class TransactionKind(enum.StrEnum):
    EARN = "earn"
    BURN = "burn"
    EXPIRE = "expire"
    ADJUST = "adjust"
    REVERSE = "reverse"  # refund / cancellation taking earned points back
    RELEASE = "release"  # pending points becoming available
    MERGE = "merge"
    REVERSE_BURN = "reverse_burn"  # a burn undone (e.g. reward returned)
    OPENING = "opening"


class LotStatus(enum.StrEnum):
    PENDING = "pending"  # inside the return window; not spendable
    AVAILABLE = "available"
    CLOSED = "closed"  # remaining reached zero (spent, expired, reversed, merged away)


class HoldStatus(enum.StrEnum):
    ACTIVE = "active"
    CAPTURED = "captured"
    RELEASED = "released"
    EXPIRED = "expired"
    # Closed by the system: a refund under cap-at-zero or claw-back needed the held points
    # (see reverse_earned); the checkout that held them can no longer capture them.
    VOIDED = "voided"


class LedgerAccount(db.Model):
    __tablename__ = "ledger_accounts"
    __table_args__ = (
        sa.UniqueConstraint("member_id", "kind"),
        sa.CheckConstraint("(kind = 'program') = (member_id IS NULL)", name="owner_matches_kind"),
        sa.CheckConstraint("(kind = 'program') = (code IS NOT NULL)", name="code_for_program"),
        sa.CheckConstraint(
            "kind <> 'member_points' OR (held >= 0 AND held <= balance)",
            name="points_not_overdrawn",
        ),
        sa.CheckConstraint("kind <> 'member_pending' OR balance >= 0", name="pending_not_negative"),
        sa.CheckConstraint("kind <> 'member_debt' OR balance <= 0", name="debt_not_positive"),
        sa.CheckConstraint("kind = 'member_points' OR held = 0", name="holds_on_points_only"),
        sa.CheckConstraint("kind <> 'program' OR balance = 0", name="program_balance_derived"),
    )

    id: Mapped[int] = mapped_column(BigInt, primary_key=True)
    member_id: Mapped[int | None] = mapped_column(sa.ForeignKey("members.id"))
    kind: Mapped[str] = mapped_column(sa.String(16))
    code: Mapped[str | None] = mapped_column(sa.String(32), unique=True)
    balance: Mapped[int] = mapped_column(BigInt, default=0)
    held: Mapped[int] = mapped_column(BigInt, default=0)


class LedgerTransaction(db.Model):
    __tablename__ = "ledger_transactions"
    __table_args__ = (sa.Index("ix_ledger_transactions_member_created", "member_id", "id"),)

    id: Mapped[int] = mapped_column(BigInt, primary_key=True)
    member_id: Mapped[int] = mapped_column(BigInt)
    kind: Mapped[str] = mapped_column(sa.String(16))
    # What caused it: ("order", "42"), ("refund", "7"), ("event", "signup"), ("adjustment", ..)
    cause_type: Mapped[str] = mapped_column(sa.String(32))
    cause_ref: Mapped[str] = mapped_column(sa.String(128))
    amount: Mapped[int] = mapped_column(BigInt)  # signed effect on the member's total
    reverses_id: Mapped[int | None] = mapped_column(sa.ForeignKey("ledger_transactions.id"))
    actor: Mapped[str] = mapped_column(sa.String(200))
    reason: Mapped[str | None] = mapped_column(sa.String(500))
    details: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class LedgerEntry(db.Model):
    __tablename__ = "ledger_entries"
    __table_args__ = (
        sa.CheckConstraint("amount > 0", name="amount_positive"),
        sa.CheckConstraint("from_account_id <> to_account_id", name="distinct_accounts"),
    )

    id: Mapped[int] = mapped_column(BigInt, primary_key=True)
    transaction_id: Mapped[int] = mapped_column(sa.ForeignKey("ledger_transactions.id"), index=True)
    from_account_id: Mapped[int] = mapped_column(sa.ForeignKey("ledger_accounts.id"), index=True)
    to_account_id: Mapped[int] = mapped_column(sa.ForeignKey("ledger_accounts.id"), index=True)
    amount: Mapped[int] = mapped_column(BigInt)
    lot_id: Mapped[int | None] = mapped_column(sa.ForeignKey("point_lots.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class PointLot(db.Model):
    """Points earned together, expiring together. Burns consume the soonest-expiring first."""

    __tablename__ = "point_lots"
    __table_args__ = (
        sa.CheckConstraint("remaining >= 0 AND remaining <= amount", name="remaining_in_range"),
        sa.CheckConstraint("amount > 0", name="amount_positive"),
        sa.CheckConstraint("(status = 'closed') = (remaining = 0)", name="closed_iff_empty"),
        sa.CheckConstraint(
            "expired_points >= 0 AND reversed_points >= 0 "
            "AND expired_points + reversed_points <= amount - remaining",
            name="tallies_within_consumed",
        ),
        sa.Index("ix_point_lots_member_open", "member_id", "status", "expires_at"),
        # The batch jobs' own predicates (status, not remaining > 0, which they don't say):
        # expiry and reminders look for available lots, the release for pending ones.
        sa.Index(
            "ix_point_lots_expiry", "expires_at", postgresql_where=sa.text("status = 'available'")
        ),
        sa.Index(
            "ix_point_lots_pending", "available_at", postgresql_where=sa.text("status = 'pending'")
        ),
    )

    id: Mapped[int] = mapped_column(BigInt, primary_key=True)
    member_id: Mapped[int] = mapped_column(sa.ForeignKey("members.id"))
    status: Mapped[str] = mapped_column(sa.String(16))
    amount: Mapped[int] = mapped_column(BigInt)
    remaining: Mapped[int] = mapped_column(BigInt)
    earned_at: Mapped[datetime] = mapped_column(UTCDateTime)
    available_at: Mapped[datetime | None] = mapped_column(UTCDateTime)  # end of return window
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)  # None: never
    source_transaction_id: Mapped[int] = mapped_column(sa.ForeignKey("ledger_transactions.id"))
    cause_type: Mapped[str] = mapped_column(sa.String(32))
    cause_ref: Mapped[str] = mapped_column(sa.String(128), index=True)
    # What left the lot by expiry and by reversals of its own cause (refunds of its order).
    # The rest of `amount - remaining` was spent (burns, debits, debt repaid, merges keep
    # it). A refund never takes expired points a second time: see reverse_earned.
    expired_points: Mapped[int] = mapped_column(BigInt, default=0, server_default="0")
    reversed_points: Mapped[int] = mapped_column(BigInt, default=0, server_default="0")


class PointHold(db.Model):
    """Points reserved to pay part of a basket until captured, released or expired."""

    __tablename__ = "point_holds"
    __table_args__ = (
        sa.CheckConstraint("amount > 0", name="amount_positive"),
        sa.CheckConstraint("captured >= 0 AND captured <= amount", name="captured_in_range"),
        # Points given back by refunds of the order they paid: never more than captured.
        sa.CheckConstraint("returned >= 0 AND returned <= captured", name="returned_in_range"),
        sa.Index(
            "ix_point_holds_active_expiry",
            "expires_at",
            postgresql_where=sa.text("status = 'active'"),
        ),
    )

    id: Mapped[int] = mapped_column(BigInt, primary_key=True)
    member_id: Mapped[int] = mapped_column(sa.ForeignKey("members.id"), index=True)
    client_id: Mapped[int | None] = mapped_column(sa.ForeignKey("api_clients.id"))
    store_id: Mapped[str | None] = mapped_column(sa.ForeignKey("stores.id"))
    reference: Mapped[str | None] = mapped_column(sa.String(128))  # the basket / order ref
    amount: Mapped[int] = mapped_column(BigInt)
    captured: Mapped[int] = mapped_column(BigInt, default=0)
    status: Mapped[str] = mapped_column(sa.String(16), default=HoldStatus.ACTIVE)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    capture_transaction_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("ledger_transactions.id")
    )
    # The order the capture paid (the capture's `order_id`): its refunds give the points back.
    order_ref: Mapped[str | None] = mapped_column(sa.String(128), index=True)
    returned: Mapped[int] = mapped_column(BigInt, default=0, server_default="0")


class ExpiryNotice(db.Model):
    """One `points.expiring` event per member and expiry day, so reminders go out once."""

    __tablename__ = "points_expiry_notices"
    __table_args__ = (sa.UniqueConstraint("member_id", "expires_at"),)

    id: Mapped[int] = mapped_column(BigInt, primary_key=True)
    member_id: Mapped[int] = mapped_column(sa.ForeignKey("members.id"))
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    points: Mapped[int] = mapped_column(BigInt)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class LedgerNote(db.Model):
    """Free text about a transaction (an adjustment's reason), kept out of the ledger.

    Support writes whatever explains a correction ("goodwill: Jane Doe called about..."),
    so the text may be personal data. The ledger is append-only and must stay so; this
    table is not, so erasing the member blanks the text and leaves the transaction intact.
    """

    __tablename__ = "ledger_notes"

    transaction_id: Mapped[int] = mapped_column(
        BigInt, sa.ForeignKey("ledger_transactions.id"), primary_key=True
    )
    member_id: Mapped[int] = mapped_column(BigInt, index=True)
    text: Mapped[str | None] = mapped_column(sa.String(500))  # None once erased
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    erased_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


APPEND_ONLY_TABLES = ("ledger_transactions", "ledger_entries")

_PG_FUNCTION = sa.DDL(
    """
    CREATE OR REPLACE FUNCTION omniloyal_refuse_change() RETURNS trigger AS $$
    BEGIN
        RAISE EXCEPTION 'ledger table %% is append-only', TG_TABLE_NAME
            USING ERRCODE = 'restrict_violation';
    END;
    $$ LANGUAGE plpgsql
    """
)


def append_only_ddl(table: str, dialect: str) -> list[str]:
    """The statements that make `table` refuse UPDATE and DELETE (used by migrations too)."""
    if dialect == "postgresql":
        return [
            f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
            "FOR EACH ROW EXECUTE FUNCTION omniloyal_refuse_change()"
        ]
    return [
        f"CREATE TRIGGER {table}_no_update BEFORE UPDATE ON {table} "
        f"BEGIN SELECT RAISE(ABORT, 'ledger table {table} is append-only'); END",
        f"CREATE TRIGGER {table}_no_delete BEFORE DELETE ON {table} "
        f"BEGIN SELECT RAISE(ABORT, 'ledger table {table} is append-only'); END",
    ]


def _install_append_only(target: sa.Table, connection: sa.Connection, **_: Any) -> None:
    dialect = connection.dialect.name
    if dialect == "postgresql":
        connection.execute(_PG_FUNCTION)
    for statement in append_only_ddl(target.name, dialect):
        connection.exec_driver_sql(statement)


def make_append_only(table: sa.Table) -> None:
    """`table` refuses UPDATE and DELETE from the moment create_all makes it (a migration
    adding such a table runs append_only_ddl itself)."""
    sa.event.listen(table, "after_create", _install_append_only)


for _model in (LedgerTransaction, LedgerEntry):
    make_append_only(_model.__table__)


def program_account_rows() -> list[dict[str, Any]]:
    """The program accounts every database has from its creation (migrations insert them too).

    They exist before any request runs, so their ids can be cached safely: an account created
    lazily inside a request could be rolled back after its id was cached.
    """
    return [
        {"kind": AccountKind.PROGRAM.value, "code": code.value, "balance": 0, "held": 0}
        for code in ProgramAccount
    ]


def _insert_program_accounts(target: sa.Table, connection: sa.Connection, **_: Any) -> None:
    connection.execute(target.insert(), program_account_rows())


sa.event.listen(LedgerAccount.__table__, "after_create", _insert_program_accounts)
