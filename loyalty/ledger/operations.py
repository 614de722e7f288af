"""Ledger operations: the only code that moves points.

Locking discipline (docs/architecture.md, "Lock order"): every operation that changes a
member's accounts, lots or holds first locks the member row and then that member's three
accounts (`SELECT ... FOR UPDATE`); operations on several members (merges, batch chunks)
lock them in id order. Two operations on one member therefore run one after the other;
operations on different members never wait on each other (program accounts keep no
running balance, see models).

Operations flush, never commit: the request or job edge commits once.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import cache
from typing import Any

import sqlalchemy as sa
from flask import current_app
from sqlalchemy.dialects import postgresql
from sqlalchemy.orm.attributes import set_committed_value

from loyalty import outbox
from loyalty.batches import BatchCursor
from loyalty.db import (
    as_persistent,
    constant,
    db,
    insert_persistent,
    is_postgres,
    json_rows,
    plain_insert,
    upsert_insert,
)
from loyalty.errors import Conflict, InsufficientPoints, InvalidInput, MemberNotActive, NotFound
from loyalty.ledger.models import (
    AccountKind,
    ExpiryNotice,
    HoldStatus,
    LedgerAccount,
    LedgerEntry,
    LedgerTransaction,
    LotStatus,
    PointHold,
    PointLot,
    ProgramAccount,
    TransactionKind,
)
from loyalty.ledger.notes import add_note
from loyalty.ledger.policy import ExpiryPolicy, ReturnPolicy
from loyalty.members.models import Member, MemberStatus
from loyalty.members.resolution import lock_current_member

MAX_POINTS_PER_MOVE = 10**12  # far above any real basket; keeps sums well inside BIGINT


@dataclass(frozen=True)
class Cause:
    """Why points moved: ("order", "<order id>"), ("adjustment", "..."), ("event", "signup")."""

    type: str
    ref: str


@dataclass
class MemberAccounts:
    member_id: int  # whose accounts: the member the id given to the lock belongs to now
    points: LedgerAccount
    pending: LedgerAccount
    debt: LedgerAccount


@dataclass(frozen=True)
class Balance:
    member_id: int
    balance: int  # points + debt (negative only after a claw-back)
    available: int  # spendable now: points - held
    pending: int
    held: int
    debt: int  # <= 0


@dataclass(frozen=True)
class ReversalResult:
    transaction: LedgerTransaction | None
    revoked_pending: int
    revoked_available: int
    clawed_back: int  # recorded as debt
    forgiven: int  # not taken back because of the return policy
    already_expired: int = 0  # not taken back: the cause's own points had expired
    voided_hold_ids: list[int] = field(default_factory=list)  # holds voided to take points


# --- accounts -------------------------------------------------------------------------------

_program_account_ids: dict[tuple[str, str], int] = {}


def program_account_id(code: ProgramAccount) -> int:
    """The id of a program account (created with the schema), cached per database."""
    cache_key = (str(db.engine.url), code.value)
    if cache_key not in _program_account_ids:
        account_id = db.session.scalar(
            sa.select(LedgerAccount.id).where(LedgerAccount.code == code.value)
        )
        if account_id is None:
            raise RuntimeError(
                f"program account {code.value!r} is missing: run `omniloyal db upgrade`"
            )
        _program_account_ids[cache_key] = account_id
    return _program_account_ids[cache_key]


def forget_program_accounts() -> None:
    """Tests that wipe the database call this so ids are looked up again."""
    _program_account_ids.clear()


def open_member_accounts(member_id: int) -> None:
    db.session.add_all(
        LedgerAccount(member_id=member_id, kind=kind.value, balance=0, held=0)
        for kind in (AccountKind.MEMBER_POINTS, AccountKind.MEMBER_PENDING, AccountKind.MEMBER_DEBT)
    )
    db.session.flush()


def lock_member_accounts(
    member_id: int, *, require_active: bool = True, member_locked: bool = False
) -> MemberAccounts:
    """Lock the member row, then its accounts: the one lock order every operation uses.

    Merges are followed, and resolved again under the row lock: a merge that commits
    between the caller's lookup and this lock moves the write to the survivor (the merge
    rule, loyalty.members.resolution). Callers post under `accounts.member_id`, never
    under the id they passed.
    Profile changes, tier changes and merges lock the member row too, so taking it first
    here means no two operations can ever wait on each other in opposite orders.
    FOR NO KEY UPDATE (key_share): rows inserted elsewhere that reference the member (orders,
    entries) take KEY SHARE locks, which a plain FOR UPDATE would deadlock against.
    `member_locked`: the caller already holds the member row's lock (taken the same way, in
    this transaction, with no other lock before it) and checked the member's status.
    """
    if not member_locked:
        member = lock_current_member(member_id)
        if require_active and member.status != MemberStatus.ACTIVE:
            raise MemberNotActive(f"member {member.id} is {member.status}")
        member_id = member.id
    rows = db.session.scalars(_lock_accounts_statement(), {"member_id": member_id}).all()
    by_kind = {row.kind: row for row in rows}
    return MemberAccounts(
        member_id=member_id,
        points=by_kind[AccountKind.MEMBER_POINTS],
        pending=by_kind[AccountKind.MEMBER_PENDING],
        debt=by_kind[AccountKind.MEMBER_DEBT],
    )


@cache
def _lock_accounts_statement() -> sa.Select[Any]:
    """Built once: every ledger write runs it."""
    return (
        sa.select(LedgerAccount)
        .where(LedgerAccount.member_id == sa.bindparam("member_id"))
        .order_by(LedgerAccount.id)
        .with_for_update(key_share=True)
        .execution_options(populate_existing=True)
    )


@cache
def _balance_query(follow_merges: bool) -> sa.Select[Any]:
    """Built once: the member app's most frequent call runs it (Core columns: no ORM
    result handling)."""
    accounts = LedgerAccount.__table__.c
    owner: Any = sa.bindparam("member_id")
    if follow_merges:
        members = Member.__table__.c
        owner = (
            sa.select(sa.func.coalesce(members.merged_into_id, members.id))
            .where(members.id == owner)
            .scalar_subquery()
        )
    return sa.select(accounts.member_id, accounts.kind, accounts.balance, accounts.held).where(
        accounts.member_id == owner
    )


def member_balance(
    member_id: int, *, standalone: bool = False, follow_merges: bool = False
) -> Balance:
    """The member's balances, from their three accounts in one SELECT.

    `standalone`: the caller reads nothing else in this transaction (GET /me/balance). On
    PostgreSQL the SELECT then runs in autocommit: one round trip instead of BEGIN, SELECT,
    ROLLBACK, and one statement sees one consistent snapshot of the three rows anyway.
    `follow_merges`: the balance of the person `member_id` belongs to now (the merge rule),
    resolved inside the same statement (a merged member's token reads the survivor's).
    """
    if standalone and db.engine.dialect.name == "postgresql" and not db.session().in_transaction():
        db.session.connection(execution_options={"isolation_level": "AUTOCOMMIT"})
    rows = db.session.execute(_balance_query(follow_merges), {"member_id": member_id}).all()
    if not rows:
        raise NotFound(f"no member {member_id}")
    by_kind = {kind: (balance, held) for _, kind, balance, held in rows}
    points, held = by_kind[AccountKind.MEMBER_POINTS]
    debt = by_kind[AccountKind.MEMBER_DEBT][0]
    return Balance(
        member_id=rows[0][0],
        balance=points + debt,
        available=points - held,
        pending=by_kind[AccountKind.MEMBER_PENDING][0],
        held=held,
        debt=debt,
    )


# --- posting --------------------------------------------------------------------------------


def _settings() -> Any:
    return current_app.extensions["omniloyal.settings"]


def _check_amount(amount: int) -> None:
    if not isinstance(amount, int) or isinstance(amount, bool) or amount <= 0:
        raise InvalidInput("points must be a positive whole number")
    if amount > MAX_POINTS_PER_MOVE:
        raise InvalidInput(f"points must be at most {MAX_POINTS_PER_MOVE}")


def _begin(member_id: int, kind: TransactionKind, cause: Cause, **fields: Any) -> LedgerTransaction:
    """Insert a ledger transaction (`fields`: those of `_transaction_values`) and start
    collecting its entries."""
    values = _transaction_values(member_id, kind, cause, **fields)
    return _started(insert_persistent(LedgerTransaction, values))


def _transaction_values(
    member_id: int,
    kind: TransactionKind,
    cause: Cause,
    *,
    amount: int,
    actor: str,
    now: datetime,
    reason: str | None = None,
    details: dict[str, Any] | None = None,
    reverses_id: int | None = None,
) -> dict[str, Any]:
    return {
        "member_id": member_id,
        "kind": kind.value,
        "cause_type": cause.type,
        "cause_ref": cause.ref,
        "amount": amount,
        "actor": actor,
        "reason": reason,
        "details": details or {},
        "reverses_id": reverses_id,
        "created_at": now,
    }


def _started(tx: LedgerTransaction) -> LedgerTransaction:
    tx._unsent_entries = []  # type: ignore[attr-defined]  # see _move and _finish
    tx._touched_accounts = {}  # type: ignore[attr-defined]  # see _shift and _finish
    return tx


def _begin_with_lot(
    member_id: int,
    kind: TransactionKind,
    cause: Cause,
    *,
    amount: int,
    actor: str,
    now: datetime,
    details: dict[str, Any] | None,
    status: LotStatus,
    expires_at: datetime | None,
    available_at: datetime | None = None,
) -> tuple[LedgerTransaction, PointLot]:
    """`_begin` and then `_new_lot` of the whole amount (an earning): on PostgreSQL one
    statement, the lot's INSERT with the transaction's as a CTE."""
    if not is_postgres():
        tx = _begin(member_id, kind, cause, amount=amount, actor=actor, now=now, details=details)
        lot = _new_lot(
            member_id,
            tx,
            amount,
            status=status,
            now=now,
            expires_at=expires_at,
            available_at=available_at,
        )
        return tx, lot
    tx_values = _transaction_values(
        member_id, kind, cause, amount=amount, actor=actor, now=now, details=details
    )
    lot_values = _lot_values(member_id, amount, status, now, expires_at, available_at, cause)
    lot_id, tx_id = db.session.execute(
        _begin_with_lot_statement(),
        {
            **{f"tx_{name}": value for name, value in tx_values.items()},
            **{f"lot_{name}": value for name, value in lot_values.items()},
        },
    ).one()
    tx = _started(as_persistent(LedgerTransaction, tx_id, tx_values))
    return tx, as_persistent(PointLot, lot_id, {**lot_values, "source_transaction_id": tx_id})


@cache
def _begin_with_lot_statement() -> sa.Insert:
    transactions, lots = LedgerTransaction.__table__, PointLot.__table__
    tx_columns = [c for c in transactions.c if c.name != "id"]
    new_tx = (
        sa.insert(transactions)
        .values({c.name: sa.bindparam(f"tx_{c.name}", type_=c.type) for c in tx_columns})
        .returning(transactions.c.id)
        .cte("new_tx")
    )
    lot_columns = [c for c in lots.c if c.name not in {"id", "source_transaction_id"}]
    row = sa.select(
        *(sa.bindparam(f"lot_{c.name}", type_=c.type) for c in lot_columns), new_tx.c.id
    )
    return (
        sa.insert(lots)
        .from_select([*(c.name for c in lot_columns), "source_transaction_id"], row)
        .returning(lots.c.id, lots.c.source_transaction_id)
        .add_cte(new_tx)
    )


def _move(
    tx: LedgerTransaction,
    source: LedgerAccount | int,
    target: LedgerAccount | int,
    amount: int,
    *,
    lot_id: int | None = None,
) -> None:
    """One balanced entry; keeps member account balances in step (program ones are sums).

    The entry is inserted by `_finish`, with the transaction's other entries in one go.
    """
    source_id = source if isinstance(source, int) else source.id
    target_id = target if isinstance(target, int) else target.id
    tx._unsent_entries.append(  # type: ignore[attr-defined]
        {
            "transaction_id": tx.id,
            "from_account_id": source_id,
            "to_account_id": target_id,
            "amount": amount,
            "lot_id": lot_id,
            "created_at": tx.created_at,
        }
    )
    if isinstance(source, LedgerAccount):
        _shift(tx, source, -amount)
    if isinstance(target, LedgerAccount):
        _shift(tx, target, amount)


def _shift(tx: LedgerTransaction, account: LedgerAccount, delta: int) -> None:
    """Change a (locked) member account's balance; `_finish` writes it with one Core UPDATE
    per account, and the ORM object already holds the new value (no unit-of-work flush)."""
    set_committed_value(account, "balance", account.balance + delta)
    tx._touched_accounts[account.id] = account  # type: ignore[attr-defined]


@cache
def _set_balance_statement() -> sa.Update:
    table = LedgerAccount.__table__
    return (
        sa.update(table)
        .where(table.c.id == sa.bindparam("account_id"))
        .values(balance=sa.bindparam("new_balance"))
    )


def _new_lot(
    member_id: int,
    tx: LedgerTransaction,
    amount: int,
    *,
    status: LotStatus,
    now: datetime,
    expires_at: datetime | None,
    available_at: datetime | None = None,
) -> PointLot:
    values = _lot_values(member_id, amount, status, now, expires_at, available_at, _cause_of(tx))
    return insert_persistent(PointLot, {**values, "source_transaction_id": tx.id})


def _cause_of(tx: LedgerTransaction) -> Cause:
    return Cause(tx.cause_type, tx.cause_ref)


def _lot_values(
    member_id: int,
    amount: int,
    status: LotStatus,
    now: datetime,
    expires_at: datetime | None,
    available_at: datetime | None,
    cause: Cause,
) -> dict[str, Any]:
    """A new lot's columns but its transaction (`source_transaction_id`)."""
    return {
        "member_id": member_id,
        "status": status.value,
        "amount": amount,
        "remaining": amount,
        "earned_at": now,
        "available_at": available_at,
        "expires_at": expires_at,
        "cause_type": cause.type,
        "cause_ref": cause.ref,
        "expired_points": 0,
        "reversed_points": 0,
    }


