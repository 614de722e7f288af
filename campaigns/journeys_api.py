"""Journeys, store events (online to offline) and referrals over HTTP.

Marketers' keys: `journeys:read` (journeys, progress, results) and `journeys:write`
(create, version, activate, pause, enter members, store events and the O2O templates).
Tills check members in with `orders:write` (a store-bound key only at its own store).
Members (app token): their referral code, claiming a code, event reservations.
"""

from __future__ import annotations

from typing import Any

from flask import request

from campaigns import journeys, o2o, referrals
from campaigns.journey_schemas import (
    BookInStoreSchema,
    CheckInResultSchema,
    CheckInSchema,
    ClaimSchema,
    EnteredSchema,
    EnterSchema,
    EventCreateSchema,
    EventResultsSchema,
    EventSchema,
    JourneyCreateSchema,
    JourneyResultsSchema,
    JourneySchema,
    LaunchResultSchema,
    LaunchSchema,
    ProgressSchema,
    ReferralCodeSchema,
    ReferralQuery,
    ReferralSchema,
    ReservationSchema,
    VersionCreateSchema,
    VersionSchema,
)
from campaigns.templates import book_in_store, launch
from loyalty.api import Blueprint
from loyalty.auth import scopes
from loyalty.auth.context import current_caller, requires, requires_member
from loyalty.clock import utcnow
from loyalty.errors import NotFound
from loyalty.http import replayed, write_endpoint
from loyalty.members.resolution import current_member_id
from loyalty.pagination import PageQuery, int_cursor, page, page_schema

blp = Blueprint("journeys", __name__, description="Journeys, store events and referrals")
API_KEY = [{"ApiKey": []}]
MEMBER = [{"MemberToken": []}]


# --- journeys ---


@blp.route("/journeys")
@blp.doc(security=API_KEY)
@requires(scopes.JOURNEYS_READ)
@blp.arguments(PageQuery, location="query")
@blp.response(200, page_schema(JourneySchema))
def list_journeys(query: dict[str, Any]) -> Any:
    """The journeys, by id."""
    rows = journeys.list_journeys(after_id=int_cursor(query["cursor"]), limit=query["limit"] + 1)
    return page(rows, query["limit"], key=lambda journey: journey.id)


@blp.route("/journeys", methods=["POST"])
@blp.doc(security=API_KEY)
@requires(scopes.JOURNEYS_WRITE)
@write_endpoint()
@blp.arguments(JourneyCreateSchema)
@blp.response(201, JourneySchema)
def create_journey(data: dict[str, Any]) -> Any:
    """A draft journey (version 1): trigger, re-entry rule and steps (waits, conditions,
    messages, coupons, points, exit)."""
    return journeys.create_journey(data, now=utcnow(), actor=current_caller().actor)


@blp.route("/journeys/<int:journey_id>")
@blp.doc(security=API_KEY)
@requires(scopes.JOURNEYS_READ)
@blp.response(200, JourneySchema)
def get_journey(journey_id: int) -> Any:
    """One journey: its status, trigger and current version."""
    return journeys.get_journey(journey_id)


@blp.route("/journeys/<int:journey_id>/versions")
@blp.doc(security=API_KEY)
@requires(scopes.JOURNEYS_READ)
@blp.arguments(PageQuery, location="query")
@blp.response(200, page_schema(VersionSchema))
def list_journey_versions(query: dict[str, Any], journey_id: int) -> Any:
    """Every version of the journey's steps, oldest first."""
    after = int_cursor(query["cursor"]) or 0
    rows = [v for v in journeys.versions(journey_id) if v.version > after][: query["limit"] + 1]
    return page(rows, query["limit"], key=lambda version: version.version)


@blp.route("/journeys/<int:journey_id>/versions", methods=["POST"])
@blp.doc(security=API_KEY)
@requires(scopes.JOURNEYS_WRITE)
@write_endpoint()
@blp.arguments(VersionCreateSchema)
@blp.response(201, JourneySchema)
def create_journey_version(data: dict[str, Any], journey_id: int) -> Any:
    """Edit the steps (also of a live journey): a new version for new entries; members in
    flight finish the version they entered."""
    return journeys.new_version(journey_id, data["steps"], now=utcnow())


