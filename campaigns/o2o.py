"""Online to offline: store events members reserve a place at (capacity enforced under
concurrency by one conditional UPDATE), check-in at the till that earns points, and the
purchase in the following days (any store, any channel) attributed to the event; and the
nearest stores of a member for offers redeemable only there.

Lock order: the member (step 2), then the member's reservation (step 4), then the shared
event row (step 5, like a coupon offer).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from campaigns.journey_models import EventReservation, StoreEvent
from loyalty import outbox
from loyalty.db import constant, db
from loyalty.errors import Conflict, InvalidInput, NotFound
from loyalty.members.models import Member, MemberStatus
from loyalty.members.resolution import history_member_ids, lock_current_member
from loyalty.stores.models import Store

CHECKIN_EARLY = timedelta(hours=2)  # the till may check members in this long before the start


class EventFull(Conflict):
    """Every place of the store event is taken."""

    slug, title = "event-full", "Event full"


def create_event(data: dict[str, Any], *, now: datetime) -> StoreEvent:
    if db.session.get(Store, data["store_id"]) is None:
        raise InvalidInput(f"no store {data['store_id']}", field="store_id")
    if data["ends_at"] <= data["starts_at"]:
        raise InvalidInput("an event ends after it starts", field="ends_at")
    event = StoreEvent(
        name=data["name"],
        store_id=data["store_id"],
        journey_id=data.get("journey_id"),
        starts_at=data["starts_at"],
        ends_at=data["ends_at"],
        capacity=data["capacity"],
        reserved=0,
        checkin_points=data.get("checkin_points", 0),
        attribution_days=data.get("attribution_days", 7),
        created_at=now,
    )
    db.session.add(event)
    db.session.flush()
    return event


def get_event(event_id: int) -> StoreEvent:
    event = db.session.get(StoreEvent, event_id)
    if event is None:
        raise NotFound(f"no event {event_id}")
    return event


def _reservation_of(event_id: int, person_ids: list[int]) -> EventReservation | None:
    return db.session.scalar(
        sa.select(EventReservation)
        .where(EventReservation.event_id == event_id, EventReservation.member_id.in_(person_ids))
        .with_for_update()
        .execution_options(populate_existing=True)
    )


def reserve(event_id: int, member_id: int, *, now: datetime) -> tuple[EventReservation, bool]:
    """Reserve a place for the member; (reservation, created). A second call returns the
    same reservation. A full event is a 409 `event-full`: the place is taken by one
    conditional UPDATE (`reserved < capacity`), so no interleaving oversells it."""
    member = lock_current_member(member_id)
    event = get_event(event_id)
    if now >= event.ends_at:
        raise Conflict("the event is over")
    existing = _reservation_of(event.id, history_member_ids(member.id))
    if existing is not None and existing.status != "cancelled":
        return existing, False
    taken = db.session.execute(
        sa.update(StoreEvent.__table__)
        .where(StoreEvent.id == event.id, StoreEvent.reserved < StoreEvent.capacity)
        .values(reserved=StoreEvent.reserved + 1)
    ).rowcount
    if not taken:
        raise EventFull(f"all {event.capacity} places of event {event.id} are taken")
    if existing is not None:
        existing.status, existing.reserved_at = "reserved", now
        reservation = existing
    else:
        reservation = EventReservation(
            event_id=event.id, member_id=member.id, status="reserved", reserved_at=now
        )
        db.session.add(reservation)
    db.session.flush()
    return reservation, True


def my_reservation(event_id: int, member_id: int) -> EventReservation:
    reservation = db.session.scalar(
        sa.select(EventReservation).where(
            EventReservation.event_id == event_id,
            EventReservation.member_id.in_(history_member_ids(member_id)),
        )
    )
    if reservation is None:
        raise NotFound(f"no reservation for event {event_id}")
    return reservation


def cancel(event_id: int, member_id: int, *, now: datetime) -> EventReservation:
    """Give the place back (once; a cancelled reservation stays cancelled)."""
    member = lock_current_member(member_id)
    reservation = _reservation_of(event_id, history_member_ids(member.id))
    if reservation is None:
        raise NotFound(f"no reservation for event {event_id}")
    if reservation.status == "checked_in":
        raise Conflict("already checked in")
    if reservation.status == "reserved":
        reservation.status = "cancelled"
        db.session.execute(
            sa.update(StoreEvent.__table__)
            .where(StoreEvent.id == event_id)
            .values(reserved=StoreEvent.reserved - 1)
        )
    db.session.flush()
    return reservation


def check_in(
    event_id: int, member_id: int, *, store_id: str | None, now: datetime, actor: str
) -> tuple[EventReservation, bool]:
    """The till checks the member in (at the event's store, during the event): the
    reservation becomes `checked_in` and earns the event's points, once."""
    from loyalty.ledger import operations as ledger

    event = get_event(event_id)
    if store_id is not None and store_id != event.store_id:
        raise NotFound(f"no event {event_id} at this store")
    member = lock_current_member(member_id)
    if member.status != MemberStatus.ACTIVE.value:
        raise Conflict(f"member {member_id} is not active")
    if not event.starts_at - CHECKIN_EARLY <= now <= event.ends_at:
        raise Conflict("check-in is open from two hours before the event until its end")
    reservation = _reservation_of(event.id, history_member_ids(member.id))
    if reservation is None or reservation.status == "cancelled":
        raise Conflict(f"member {member_id} has no place at event {event_id}")
    if reservation.status == "checked_in":
        return reservation, False
    reservation.status, reservation.checked_in_at = "checked_in", now
    if event.checkin_points:
        tx = ledger.earn_points(
            member.id,
            event.checkin_points,
            ledger.Cause("event-checkin", str(reservation.id)),
            now=now,
            actor=actor,
            member_locked=True,
        )
        reservation.checkin_transaction_id = tx.id
    db.session.flush()
    return reservation, True


@outbox.consumer("order.posted", name="campaigns.o2o")
def attribute_order(event: outbox.Event) -> None:
    """A purchase by a checked-in member within the event's attribution window, at any
    store or online, is attributed to the event (the first one only). Idempotent."""
    if event.member_id is None:
        return
    payload = event.payload or {}
    try:
        person_ids = history_member_ids(event.member_id)
    except NotFound:
        return
    reservations = db.session.scalars(
        sa.select(EventReservation)
        .where(
            EventReservation.member_id.in_(person_ids),
            EventReservation.status == constant("checked_in"),
            EventReservation.attributed_order_id.is_(None),
        )
        .with_for_update()
    ).all()
    for reservation in reservations:
        window = timedelta(days=get_event(reservation.event_id).attribution_days)
        if (
            reservation.checked_in_at is not None
            and reservation.checked_in_at <= event.occurred_at <= reservation.checked_in_at + window
        ):
            reservation.attributed_order_id = payload.get("order_id")
            reservation.attributed_minor = payload.get("total_minor")


def results(event_id: int) -> dict[str, Any]:
    event = get_event(event_id)
    rows = dict(
        db.session.execute(
            sa.select(EventReservation.status, sa.func.count())
            .where(EventReservation.event_id == event_id)
            .group_by(EventReservation.status)
        ).all()
    )
    attributed = db.session.execute(
        sa.select(
            sa.func.count(), sa.func.coalesce(sa.func.sum(EventReservation.attributed_minor), 0)
        ).where(
            EventReservation.event_id == event_id,
            EventReservation.attributed_order_id.is_not(None),
        )
    ).one()
    return {
        "event_id": event.id,
        "capacity": event.capacity,
        "reserved": event.reserved,
        "checked_in": rows.get("checked_in", 0),
        "cancelled": rows.get("cancelled", 0),
        "purchasers": attributed[0],
        "attributed_revenue_minor": int(attributed[1]),
    }


def nearest_stores(member_id: int, count: int) -> list[str]:
    """The member's nearest stores, without coordinates: their favourite store (most
    purchases), their home store, then the active stores of their region (by id)."""
    from campaigns.models import MemberProfile

    member = db.session.get(Member, member_id)
    if member is None:
        raise NotFound(f"no member {member_id}")
    chosen: list[str] = []
    profile = db.session.get(MemberProfile, member_id)
    for store_id in (profile.favourite_store_id if profile else None, member.home_store_id):
        if store_id and store_id not in chosen:
            chosen.append(store_id)
    if member.region and len(chosen) < count:
        for store_id in db.session.scalars(
            sa.select(Store.id)
            .where(Store.region == member.region, Store.active.is_(True))
            .order_by(Store.id)
            .limit(count + len(chosen))
        ):
            if store_id not in chosen:
                chosen.append(store_id)
    if not chosen:
        raise InvalidInput(f"member {member_id} has no favourite store, home store or region")
    return chosen[:count]