def _credit_available(
    accounts: MemberAccounts,
    tx: LedgerTransaction,
    source: LedgerAccount | int,
    amount: int,
    *,
    now: datetime,
    expires_at: datetime | None,
) -> None:
    """Credit spendable points, repaying any recorded debt first."""
    repay = min(amount, -accounts.debt.balance)
    if repay:
        _move(tx, source, accounts.debt, repay)
    rest = amount - repay
    if rest:
        lot = _new_lot(
            tx.member_id, tx, rest, status=LotStatus.AVAILABLE, now=now, expires_at=expires_at
        )
        _move(tx, source, accounts.points, rest, lot_id=lot.id)


def _open_lots(
    member_id: int, status: LotStatus, *, cause_ref: str | None = None
) -> list[PointLot]:
    """Open lots, soonest expiry first (never-expiring last); the order lots are consumed in."""
    query = sa.select(PointLot).where(
        PointLot.member_id == member_id, PointLot.status == status.value
    )
    if cause_ref is not None:
        query = query.where(PointLot.cause_ref == cause_ref)
    query = query.order_by(
        PointLot.expires_at.is_(None), PointLot.expires_at, PointLot.id
    ).execution_options(populate_existing=True)
    return list(db.session.scalars(query))


def _take_from_lots(
    tx: LedgerTransaction,
    lots: Iterable[PointLot],
    source: LedgerAccount,
    target: LedgerAccount | int,
    amount: int,
    *,
    tally: str | None = None,
) -> int:
    """Move up to `amount` out of `lots` (in order); returns how much was moved.

    `tally` ("expired" or "reversed"): also count the points on the lot's
    `<tally>_points`, so later refunds know how its points left it.
    """
    left = amount
    for lot in lots:
        if left == 0:
            break
        take = min(lot.remaining, left)
        if take == 0:
            continue
        lot.remaining -= take
        if tally is not None:
            column = f"{tally}_points"
            setattr(lot, column, getattr(lot, column) + take)
        if lot.remaining == 0:
            lot.status = LotStatus.CLOSED.value
        _move(tx, source, target, take, lot_id=lot.id)
        left -= take
    return amount - left


