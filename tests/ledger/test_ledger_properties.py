"""Property: whatever sequence of ledger operations runs, the books balance.

Random sequences of earn (available or pending), burn, refund under each return policy,
expiry, pending release, hold / capture / release, adjustment and merge, with a clock that
moves forward; after every step each transaction sums to zero and each member's balance
equals both the sum of its entries and the sum of its lots' remainders.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from loyalty.db import db
from loyalty.errors import OmniloyalError
from loyalty.ledger import operations as ledger
from loyalty.ledger.models import HoldStatus, PointHold
from loyalty.ledger.policy import ExpiryPolicy, ReturnPolicy
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
)


class Run:
    def __init__(self, make: object) -> None:
        self.now = datetime(2026, 1, 1, tzinfo=UTC)
        self.members = [make.member(now=self.now).id for _ in range(MEMBERS)]  # type: ignore[attr-defined]
        self.holds: list[int] = []
        self.policy = ExpiryPolicy("days", 90)

    def apply(self, op: tuple) -> None:
        kind, *args = op
        getattr(self, kind)(*args)

    def earn(self, who: int, amount: int, pending: bool, order: int) -> None:
        ledger.earn_points(
            self.members[who],
            amount,
            ledger.Cause("order", f"o{who}-{order}"),
            now=self.now,
            actor="test",
            policy=self.policy,
            pending_until=self.now + timedelta(days=14) if pending else None,
        )

    def burn(self, who: int, amount: int) -> None:
        ledger.burn_points(
            self.members[who], amount, ledger.Cause("test", "burn"), now=self.now, actor="test"
        )

    def refund(self, who: int, order: int, amount: int, policy: ReturnPolicy) -> None:
        ledger.reverse_earned(
            self.members[who],
            amount,
            ledger.Cause("refund", "r"),
            earned_by=f"o{who}-{order}",
            policy=policy,
            now=self.now,
            actor="test",
        )

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
        if merged != survivor:
            ledger.merge_member_points(
                self.members[merged], self.members[survivor], "m", now=self.now, actor="test"
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
    db.session.commit()
    assert_ledger_consistent()


def test_active_holds_count_against_available_points(app, make):
    run = Run(make)
    run.earn(0, 100, False, 0)
    run.hold(0, 80)
    balance = ledger.member_balance(run.members[0])
    assert (balance.balance, balance.available, balance.held) == (100, 20, 80)
    assert db.session.get(PointHold, run.holds[0]).status == HoldStatus.ACTIVE
