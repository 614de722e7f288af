"""The points ledger, specified through its operations."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from loyalty.config import ConfigError
from loyalty.db import db
from loyalty.errors import Conflict, InsufficientPoints, InvalidInput
from loyalty.ledger import operations as ledger
from loyalty.ledger.models import (
    HoldStatus,
    LedgerEntry,
    LedgerNote,
    LedgerTransaction,
    LotStatus,
    PointLot,
    TransactionKind,
)
from loyalty.ledger.notes import shown_reason
from loyalty.ledger.policy import ExpiryPolicy, ReturnPolicy
from loyalty.outbox import OutboxEvent
from tests.ledger.invariants import assert_ledger_consistent

T0 = datetime(2026, 3, 15, 10, 30, tzinfo=UTC)


def earn(member_id, points, *, now=T0, ref="o1", days=None, pending_days=0):
    tx = ledger.earn_points(
        member_id,
        points,
        ledger.Cause("order", ref),
        now=now,
        actor="test",
        expires_at=now + timedelta(days=days) if days else None,
        pending_until=now + timedelta(days=pending_days) if pending_days else None,
    )
    db.session.commit()
    return tx


class TestExpiryPolicy:
    def test_months_keeps_the_day_of_month_or_the_last_valid_day(self):
        policy = ExpiryPolicy.parse("months:1")
        assert policy.expires_at(datetime(2026, 1, 31, 9, tzinfo=UTC)) == datetime(
            2026, 2, 28, 9, tzinfo=UTC
        )

    def test_months_rounded_to_month_end_expire_at_the_start_of_the_next_month(self):
        policy = ExpiryPolicy.parse("months:12:end")
        assert policy.expires_at(T0) == datetime(2027, 4, 1, tzinfo=UTC)

    def test_years_end_expires_at_the_end_of_the_nth_calendar_year(self):
        assert ExpiryPolicy.parse("years-end:1").expires_at(T0) == datetime(2028, 1, 1, tzinfo=UTC)
        assert ExpiryPolicy.parse("years-end:0").expires_at(T0) == datetime(2027, 1, 1, tzinfo=UTC)

    def test_never_means_no_expiry(self):
        assert ExpiryPolicy.parse("never").expires_at(T0) is None

    @pytest.mark.parametrize("text", ["", "months", "months:0", "days:x", "years-end:1:end"])
    def test_malformed_policies_are_refused_at_start_up(self, text):
        with pytest.raises(ConfigError):
            ExpiryPolicy.parse(text)


class TestEarningAndSpending:
    def test_earning_creates_a_lot_and_a_balanced_transaction(self, app, make):
        member = make.member()
        tx = earn(member.id, 250)
        entries = db.session.scalars(
            sa.select(LedgerEntry).where(LedgerEntry.transaction_id == tx.id)
        ).all()
        assert [e.amount for e in entries] == [250]
        lot = db.session.scalar(sa.select(PointLot).where(PointLot.member_id == member.id))
        assert (lot.amount, lot.remaining, lot.status) == (250, 250, LotStatus.AVAILABLE)
        assert ledger.member_balance(member.id).available == 250
        assert_ledger_consistent()

    def test_burns_consume_the_soonest_expiring_lots_first(self, app, make):
        member = make.member()
        late = earn(member.id, 100, days=300, ref="late")
        soon = earn(member.id, 100, days=30, ref="soon")
        ledger.burn_points(member.id, 150, ledger.Cause("t", "b"), now=T0, actor="t")
        db.session.commit()
        lots = {lot.source_transaction_id: lot for lot in db.session.scalars(sa.select(PointLot))}
        assert lots[soon.id].remaining == 0 and lots[soon.id].status == LotStatus.CLOSED
        assert lots[late.id].remaining == 50

    def test_a_burn_beyond_available_points_is_refused_and_changes_nothing(self, app, make):
        member = make.member()
        earn(member.id, 100)
        with pytest.raises(InsufficientPoints) as refused:
            ledger.burn_points(member.id, 101, ledger.Cause("t", "b"), now=T0, actor="t")
        db.session.rollback()
        assert refused.value.extra["available"] == 100
        assert ledger.member_balance(member.id).balance == 100

    @pytest.mark.parametrize("amount", [0, -5, 10**13, True, 1.5])
    def test_amounts_must_be_positive_whole_points_within_bounds(self, app, make, amount):
        member = make.member()
        with pytest.raises(InvalidInput):
            ledger.earn_points(member.id, amount, ledger.Cause("t", "x"), now=T0, actor="t")

    def test_every_movement_writes_a_domain_event_in_the_same_transaction(self, app, make):
        member = make.member()
        earn(member.id, 10)
        topics = db.session.scalars(
            sa.select(OutboxEvent.topic)
            .where(OutboxEvent.member_id == member.id)
            .order_by(OutboxEvent.id)
        ).all()
        assert topics == ["member.enrolled", "points.earned"]


class TestExpiry:
    def test_due_lots_expire_through_ledger_entries(self, app, make):
        member = make.member()
        earn(member.id, 100, days=10, ref="a")
        earn(member.id, 40, days=100, ref="b")
        expired = ledger.expire_points(T0 + timedelta(days=11))
        db.session.commit()
        assert expired == 100
        assert ledger.member_balance(member.id).balance == 40
        kinds = db.session.scalars(
            sa.select(LedgerTransaction.kind).where(LedgerTransaction.member_id == member.id)
        ).all()
        assert TransactionKind.EXPIRE in kinds
        assert_ledger_consistent()

    def test_expiry_runs_are_idempotent(self, app, make):
        member = make.member()
        earn(member.id, 100, days=10)
        later = T0 + timedelta(days=11)
        assert ledger.expire_points(later) == 100
        db.session.commit()
        assert ledger.expire_points(later) == 0

    def test_points_under_a_hold_are_not_expired_until_the_hold_ends(self, app, make):
        member = make.member()
        earn(member.id, 100, days=10)
        hold = ledger.hold_points(
            member.id,
            70,
            now=T0,
            ttl_seconds=86400 * 30,
            reference=None,
            client_id=None,
            store_id=None,
        )
        db.session.commit()
        assert ledger.expire_points(T0 + timedelta(days=11)) == 30
        ledger.release_hold(hold.id, now=T0 + timedelta(days=12))
        assert ledger.expire_points(T0 + timedelta(days=12)) == 70
        db.session.commit()
        assert ledger.member_balance(member.id).balance == 0
        assert_ledger_consistent()

    def test_points_expiring_soon_are_grouped_by_expiry_date(self, app, make):
        from loyalty.ledger.queries import expiring_points

        member = make.member()
        earn(member.id, 100, days=10, ref="a")
        earn(member.id, 5, days=10, ref="b")
        earn(member.id, 40, days=100, ref="c")
        soon = expiring_points(member.id, now=T0, days=30, timezone="Asia/Tokyo")
        assert soon["total"] == 105
        assert soon["buckets"][0]["local_date"] == "2026-03-25"


class TestExpiringAnnouncements:
    def test_each_expiry_is_announced_once_per_member(self, app, make):
        member = make.member()
        earn(member.id, 100, days=10, ref="a")
        earn(member.id, 20, days=10, ref="b")
        earn(member.id, 40, days=100, ref="c")
        assert ledger.announce_expiring_points(T0, within_days=30) == 1
        db.session.commit()
        assert ledger.announce_expiring_points(T0 + timedelta(days=1), within_days=30) == 0
        event = db.session.scalar(
            sa.select(OutboxEvent).where(OutboxEvent.topic == "points.expiring")
        )
        assert event.member_id == member.id and event.payload["points"] == 120


class TestPendingPoints:
    def test_pending_points_are_not_spendable_until_the_window_passes(self, app, make):
        member = make.member()
        earn(member.id, 100, pending_days=14)
        balance = ledger.member_balance(member.id)
        assert (balance.pending, balance.available) == (100, 0)
        assert ledger.release_pending_points(T0 + timedelta(days=13)) == 0
        assert ledger.release_pending_points(T0 + timedelta(days=14)) == 100
        db.session.commit()
        balance = ledger.member_balance(member.id)
        assert (balance.pending, balance.available) == (0, 100)
        assert_ledger_consistent()

    def test_a_refund_inside_the_window_cancels_the_pending_points(self, app, make):
        member = make.member()
        earn(member.id, 100, pending_days=14, ref="order-9")
        result = ledger.reverse_earned(
            member.id,
            100,
            ledger.Cause("refund", "r1"),
            earned_by="order-9",
            policy=ReturnPolicy.PENDING_ONLY,
            now=T0 + timedelta(days=2),
            actor="t",
        )
        db.session.commit()
        assert (result.revoked_pending, result.forgiven) == (100, 0)
        assert ledger.member_balance(member.id).pending == 0
        assert_ledger_consistent()


class TestReturnPolicies:
    def spent_order(self, make):
        member = make.member()
        earn(member.id, 100, ref="order-1")
        ledger.burn_points(member.id, 80, ledger.Cause("t", "b"), now=T0, actor="t")
        db.session.commit()
        return member

    def reverse(self, member, policy):
        result = ledger.reverse_earned(
            member.id,
            100,
            ledger.Cause("refund", "r"),
            earned_by="order-1",
            policy=policy,
            now=T0,
            actor="t",
        )
        db.session.commit()
        return result

    def test_pending_only_keeps_spent_points_spent(self, app, make):
        member = self.spent_order(make)
        result = self.reverse(member, ReturnPolicy.PENDING_ONLY)
        assert result.forgiven == 100
        # Recorded all the same (0 points, no entries): tier qualification reads it.
        assert (result.transaction.amount, result.transaction.details["forgiven"]) == (0, 100)
        assert ledger.member_balance(member.id).balance == 20
        assert_ledger_consistent()

    def test_cap_at_zero_takes_what_is_left_and_forgives_the_rest(self, app, make):
        member = self.spent_order(make)
        result = self.reverse(member, ReturnPolicy.CAP_AT_ZERO)
        assert (result.revoked_available, result.forgiven) == (20, 80)
        assert ledger.member_balance(member.id).balance == 0

    def test_claw_back_records_debt_that_later_earnings_repay_first(self, app, make):
        member = self.spent_order(make)
        result = self.reverse(member, ReturnPolicy.CLAW_BACK)
        assert (result.revoked_available, result.clawed_back) == (20, 80)
        balance = ledger.member_balance(member.id)
        assert (balance.balance, balance.debt, balance.available) == (-80, -80, 0)
        earn(member.id, 50, ref="order-2")
        assert ledger.member_balance(member.id).balance == -30
        earn(member.id, 50, ref="order-3")
        balance = ledger.member_balance(member.id)
        assert (balance.balance, balance.debt, balance.available) == (20, 0, 20)
        assert_ledger_consistent()


class TestHolds:
    def test_partial_capture_spends_part_and_returns_the_rest(self, app, make):
        member = make.member()
        earn(member.id, 100)
        hold = ledger.hold_points(
            member.id,
            60,
            now=T0,
            ttl_seconds=600,
            reference="basket",
            client_id=None,
            store_id=None,
        )
        ledger.capture_hold(hold.id, 25, ledger.Cause("order", "o"), now=T0, actor="t")
        db.session.commit()
        balance = ledger.member_balance(member.id)
        assert (balance.balance, balance.available, balance.held) == (75, 75, 0)
        with pytest.raises(Conflict):
            ledger.capture_hold(hold.id, 10, ledger.Cause("order", "o"), now=T0, actor="t")

    def test_an_expired_hold_cannot_be_captured_and_releases_itself(self, app, make):
        member = make.member()
        earn(member.id, 100)
        hold = ledger.hold_points(
            member.id, 60, now=T0, ttl_seconds=60, reference=None, client_id=None, store_id=None
        )
        db.session.commit()
        later = T0 + timedelta(seconds=61)
        with pytest.raises(Conflict):
            ledger.capture_hold(hold.id, None, ledger.Cause("order", "o"), now=later, actor="t")
        db.session.rollback()
        assert ledger.expire_holds(later) == 1
        db.session.commit()
        assert db.session.get(type(hold), hold.id).status == HoldStatus.EXPIRED
        assert ledger.member_balance(member.id).available == 100

    def test_releasing_twice_is_harmless(self, app, make):
        member = make.member()
        earn(member.id, 100)
        hold = ledger.hold_points(
            member.id, 60, now=T0, ttl_seconds=60, reference=None, client_id=None, store_id=None
        )
        ledger.release_hold(hold.id, now=T0)
        ledger.release_hold(hold.id, now=T0)
        db.session.commit()
        assert ledger.member_balance(member.id).available == 100


class TestReversingABurn:
    def test_points_come_back_with_their_original_expiry_exactly_once(self, app, make):
        member = make.member()
        earn(member.id, 100, days=30)
        burn = ledger.burn_points(member.id, 70, ledger.Cause("reward", "r"), now=T0, actor="t")
        db.session.commit()
        ledger.reverse_burn(burn.id, ledger.Cause("reward-return", "r"), now=T0, actor="t")
        db.session.commit()
        with pytest.raises(Conflict):
            ledger.reverse_burn(burn.id, ledger.Cause("reward-return", "r"), now=T0, actor="t")
        db.session.rollback()
        assert ledger.member_balance(member.id).balance == 100
        expiries = set(
            db.session.scalars(sa.select(PointLot.expires_at).where(PointLot.remaining > 0))
        )
        assert expiries == {T0 + timedelta(days=30)}
        assert_ledger_consistent()


class TestAdjustments:
    def test_adjustments_need_a_reason_and_record_the_actor(self, app, make):
        member = make.member()
        with pytest.raises(InvalidInput):
            ledger.adjust_points(
                member.id, 10, reason=" ", actor="support:1", now=T0, reference="x"
            )
        tx = ledger.adjust_points(
            member.id, 10, reason="goodwill", actor="support:1", now=T0, reference="x"
        )
        assert (tx.kind, tx.actor, tx.amount) == ("adjust", "support:1", 10)
        # The free-text reason is a note beside the append-only ledger (erasure blanks it).
        assert tx.reason is None and shown_reason(tx) == "goodwill"
        assert db.session.get(LedgerNote, tx.id).text == "goodwill"