@blp.route("/journeys/<int:journey_id>/activate", methods=["POST"])
@blp.doc(security=API_KEY)
@requires(scopes.JOURNEYS_WRITE)
@write_endpoint(key_required=False)
@blp.response(200, JourneySchema)
def activate_journey(journey_id: int) -> Any:
    """Start (or resume) the journey: triggers enter members, due steps run. A `segment`
    journey enters its segment's audience (a job, in chunks)."""
    journey = journeys.set_status(journey_id, "active", now=utcnow())
    if journey.trigger == "segment":
        from campaigns.journey_jobs import enter_segment_audience

        enter_segment_audience.enqueue(journey.id)
    return journey


@blp.route("/journeys/<int:journey_id>/pause", methods=["POST"])
@blp.doc(security=API_KEY)
@requires(scopes.JOURNEYS_WRITE)
@write_endpoint(key_required=False)
@blp.response(200, JourneySchema)
def pause_journey(journey_id: int) -> Any:
    """Pause: nobody enters, no step runs; members stay where they are until it resumes."""
    return journeys.set_status(journey_id, "paused", now=utcnow())


@blp.route("/journeys/<int:journey_id>/entries", methods=["POST"])
@blp.doc(security=API_KEY)
@requires(scopes.JOURNEYS_WRITE)
@write_endpoint()
@blp.arguments(EnterSchema)
@blp.response(201, EnteredSchema)
def enter_journey(data: dict[str, Any], journey_id: int) -> Any:
    """Enter members by id (re-entry rule applies; members already in by this call are
    skipped). The journey's control group is entered as `held_out` (no step runs)."""
    key = request.headers.get("Idempotency-Key", "")
    entered = journeys.enter_manually(
        journey_id, data["member_ids"], cause=f"api:{key}"[:100], now=utcnow()
    )
    return {"entered": entered}


@blp.route("/journeys/<int:journey_id>/members/<member:member_id>")
@blp.doc(security=API_KEY)
@requires(scopes.JOURNEYS_READ)
@blp.response(200, ProgressSchema)
def journey_progress(journey_id: int, member_id: int) -> Any:
    """A member's progress: each entry's version, current step, next run time and the
    steps that ran (the person's, merged ids included)."""
    entries = journeys.progress(journey_id, member_id)
    return {"journey_id": journey_id, "member_id": current_member_id(member_id), "entries": entries}


@blp.route("/journeys/<int:journey_id>/results")
@blp.doc(security=API_KEY)
@requires(scopes.JOURNEYS_READ)
@blp.response(200, JourneyResultsSchema)
def journey_results(journey_id: int) -> Any:
    """Counts: entries by status and version, each step's outcomes."""
    return journeys.results(journey_id)


# --- store events and the O2O templates ----------------------------------------------------------


@blp.route("/o2o/events", methods=["POST"])
@blp.doc(security=API_KEY)
@requires(scopes.JOURNEYS_WRITE)
@write_endpoint()
@blp.arguments(EventCreateSchema)
@blp.response(201, EventSchema)
def create_store_event(data: dict[str, Any]) -> Any:
    """An in-store event with a capacity members reserve places of."""
    return o2o.create_event(data, now=utcnow())


@blp.route("/o2o/events/<int:event_id>")
@blp.doc(security=API_KEY)
@requires(scopes.JOURNEYS_READ)
@blp.response(200, EventSchema)
def get_store_event(event_id: int) -> Any:
    """One store event with its places taken."""
    return o2o.get_event(event_id)


@blp.route("/o2o/events/<int:event_id>/results")
@blp.doc(security=API_KEY)
@requires(scopes.JOURNEYS_READ)
@blp.response(200, EventResultsSchema)
def store_event_results(event_id: int) -> Any:
    """Reserved, checked in, purchases attributed within the window and their revenue."""
    return o2o.results(event_id)


@blp.route("/o2o/launches", methods=["POST"])
@blp.doc(security=API_KEY)
@requires(scopes.JOURNEYS_WRITE)
@write_endpoint()
@blp.arguments(LaunchSchema)
@blp.response(201, LaunchResultSchema)
def create_launch(data: dict[str, Any]) -> Any:
    """New-product launch template: the store event and a draft journey announcing it to
    the segment (activate the journey to send)."""
    event, journey = launch(data, now=utcnow(), actor=current_caller().actor)
    return {"event": event, "journey": journey}


@blp.route("/o2o/book-in-store", methods=["POST"])
@blp.doc(security=API_KEY)
@requires(scopes.JOURNEYS_WRITE)
@write_endpoint()
@blp.arguments(BookInStoreSchema)
@blp.response(201, JourneySchema)
def create_book_in_store(data: dict[str, Any]) -> Any:
    """ "Book online, experience in store" template: a draft journey issuing each member of
    the segment a code redeemable only at their nearest stores, then telling them."""
    return book_in_store(data, now=utcnow(), actor=current_caller().actor)