def _finish(tx: LedgerTransaction, topic: str, now: datetime, **payload: Any) -> None:
    """Insert the entries, write the touched balances and record the domain event (the
    amount was set at _begin). On PostgreSQL the three are one statement (see
    `_finish_statement`); elsewhere three."""
    entries = tx._unsent_entries  # type: ignore[attr-defined]
    touched = tx._touched_accounts  # type: ignore[attr-defined]
    db.session.flush()  # lots changed through the ORM (spending) before their entries
    event = outbox.event_parameters(
        topic,
        tx.member_id,
        {
            "transaction_id": tx.id,
            "points": tx.amount,
            "kind": tx.kind,
            "cause": {"type": tx.cause_type, "ref": tx.cause_ref},
            **payload,
        },
        now,
    )
    balances = [{"account_id": a.id, "new_balance": a.balance} for a in touched.values()]
    if is_postgres():
        db.session.execute(
            _finish_statement(),
            {
                "entries": [{name: e[name] for name in _ENTRY_COLUMNS} for e in entries],
                "entries_created_at": tx.created_at,
                "account_id": [b["account_id"] for b in balances],
                "new_balance": [b["new_balance"] for b in balances],
                **event,
            },
        )
    else:
        if entries:
            db.session.execute(plain_insert(LedgerEntry.__table__), entries)
        if balances:
            db.session.execute(_set_balance_statement(), balances)
        db.session.execute(outbox.event_insert(), event)
    entries.clear()
    touched.clear()


# The columns of an entry as `_move` collects it, but its time (the transaction's).
_ENTRY_COLUMNS = (
    "transaction_id",
    "from_account_id",
    "to_account_id",
    "amount",
    "lot_id",
)


@cache
def _finish_statement() -> sa.Insert:
    """PostgreSQL: a posting's entries, its balances and its event in one round trip (the
    event's INSERT with the other two as CTEs, the entries one JSON parameter (`json_rows`),
    the balances two arrays: the SQL is the same for any number of entries, so it is
    prepared once per connection). Every posting runs it."""
    entries_table, accounts = LedgerEntry.__table__, LedgerAccount.__table__
    rows = json_rows("entries", {name: entries_table.c[name].type for name in _ENTRY_COLUMNS})
    created_at = sa.bindparam("entries_created_at", type_=entries_table.c.created_at.type)
    insert_entries = (
        sa.insert(entries_table)
        .from_select([*_ENTRY_COLUMNS, "created_at"], sa.select(rows, created_at))
        .cte("entries")
    )
    # The balances are arrays, not JSON: PostgreSQL knows how many rows unnest gives, so it
    # joins them to the accounts by primary key. jsonb_to_recordset counts as 100 rows, and
    # against a few thousand accounts that plan is a sequential scan.
    new = (
        sa.func.unnest(
            sa.bindparam("account_id", type_=postgresql.ARRAY(accounts.c.id.type)),
            sa.bindparam("new_balance", type_=postgresql.ARRAY(accounts.c.balance.type)),
        )
        .table_valued("id", "balance")
        .render_derived()
    )
    set_balances = (
        sa.update(accounts)
        .where(accounts.c.id == new.c.id)
        .values(balance=new.c.balance)
        .cte("balances")
    )
    return outbox.event_insert().add_cte(insert_entries, set_balances)


