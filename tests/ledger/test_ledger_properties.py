"""Property: whatever sequence of ledger operations runs, the books balance.

Random sequences of earn (available or pending), burn, refund under each return policy,
expiry, pending release, hold / capture / release, adjustment and merge, points paying for
an order and given back by its refunds, with a clock that moves forward; after every step
each transaction sums to zero and each member's balance equals both the sum of its entries
and the sum of its lots' remainders; no order ever has more taken back than it earned, nor
more given back than it was paid.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from loyalty.db import db
from loyalty.errors import OmniloyalError
from loyalty.ledger import operations as ledger
from loyalty.ledger.models import (
    HoldStatus,
    LedgerTransaction,
    PointHold,
    PointLot,
    TransactionKind,
)
from loyalty.ledger.policy import ExpiryPolicy, ReturnPolicy
from loyalty.members.models import Member, MemberStatus
from loyalty.members.resolution import current_member_id
from tests.ledger.invariants import assert_ledger_consistent

MEMBERS = 3
points = st.integers(min_value=1, max_value=500)
member = st.integers(min_value=0, max_value=MEMBERS - 1)

step = st.one_of(
    st.tuples(st.just("earn"), member, points, st.booleans(), st.integers(0, 3)),
    st.tuples(st.just("burn"), member, points),
    st.tuples(
        st.just("refund"), member, st.integers(0, 3), points, st.sampled_from(list(ReturnPolicy))
    ),
    st.tuples(st.just("advance"), st.integers(1, 400)),
    st.tuples(st.just("hold"), member, points),
    st.tuples(st.just("capture"), st.integers(0, 5), st.integers(0, 100)),
    st.tuples(st.just("release"), st.integers(0, 5)),
    st.tuples(st.just("adjust"), member, st.integers(-300, 300).filter(bool)),
    st.tuples(st.just("merge"), member, member),
    st.tuples(st.just("pay"), member, st.integers(0, 3), points),
    st.tuples(st.just("refund_paid"), member, st.integers(0, 3), st.integers(1, 4)),
)


class Run:
    def __init__(self, make: object) -> None:
        self.now = datetime(2026, 1, 1, tzinfo=UTC)
        self.members = [make.member(now=self.now).id for _ in range(MEMBERS)]  # type: ignore[attr-defined]
        self.holds: list[int] = []
        self.policy = ExpiryPolicy("days", 90)
        self.earned: dict[str, int] = defaultdict(int)  # per order ref, as orders record
        self.reversed: dict[str, int] = defaultdict(int)
        self.refunded_quarters: dict[str, int] = defaultdict(int)

    def apply(self, op: tuple) -> None:
        kind, *args = op
        getattr(self, kind)(*args)

    def earn(self, who: int, amount: int, pending: bool, order: int) -> None:
        ledger.earn_points(
            self.members[who],
            amount,
            ledger.Cause("order", f"o{self.members[0]}-{who}-{order}"),
            now=self.now,
            actor="test",
            policy=self.policy,
            pending_until=self.now + timedelta(days=14) if pending else None,
        )
        self.earned[f"o{self.members[0]}-{who}-{order}"] += amount

    def burn(self, who: int, amount: int) -> None:
        ledger.burn_points(
            self.members[who], amount, ledger.Cause("test", "burn"), now=self.now, actor="test"
        )

    def refund(self, who: int, order: int, amount: int, policy: ReturnPolicy) -> None:
        """Reverse up to `amount` more of what the order earned, as refund_order does."""
        ref = f"o{self.members[0]}-{who}-{order}"
        amount = min(amount, self.earned[ref] - self.reversed[ref])
        ledger.reverse_earned(
            self.members[who],
            amount,
            ledger.Cause("refund", "r"),
            earned_by=ref,
            policy=policy,
            now=self.now,
            actor="test",
            earned=self.earned[ref],
            reversed_before=self.reversed[ref],
        )
        self.reversed[ref] += max(0, amount)

    def pay(self, who: int, order: int, amount: int) -> None:
        """Points pay for an order: held, then captured against it."""
        hold = ledger.hold_points(
            self.members[who],
            amount,
            now=self.now,
            ttl_seconds=600,
            reference=None,
            client_id=None,
            store_id=None,
        )
        ledger.capture_hold(
            hold.id,
            None,
            ledger.Cause("hold", f"paid-o{self.members[0]}-{who}-{order}"),
            now=self.now,
            actor="test",
            order_ref=f"paid-o{self.members[0]}-{who}-{order}",
        )

    def refund_paid(self, who: int, order: int, quarters: int) -> None:
        """Refund `quarters` more quarters of an order paid with points."""
        ref = f"paid-o{self.members[0]}-{who}-{order}"
        done = min(4, self.refunded_quarters[ref] + quarters)
        hold_ids = list(
            db.session.scalars(sa.select(PointHold.id).where(PointHold.order_ref == ref))
        )
        ledger.return_paid_points(
            self.members[who],
            hold_ids,
            (done, 4),
            ledger.Cause("refund", ref),
            now=self.now,
            actor="test",
        )
        self.refunded_quarters[ref] = done

    def check_orders(self) -> None:
        taken: dict[str, int] = defaultdict(int)
        for tx in db.session.scalars(
            sa.select(LedgerTransaction).where(
                LedgerTransaction.kind == TransactionKind.REVERSE.value,
                LedgerTransaction.member_id.in_(self.members),
            )
        ):
            taken[tx.details["earned_by"]] -= tx.amount
        for ref, points in taken.items():
            # Never more than it earned, and never its own expired points a second time.
            expired = db.session.scalar(
                sa.select(sa.func.coalesce(sa.func.sum(PointLot.expired_points), 0)).where(
                    PointLot.cause_ref == ref
                )
            )
            assert points <= self.earned[ref] - expired, (
                f"{ref}: took back {points} of {self.earned[ref]} earned, {expired} expired"
            )
        for hold in db.session.scalars(
            sa.select(PointHold).where(PointHold.member_id.in_(self.members))
        ):
            assert 0 <= hold.returned <= hold.captured

    def advance(self, days: int) -> None:
        self.now += timedelta(days=days)
        ledger.release_pending_points(self.now)
        ledger.expire_holds(self.now)
        ledger.expire_points(self.now)

    def hold(self, who: int, amount: int) -> None:
        hold = ledger.hold_points(
            self.members[who],
            amount,
            now=self.now,
            ttl_seconds=86400 * 3,
            reference=None,
            client_id=None,
            store_id=None,
        )
        self.holds.append(hold.id)

    def capture(self, index: int, percent: int) -> None:
        if index < len(self.holds):
            hold = db.session.get(PointHold, self.holds[index])
            ledger.capture_hold(
                hold.id,
                hold.amount * percent // 100,
                ledger.Cause("hold", str(hold.id)),
                now=self.now,
                actor="test",
            )

    def release(self, index: int) -> None:
        if index < len(self.holds):
            ledger.release_hold(self.holds[index], now=self.now)

    def adjust(self, who: int, delta: int) -> None:
        ledger.adjust_points(
            self.members[who], delta, reason="test", actor="test", now=self.now, reference="adj"
        )

    def merge(self, merged: int, survivor: int) -> None:
        """The ledger's part of a member merge, and the merged row marked as the member
        merge marks it: later operations naming the merged member follow it to the
        survivor. (Points moved while the member stayed active is a state no merge leaves:
        a refund of the merged member's order then found its lots held by someone else.)"""
        merged_id, survivor_id = (current_member_id(self.members[i]) for i in (merged, survivor))
        if merged_id == survivor_id:
            return
        ledger.merge_member_points(merged_id, survivor_id, "m", now=self.now, actor="test")
        members = Member.__table__
        db.session.execute(
            sa.update(members)
            .where(sa.or_(members.c.id == merged_id, members.c.merged_into_id == merged_id))
            .values(status=MemberStatus.MERGED.value, merged_into_id=survivor_id)
        )


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(steps=st.lists(step, min_size=1, max_size=25))
def test_every_operation_sequence_keeps_the_books_balanced(app, make, steps):
    run = Run(make)
    for op in steps:
        try:
            with db.session.begin_nested():
                run.apply(op)
        except OmniloyalError:
            pass  # refused operations (not enough points, closed hold...) change nothing
        assert_ledger_consistent()
        run.check_orders()
    db.session.commit()
    assert_ledger_consistent()


def test_active_holds_count_against_available_points(app, make):
    run = Run(make)
    run.earn(0, 100, False, 0)
    run.hold(0, 80)
    balance = ledger.member_balance(run.members[0])
    assert (balance.balance, balance.available, balance.held) == (100, 20, 80)
    assert db.session.get(PointHold, run.holds[0]).status == HoldStatus.ACTIVE