@blp.route("/o2o/events/<int:event_id>/check-ins", methods=["POST"])
@blp.doc(security=API_KEY)
@requires(scopes.ORDERS_WRITE)
@write_endpoint(key_required=False)
@blp.arguments(CheckInSchema)
@blp.response(201, CheckInResultSchema)
def check_in(data: dict[str, Any], event_id: int) -> Any:
    """The till checks a member in at the event (its own store only); the event's points
    are earned once. A repeat answers the same."""
    caller = current_caller()
    reservation, created = o2o.check_in(
        event_id, data["member_id"], store_id=caller.store_id, now=utcnow(), actor=caller.actor
    )
    body = {**_reservation_view(reservation), "points": o2o.get_event(event_id).checkin_points}
    return (body, 201) if created else replayed(body, 201)


# --- member endpoints ---


def _reservation_view(reservation: Any) -> dict[str, Any]:
    return {
        "id": reservation.id,
        "event_id": reservation.event_id,
        "status": reservation.status,
        "reserved_at": reservation.reserved_at,
        "checked_in_at": reservation.checked_in_at,
    }


@blp.route("/me/events/<int:event_id>/reservation")
@blp.doc(security=MEMBER)
@requires_member
@blp.response(200, ReservationSchema)
def my_reservation(event_id: int) -> Any:
    """The member's reservation at the event."""
    return o2o.my_reservation(event_id, current_caller().member_id)


@blp.route("/me/events/<int:event_id>/reservation", methods=["POST"])
@blp.doc(security=MEMBER)
@requires_member
@write_endpoint(key_required=False)
@blp.response(201, ReservationSchema)
def reserve_place(event_id: int) -> Any:
    """Reserve a place (409 `event-full` when every place is taken). A repeat answers the
    same reservation."""
    reservation, created = o2o.reserve(event_id, current_caller().member_id, now=utcnow())
    view = _reservation_view(reservation)
    return (view, 201) if created else replayed(view, 201)


@blp.route("/me/events/<int:event_id>/reservation", methods=["DELETE"])
@blp.doc(security=MEMBER)
@requires_member
@write_endpoint(key_required=False)
@blp.response(200, ReservationSchema)
def cancel_place(event_id: int) -> Any:
    """Give the place back."""
    return o2o.cancel(event_id, current_caller().member_id, now=utcnow())


def _code_view(member_id: int, code: str) -> dict[str, Any]:
    return {
        "code": code,
        "share_link": f"{request.host_url}r/{code}",
        **referrals.my_referrals(member_id),
    }


@blp.route("/me/referral")
@blp.doc(security=MEMBER)
@requires_member
@blp.response(200, ReferralCodeSchema)
def my_referral() -> Any:
    """The member's referral code, share link and how their referrals went (404 until
    the code was made by POST)."""
    member_id = current_caller().member_id
    code = referrals.existing_code(member_id)
    if code is None:
        raise NotFound("no referral code yet: POST /v1/me/referral makes it")
    return _code_view(member_id, code)


@blp.route("/me/referral", methods=["POST"])
@blp.doc(security=MEMBER)
@requires_member
@write_endpoint(key_required=False)
@blp.arguments(ReferralQuery)
@blp.response(200, ReferralCodeSchema)
def make_referral_code(data: dict[str, Any]) -> Any:
    """The member's personal referral code and share link, made on the first call (the
    same every time after). `device_fingerprint` feeds the self-referral checks."""
    member_id = current_caller().member_id
    code = referrals.code_for(
        member_id, now=utcnow(), device_fingerprint=data["device_fingerprint"]
    )
    return _code_view(member_id, code.code)


@blp.route("/me/referral/claim", methods=["POST"])
@blp.doc(security=MEMBER)
@requires_member
@write_endpoint(key_required=False)
@blp.arguments(ClaimSchema)
@blp.response(201, ReferralSchema)
def claim_referral(data: dict[str, Any]) -> Any:
    """A new member joined through a friend's code: both earn points at the new member's
    first purchase. 409 `referral-refused` for self-referral or a member who isn't new."""
    return referrals.claim(
        current_caller().member_id,
        data["code"],
        now=utcnow(),
        device_fingerprint=data["device_fingerprint"],
    )