# --- earning and spending -------------------------------------------------------------------


def earn_points(
    member_id: int,
    amount: int,
    cause: Cause,
    *,
    now: datetime,
    actor: str,
    pending_until: datetime | None = None,
    expires_at: datetime | None = None,
    policy: ExpiryPolicy | None = None,
    details: dict[str, Any] | None = None,
    source: ProgramAccount = ProgramAccount.ISSUED,
    kind: TransactionKind = TransactionKind.EARN,
    member_locked: bool = False,
) -> LedgerTransaction:
    """Credit points from the program. Pending until `pending_until` when it is in the future.

    The lot expires at `expires_at`, or by `policy` (default: the configured policy).
    `member_locked`: see lock_member_accounts.
    """
    _check_amount(amount)
    accounts = lock_member_accounts(member_id, member_locked=member_locked)
    member_id = accounts.member_id
    if expires_at is None:
        expires_at = (policy or _settings().points_expiry).expires_at(now)
    source_id = program_account_id(source)
    pending = pending_until is not None and pending_until > now
    if pending or accounts.debt.balance == 0:  # the whole amount goes into one new lot
        tx, lot = _begin_with_lot(
            member_id,
            kind,
            cause,
            amount=amount,
            actor=actor,
            now=now,
            details=details,
            status=LotStatus.PENDING if pending else LotStatus.AVAILABLE,
            expires_at=expires_at,
            available_at=pending_until if pending else None,
        )
        target = accounts.pending if pending else accounts.points
        _move(tx, source_id, target, amount, lot_id=lot.id)
    else:  # recorded debt is repaid first
        tx = _begin(member_id, kind, cause, amount=amount, actor=actor, now=now, details=details)
        _credit_available(accounts, tx, source_id, amount, now=now, expires_at=expires_at)
    extra = {"pending_until": pending_until.isoformat()} if pending_until and pending else {}
    _finish(tx, "points.earned", now, **extra)
    return tx


def burn_points(
    member_id: int,
    amount: int,
    cause: Cause,
    *,
    now: datetime,
    actor: str,
    details: dict[str, Any] | None = None,
) -> LedgerTransaction:
    """Spend available points, consuming the soonest-expiring lots first."""
    _check_amount(amount)
    accounts = lock_member_accounts(member_id)
    member_id = accounts.member_id
    available = accounts.points.balance - accounts.points.held
    if amount > available:
        raise InsufficientPoints(
            f"{amount} points requested, {available} available", available=available
        )
    tx = _begin(
        member_id,
        TransactionKind.BURN,
        cause,
        amount=-amount,
        actor=actor,
        now=now,
        details=details,
    )
    lots = _open_lots(member_id, LotStatus.AVAILABLE)
    _take_from_lots(tx, lots, accounts.points, program_account_id(ProgramAccount.REDEEMED), amount)
    _finish(tx, "points.burned", now)
    return tx


def reverse_burn(
    burn_transaction_id: int, cause: Cause, *, now: datetime, actor: str
) -> LedgerTransaction:
    """Give back the points of a burn (e.g. a returned reward), each with its lot's expiry.

    A burn is reversed at most once: a second attempt raises Conflict (the database's
    unique index on `reverses_id` decides a race).
    """
    burn = db.session.get(LedgerTransaction, burn_transaction_id)
    if burn is None or burn.kind != TransactionKind.BURN:
        raise NotFound(f"no burn transaction {burn_transaction_id}")
    # The burn's member may have been merged since: the points go back to the person now.
    accounts = lock_member_accounts(burn.member_id, require_active=False)
    already = db.session.scalar(
        sa.select(LedgerTransaction.id).where(LedgerTransaction.reverses_id == burn.id)
    )
    if already is not None:
        raise Conflict(f"burn {burn.id} was already reversed by transaction {already}")
    tx = _begin(
        accounts.member_id,
        TransactionKind.REVERSE_BURN,
        cause,
        amount=-burn.amount,
        actor=actor,
        now=now,
        reverses_id=burn.id,
    )
    consumed = db.session.execute(
        sa.select(LedgerEntry.amount, PointLot.expires_at)
        .join(PointLot, PointLot.id == LedgerEntry.lot_id)
        .where(LedgerEntry.transaction_id == burn.id)
        .order_by(LedgerEntry.id)
    ).all()
    redeemed = program_account_id(ProgramAccount.REDEEMED)
    for amount, expires_at in consumed:
        _credit_available(accounts, tx, redeemed, amount, now=now, expires_at=expires_at)
    _finish(tx, "points.burn_reversed", now, reverses=burn.id)
    return tx


def adjust_points(
    member_id: int, delta: int, *, reason: str, actor: str, now: datetime, reference: str
) -> LedgerTransaction:
    """Support's correction, with a reason: a credit makes a new lot, a debit consumes lots."""
    if not reason.strip():
        raise InvalidInput("an adjustment needs a reason")
    _check_amount(abs(delta))
    cause = Cause("adjustment", reference)
    accounts = lock_member_accounts(member_id, require_active=False)
    member_id = accounts.member_id
    adjustments = program_account_id(ProgramAccount.ADJUSTMENTS)
    # The reason is free text that may name the member: a note beside the append-only
    # ledger (loyalty.ledger.notes), which erasure can blank; never the transaction row.
    tx = _begin(member_id, TransactionKind.ADJUST, cause, amount=delta, actor=actor, now=now)
    add_note(tx, reason, now=now)
    if delta > 0:
        expires_at = _settings().points_expiry.expires_at(now)
        _credit_available(accounts, tx, adjustments, delta, now=now, expires_at=expires_at)
    else:
        available = accounts.points.balance - accounts.points.held
        if -delta > available:
            raise InsufficientPoints(
                f"cannot remove {-delta} points, {available} available", available=available
            )
        lots = _open_lots(member_id, LotStatus.AVAILABLE)
        _take_from_lots(tx, lots, accounts.points, adjustments, -delta)
    # The reason is free text (it may name the member): it stays on the transaction only.
    _finish(tx, "points.adjusted", now)
    return tx


def reverse_earned(
    member_id: int,
    points: int,
    cause: Cause,
    *,
    earned_by: str,
    policy: ReturnPolicy,
    now: datetime,
    actor: str,
    earned: int | None = None,
    reversed_before: int = 0,
) -> ReversalResult:
    """Take back `points` earned by `earned_by` (a lot cause ref, e.g. the order).

    `earned`: what the cause earned in all (default: its lots' amounts); `reversed_before`:
    what earlier reversals of the same cause already counted (the order's points_reversed).

    1. The cause's own lots go first: its pending points, then (unless pending-only) its
       available points.
    2. What they no longer hold either expired or was spent. Expired points are never
       taken a second time: they count first, as `already_expired`. Only the spent part
       (`earned` - what the lots still hold, expired or lost to reversals) is left to the
       return policy, across all reversals of the cause: pending-only forgives it,
       cap-at-zero takes it from other lots as far as the balance goes and forgives the
       rest, claw-back records the rest as debt.
    3. Points under an active hold are takeable (cap-at-zero, claw-back): when the balance
       less holds can't cover what is taken, the newest holds are voided whole until it can.

    Always writes one REVERSE transaction (also of 0 points, with no entries, when nothing
    could be taken), whose `details` name the whole reversal (`reversed_points`, what tier
    qualification drops by, whatever part of it the balance could pay) and what the return
    policy forgave (`forgiven`).
    """
    if points <= 0:
        return ReversalResult(None, 0, 0, 0, 0)
    accounts = lock_member_accounts(member_id, require_active=False)
    member_id = accounts.member_id  # the person now (merges followed under the lock)
    own = _cause_lots(earned_by)
    pending_lots = [
        lot for lot in own if lot.member_id == member_id and lot.status == LotStatus.PENDING
    ]
    available_lots = [
        lot for lot in own if lot.member_id == member_id and lot.status == LotStatus.AVAILABLE
    ]
    in_pending = sum(lot.remaining for lot in pending_lots)
    in_available = sum(lot.remaining for lot in available_lots)
    expired = sum(lot.expired_points for lot in own)
    own_reversed = sum(lot.reversed_points for lot in own)
    if earned is None:
        earned = sum(lot.amount for lot in own)
    spent = max(0, earned - in_pending - in_available - expired - own_reversed)
    # Earlier reversals' part not taken from the cause's own lots: counted against the
    # expired points first, then against the spent ones. Once a reversal reaches past the
    # own lots they are empty, so `expired` and `spent` no longer change.
    beyond_before = max(0, reversed_before - own_reversed)
    expired_before = min(expired, beyond_before)
    spent_before = beyond_before - expired_before

    from_pending = min(points, in_pending)
    left = points - from_pending
    from_own = min(left, in_available) if policy != ReturnPolicy.PENDING_ONLY else 0
    left -= from_own
    already_expired = min(left, expired - expired_before)
    left -= already_expired
    by_policy = min(left, max(0, spent - spent_before))
    forgiven = left - by_policy  # more than the cause could ever owe: never taken
    from_others = clawed = 0
    if policy == ReturnPolicy.PENDING_ONLY:
        forgiven += by_policy
    else:
        from_others = min(by_policy, accounts.points.balance - from_own)
        if policy == ReturnPolicy.CLAW_BACK:
            clawed = by_policy - from_others
        else:
            forgiven += by_policy - from_others
    taken = from_pending + from_own + from_others + clawed
    voided = _void_holds_for(accounts, from_own + from_others, now)
    tx = _begin(
        member_id,
        TransactionKind.REVERSE,
        cause,
        amount=-taken,
        actor=actor,
        now=now,
        details={
            "earned_by": earned_by,
            "policy": policy.value,
            "reversed_points": points,
            "forgiven": forgiven,
            **({"voided_hold_ids": voided} if voided else {}),
        },
    )
    issued = program_account_id(ProgramAccount.ISSUED)
    _take_from_lots(tx, pending_lots, accounts.pending, issued, from_pending, tally="reversed")
    _take_from_lots(tx, available_lots, accounts.points, issued, from_own, tally="reversed")
    if from_others:
        others = [lot for lot in _open_lots(member_id, LotStatus.AVAILABLE) if lot not in own]
        _take_from_lots(tx, others, accounts.points, issued, from_others)
    if clawed:
        _move(tx, accounts.debt, issued, clawed)
    _finish(tx, "points.reversed", now, forgiven=forgiven, already_expired=already_expired)
    return ReversalResult(
        tx, from_pending, from_own + from_others, clawed, forgiven, already_expired, voided
    )


def _cause_lots(cause_ref: str) -> list[PointLot]:
    """Every lot a cause earned (open or closed, whoever holds it now), soonest expiry first."""
    return list(
        db.session.scalars(
            sa.select(PointLot)
            .where(PointLot.cause_ref == cause_ref)
            .order_by(PointLot.expires_at.is_(None), PointLot.expires_at, PointLot.id)
            .execution_options(populate_existing=True)
        )
    )


def _void_holds_for(accounts: MemberAccounts, needed: int, now: datetime) -> list[int]:
    """Void active holds, newest first, until `needed` points are free of holds.

    A refund takes back points the member no longer owns; a checkout must not spend them
    after that (nor keep them from the refund). Holds are voided whole, never shrunk: the
    till sees a clear `voided` status and holds again what is still there.
    """
    points = accounts.points
    if needed <= points.balance - points.held:
        return []
    voided = []
    holds = db.session.scalars(
        sa.select(PointHold)
        .where(
            PointHold.member_id == points.member_id,
            PointHold.status == HoldStatus.ACTIVE.value,
        )
        .order_by(PointHold.created_at.desc(), PointHold.id.desc())
        .execution_options(populate_existing=True)
    )
    for hold in holds:
        if needed <= points.balance - points.held:
            break
        _close_hold(hold, accounts, HoldStatus.VOIDED, now)
        voided.append(hold.id)
    db.session.flush()  # `held` drops before the balance does (CHECK held <= balance)
    return voided


# --- pending points and expiry (jobs) --------------------------------------------------------


def _due_member_ids(
    condition: Any, order_by: Any, limit: int, cursor: BatchCursor | None
) -> list[int]:
    """One chunk of members with due lots, in id order (the order they are locked in).

    Due lots are found through the partial index on `order_by` (oldest first), so a chunk
    reads about `limit` index entries however large the table; the lots a chunk closes
    leave the index, so the next chunk starts on new members. Members this run already
    handled and still shows as due (points under a hold) are in `cursor.skip`.
    """
    query = sa.select(PointLot.member_id).where(condition, PointLot.remaining > 0)
    if cursor is not None and cursor.skip:
        query = query.where(PointLot.member_id.not_in(sorted(cursor.skip)))
    rows = db.session.scalars(query.order_by(order_by).limit(limit))
    member_ids = sorted(set(rows))
    if cursor is not None:
        cursor.handled += len(member_ids)
    return member_ids


def release_pending_points(
    now: datetime, *, limit_members: int = 500, cursor: BatchCursor | None = None
) -> int:
    """Pending lots whose return window has passed become available. Returns points released.

    One chunk of at most `limit_members` members (locked in id order); the batch job runs
    chunks until none is due (see loyalty/batches.py).
    """
    # ix_point_lots_pending: the status is written into the SQL so any plan can use it.
    due = sa.and_(PointLot.status == constant(LotStatus.PENDING), PointLot.available_at <= now)
    released = 0
    for member_id in _due_member_ids(due, PointLot.available_at, limit_members, cursor):
        accounts = lock_member_accounts(member_id, require_active=False)
        member_id = accounts.member_id
        lots = [lot for lot in _open_lots(member_id, LotStatus.PENDING) if lot.available_at <= now]
        if not lots:
            continue
        tx = _begin(
            member_id,
            TransactionKind.RELEASE,
            Cause("release", "pending-window"),
            amount=0,
            actor="system",
            now=now,
        )
        for lot in lots:
            repay = min(lot.remaining, -accounts.debt.balance)
            if repay:
                lot.remaining -= repay
                _move(tx, accounts.pending, accounts.debt, repay, lot_id=lot.id)
            if lot.remaining:
                _move(tx, accounts.pending, accounts.points, lot.remaining, lot_id=lot.id)
                lot.status = LotStatus.AVAILABLE.value
            else:
                lot.status = LotStatus.CLOSED.value
            released += repay + lot.remaining
        _finish(tx, "points.released", now)
    return released


def expire_points(
    now: datetime, *, limit_members: int = 500, cursor: BatchCursor | None = None
) -> int:
    """Expire the remainders of due lots through ledger entries. Returns points expired.

    Points under an active hold are not expired until the hold ends. Held points are the
    soonest-expiring ones, the very points a capture would spend (captures, like every
    burn, consume the soonest-expiring lots first), so the first `held` points of the due
    lots are skipped and only the rest expire. Whether this job runs before or after the
    capture or release, the books end the same: a capture spends the shielded points, a
    release leaves them to expire on the next run.
    One chunk of at most `limit_members` members (locked in id order); the batch job runs
    chunks until none is due (see loyalty/batches.py).
    """
    due = sa.and_(  # ix_point_lots_expiry
        PointLot.status == constant(LotStatus.AVAILABLE),
        PointLot.expires_at.is_not(None),
        PointLot.expires_at <= now,
    )
    expired_total = 0
    expired_account = program_account_id(ProgramAccount.EXPIRED)
    for member_id in _due_member_ids(due, PointLot.expires_at, limit_members, cursor):
        accounts = lock_member_accounts(member_id, require_active=False)
        member_id = accounts.member_id
        lots = [
            lot
            for lot in _open_lots(member_id, LotStatus.AVAILABLE)
            if lot.expires_at is not None and lot.expires_at <= now
        ]
        expirable = sum(lot.remaining for lot in lots) - accounts.points.held
        if cursor is not None and expirable < sum(lot.remaining for lot in lots):
            cursor.skip.add(member_id)  # still due after this run: held points wait
        if expirable <= 0:
            continue
        tx = _begin(
            member_id,
            TransactionKind.EXPIRE,
            Cause("expiry", now.date().isoformat()),
            amount=-expirable,
            actor="system",
            now=now,
        )
        # From the latest-expiring due lots back: the soonest ones are those under the hold.
        _take_from_lots(
            tx, reversed(lots), accounts.points, expired_account, expirable, tally="expired"
        )
        _finish(tx, "points.expired", now)
        expired_total += expirable
    return expired_total


def announce_expiring_points(
    now: datetime, *, within_days: int = 30, limit: int = 5000, cursor: BatchCursor | None = None
) -> int:
    """Emit `points.expiring` once per member and expiry instant within the horizon.

    Notifications consume the event (reminding members is what makes expiry fair); the
    notice table's unique key makes a rerun, or two workers at once, announce nothing twice.
    Points under an active hold don't expire while held, so they are not announced: the
    event's `points` leaves them out (and says them as `held`), and an instant whose points
    are all held is left for a later run (no notice yet; the member is skipped for the rest
    of this one). Returns how many events were emitted. One chunk of at most `limit`
    (member, instant) pairs in member id order; with a `cursor` the next chunk goes on from
    the last member.
    """
    horizon = now + timedelta(days=within_days)
    already = sa.select(ExpiryNotice.id).where(
        ExpiryNotice.member_id == PointLot.member_id, ExpiryNotice.expires_at == PointLot.expires_at
    )
    after_id = cursor.after_id if cursor is not None else 0
    query = (
        sa.select(PointLot.member_id, PointLot.expires_at, sa.func.sum(PointLot.remaining))
        .where(
            PointLot.member_id >= after_id,  # >=: the last chunk may have cut a member short
            PointLot.status == constant(LotStatus.AVAILABLE),  # ix_point_lots_expiry
            PointLot.expires_at.is_not(None),
            PointLot.expires_at > now,
            PointLot.expires_at <= horizon,
            ~already.exists(),
        )
        .group_by(PointLot.member_id, PointLot.expires_at)
        .order_by(PointLot.member_id, PointLot.expires_at)
        .limit(limit)
    )
    if cursor is not None and cursor.skip:
        query = query.where(PointLot.member_id.not_in(sorted(cursor.skip)))
    rows = db.session.execute(query).all()
    if cursor is not None and rows:
        cursor.handled += len(rows)
        cursor.after_id = rows[-1][0]
    held = _held_due(sorted({row[0] for row in rows}), horizon)
    table = ExpiryNotice.__table__
    emitted = 0
    for member_id, expires_at, points in rows:
        shielded = held.get((member_id, expires_at), 0)
        points = int(points) - shielded
        if points <= 0:
            if cursor is not None:
                cursor.skip.add(member_id)  # all held: announced once the hold ends
            continue
        inserted = db.session.execute(
            upsert_insert(table)
            .values(member_id=member_id, expires_at=expires_at, points=points, created_at=now)
            .on_conflict_do_nothing(index_elements=["member_id", "expires_at"])
            .returning(table.c.id)
        ).scalar()
        if inserted is None:
            continue
        outbox.emit(
            "points.expiring",
            member_id=member_id,
            payload={"points": points, "held": shielded, "expires_at": expires_at.isoformat()},
            now=now,
        )
        emitted += 1
    return emitted


def _held_due(member_ids: list[int], horizon: datetime) -> dict[tuple[int, datetime], int]:
    """{(member, expiry instant): points under a hold} for the members with active holds:
    the first `held` points of their lots in expiry order (overdue lots kept alive by the
    hold and instants already announced included). Members without holds cost one read."""
    if not member_ids:
        return {}
    holding = dict(
        db.session.execute(
            sa.select(LedgerAccount.member_id, LedgerAccount.held).where(
                LedgerAccount.member_id.in_(member_ids),
                LedgerAccount.kind == AccountKind.MEMBER_POINTS.value,
                LedgerAccount.held > 0,
            )
        ).all()
    )
    shares: dict[tuple[int, datetime], int] = {}
    for member_id, held in holding.items():
        buckets = db.session.execute(
            sa.select(PointLot.expires_at, sa.func.sum(PointLot.remaining))
            .where(
                PointLot.member_id == member_id,
                PointLot.status == constant(LotStatus.AVAILABLE),
                PointLot.expires_at.is_not(None),
                PointLot.expires_at <= horizon,
            )
            .group_by(PointLot.expires_at)
            .order_by(PointLot.expires_at)
        ).all()
        found = [(at, int(n or 0)) for at, n in buckets]
        for (at, _), share in zip(found, held_shares(found, held), strict=True):
            if share:
                shares[(member_id, at)] = share
    return shares


def held_shares(buckets: Sequence[tuple[Any, int]], held: int) -> list[int]:
    """How many of each bucket's points (soonest expiry first) are under a hold: the first
    `held` points in expiry order, the order burns and captures consume them in."""
    shares = []
    for _, points in buckets:
        share = min(points, held)
        shares.append(share)
        held -= share
    return shares


# --- holds ----------------------------------------------------------------------------------


def hold_points(
    member_id: int,
    amount: int,
    *,
    now: datetime,
    ttl_seconds: int,
    reference: str | None,
    client_id: int | None,
    store_id: str | None,
) -> PointHold:
    """Reserve points for a checkout; they stop being available until capture or release."""
    _check_amount(amount)
    accounts = lock_member_accounts(member_id)
    available = accounts.points.balance - accounts.points.held
    if amount > available:
        raise InsufficientPoints(
            f"{amount} points requested, {available} available", available=available
        )
    accounts.points.held += amount
    hold = PointHold(
        member_id=accounts.member_id,
        client_id=client_id,
        store_id=store_id,
        reference=reference,
        amount=amount,
        captured=0,
        status=HoldStatus.ACTIVE.value,
        expires_at=now + timedelta(seconds=ttl_seconds),
        created_at=now,
    )
    db.session.add(hold)
    db.session.flush()
    return hold


def _locked_hold(hold_id: int) -> tuple[PointHold, MemberAccounts]:
    hold = db.session.get(PointHold, hold_id)
    if hold is None:
        raise NotFound(f"no hold {hold_id}")
    accounts = lock_member_accounts(hold.member_id, require_active=False)
    db.session.refresh(hold)  # state after the member lock: another request may have closed it
    return hold, accounts


def captured_alike(hold_id: int, amount: int | None, order_ref: str | None) -> PointHold | None:
    """The hold, locked, when it was already captured by the same request (same points and
    order): a repeat then answers like the first capture instead of a 409. None otherwise
    (capture_hold decides, under the same lock)."""
    hold, _accounts = _locked_hold(hold_id)
    if hold.status != HoldStatus.CAPTURED or hold.order_ref != order_ref:
        return None
    return hold if (hold.amount if amount is None else amount) == hold.captured else None


def _close_hold(
    hold: PointHold, accounts: MemberAccounts, status: HoldStatus, now: datetime
) -> None:
    accounts.points.held -= hold.amount
    hold.status = status.value
    hold.closed_at = now


def capture_hold(
    hold_id: int,
    amount: int | None,
    cause: Cause,
    *,
    now: datetime,
    actor: str,
    order_ref: str | None = None,
) -> tuple[PointHold, LedgerTransaction | None]:
    """Spend all or part of a hold; the rest returns to available. Capturing twice is refused.

    `order_ref`: the order the points pay for; its refunds and cancellation give them back
    (see return_paid_points).
    """
    hold, accounts = _locked_hold(hold_id)
    if hold.status == HoldStatus.ACTIVE and hold.expires_at <= now:
        _close_hold(hold, accounts, HoldStatus.EXPIRED, now)
        db.session.flush()
        raise Conflict(f"hold {hold_id} expired at {hold.expires_at.isoformat()}")
    if hold.status != HoldStatus.ACTIVE:
        raise Conflict(f"hold {hold_id} is {hold.status}")
    amount = hold.amount if amount is None else amount
    if amount < 0 or amount > hold.amount:
        raise InvalidInput(f"capture between 0 and {hold.amount} points")
    _close_hold(hold, accounts, HoldStatus.CAPTURED, now)
    hold.captured = amount
    hold.order_ref = order_ref
    tx = None
    if amount:
        tx = _begin(
            hold.member_id,
            TransactionKind.BURN,
            cause,
            amount=-amount,
            actor=actor,
            now=now,
            details={"hold_id": hold.id},
        )
        lots = _open_lots(hold.member_id, LotStatus.AVAILABLE)
        _take_from_lots(
            tx, lots, accounts.points, program_account_id(ProgramAccount.REDEEMED), amount
        )
        hold.capture_transaction_id = tx.id
        _finish(tx, "points.burned", now, hold_id=hold.id)
    db.session.flush()
    return hold, tx


def return_paid_points(
    member_id: int,
    hold_ids: list[int],
    share: tuple[int, int],
    cause: Cause,
    *,
    now: datetime,
    actor: str,
) -> tuple[int, LedgerTransaction | None]:
    """Give back the points captured by `hold_ids` for an order, up to `share` of them.

    `share` = (numerator, denominator): the part of the order refunded so far, so that
    after every refund `floor(captured * numerator / denominator)` has been given back in
    all (everything for a full refund): partial refunds in proportion, a repeat gives
    nothing more. `hold.returned` counts what went back (CHECK `returned <= captured`: never
    more than was paid). Each point comes back with the expiry of the lot it was paid
    from, repaying recorded debt first, as one `reverse_burn` transaction for
    `member_id` (the order's member). Returns (points returned, transaction or None).
    """
    numerator, denominator = share
    if not hold_ids or denominator <= 0:
        return 0, None
    accounts = lock_member_accounts(member_id, require_active=False)
    holds = list(
        db.session.scalars(
            sa.select(PointHold)
            .where(PointHold.id.in_(hold_ids), PointHold.status == HoldStatus.CAPTURED.value)
            .order_by(PointHold.id)
            .execution_options(populate_existing=True)
        )
    )
    captured = sum(hold.captured for hold in holds)
    due = captured if numerator >= denominator else captured * numerator // denominator
    left = due - sum(hold.returned for hold in holds)
    if left <= 0:
        return 0, None
    tx = _begin(
        member_id,
        TransactionKind.REVERSE_BURN,
        cause,
        amount=left,
        actor=actor,
        now=now,
        details={"hold_ids": [hold.id for hold in holds]},
    )
    redeemed = program_account_id(ProgramAccount.REDEEMED)
    total = left
    for hold in holds:
        give = min(left, hold.captured - hold.returned)
        if give <= 0:
            continue
        for amount, expires_at in _paid_slices(hold, give):
            _credit_available(accounts, tx, redeemed, amount, now=now, expires_at=expires_at)
        hold.returned += give
        left -= give
    _finish(tx, "points.burn_reversed", now, hold_ids=[hold.id for hold in holds])
    db.session.flush()
    return total, tx


def _paid_slices(hold: PointHold, amount: int) -> list[tuple[int, datetime | None]]:
    """The next `amount` points of a capture after those already returned, as
    (points, expiry of the lot they were paid from), in the order the capture spent them."""
    consumed = db.session.execute(
        sa.select(LedgerEntry.amount, PointLot.expires_at)
        .join(PointLot, PointLot.id == LedgerEntry.lot_id)
        .where(LedgerEntry.transaction_id == hold.capture_transaction_id)
        .order_by(LedgerEntry.id)
    ).all()
    skip, left, slices = hold.returned, amount, []
    for points, expires_at in consumed:
        passed = min(skip, points)
        skip -= passed
        take = min(points - passed, left)
        if take > 0:
            slices.append((take, expires_at))
            left -= take
    return slices


def release_hold(hold_id: int, *, now: datetime) -> PointHold:
    """Give held points back. Releasing a released or expired hold is a no-op."""
    hold, accounts = _locked_hold(hold_id)
    if hold.status == HoldStatus.CAPTURED:
        raise Conflict(f"hold {hold_id} was already captured")
    if hold.status == HoldStatus.ACTIVE:
        _close_hold(hold, accounts, HoldStatus.RELEASED, now)
        db.session.flush()
    return hold


def expire_holds(now: datetime, *, limit: int = 500, cursor: BatchCursor | None = None) -> int:
    """Close active holds past their expiry; returns how many were closed.

    One chunk of at most `limit` holds, oldest first (through the partial index on active
    holds); their members are locked in id order, each before its holds are read again.
    """
    due = list(
        db.session.execute(
            sa.select(PointHold.member_id, PointHold.id)
            .where(PointHold.status == constant(HoldStatus.ACTIVE), PointHold.expires_at <= now)
            .order_by(PointHold.expires_at)
            .limit(limit)
        )
    )
    if cursor is not None:
        cursor.handled += len(due)
    expired = 0
    for member_id, hold_id in sorted(due):
        accounts = lock_member_accounts(member_id, require_active=False)
        hold = db.session.get(PointHold, hold_id, populate_existing=True)
        if hold is not None and hold.status == HoldStatus.ACTIVE:
            _close_hold(hold, accounts, HoldStatus.EXPIRED, now)
            expired += 1
    db.session.flush()
    return expired


# --- merges ---------------------------------------------------------------------------------


def merge_member_points(
    merged_id: int, survivor_id: int, merge_ref: str, *, now: datetime, actor: str
) -> LedgerTransaction | None:
    """Move all of `merged_id`'s points, pending points, debt and lots to `survivor_id`.

    Two transactions, one per member, through the MERGES program account: the merged
    member's outgoing one (amount -moved) empties its accounts, so its own ledger still
    adds up to what its accounts hold (zero); the survivor's incoming one (amount +moved)
    is returned. Each lot moves with its remainder (the entries name it); the expiry
    notices of those lots follow them, so a reminder isn't sent again for the survivor.
    Active holds on the merged member are refused: the checkout that holds them must finish
    first. Locks both members in id order so concurrent merges can't deadlock.
    """
    first, second = sorted((merged_id, survivor_id))
    locked = {
        first: lock_member_accounts(first, require_active=False),
        second: lock_member_accounts(second, require_active=False),
    }
    source, target = locked[merged_id], locked[survivor_id]
    if source.points.held:
        raise Conflict(f"member {merged_id} has points on hold; capture or release them first")
    _move_expiry_notices(merged_id, survivor_id)
    moved = source.points.balance + source.pending.balance + source.debt.balance
    if not (source.points.balance or source.pending.balance or source.debt.balance):
        return None
    cause = Cause("merge", merge_ref)
    transit = program_account_id(ProgramAccount.MERGES)
    outgoing = _begin(
        merged_id,
        TransactionKind.MERGE,
        cause,
        amount=-moved,
        actor=actor,
        now=now,
        details={"survivor_id": survivor_id},
    )
    incoming = _begin(
        survivor_id,
        TransactionKind.MERGE,
        cause,
        amount=moved,
        actor=actor,
        now=now,
        details={"merged_member_id": merged_id, "outgoing_transaction_id": outgoing.id},
    )
    for status, from_account, to_account in (
        (LotStatus.AVAILABLE, source.points, target.points),
        (LotStatus.PENDING, source.pending, target.pending),
    ):
        for lot in _open_lots(merged_id, status):
            amount = lot.remaining
            lot.member_id = survivor_id
            _move(outgoing, from_account, transit, amount, lot_id=lot.id)
            _move(incoming, transit, to_account, amount, lot_id=lot.id)
    if source.debt.balance:
        debt = -source.debt.balance
        _move(outgoing, transit, source.debt, debt)
        _move(incoming, target.debt, transit, debt)
    _finish(outgoing, "points.merged_away", now, survivor_id=survivor_id)
    _finish(incoming, "points.merged", now, merged_member_id=merged_id)
    return incoming


def _move_expiry_notices(merged_id: int, survivor_id: int) -> None:
    """Expiry reminders are per person: the notices of the merged member's lots become the
    survivor's (one the survivor already has for the same instant stays as it is)."""
    table = ExpiryNotice.__table__
    theirs = table.alias("theirs")
    db.session.execute(
        sa.update(table)
        .where(
            table.c.member_id == merged_id,
            ~sa.exists().where(
                theirs.c.member_id == survivor_id, theirs.c.expires_at == table.c.expires_at
            ),
        )
        .values(member_id=survivor_id)
    )
