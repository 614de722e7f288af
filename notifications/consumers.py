"""The outbox consumer that turns domain events into transactional messages.

    points.earned    -> points_earned     points.expiring -> points_expiring
    tier.changed     -> tier_changed      coupon.issued   -> coupon_issued, or reward_ready
                                                             for a reward bought with points

One message per channel the member can be reached on and hasn't turned off, each with the
dedupe key `<topic>:<event id>:<channel>`: the relay delivers at least once, the key makes
it at most once. Events carry ids; names, contacts and text are read when the message is
sent. Coupons issued and bonus points credited by a campaign are the campaign's to announce
(as marketing).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from loyalty import outbox
from loyalty.clock import utcnow
from loyalty.members.models import MemberStatus
from notifications import policies
from notifications.consent import Purpose
from notifications.pipeline import Draft, contacts_many, create_messages
from notifications.providers.base import Channel

CONSUMER = "notifications.transactional"
TOPICS = ("points.earned", "points.expiring", "tier.changed", "coupon.issued")


def message_for(event: outbox.Event) -> tuple[str, dict[str, Any]] | None:
    """The template and variables an event calls for, or None (nothing to say)."""
    payload = event.payload
    if event.topic == "points.earned":
        if int(payload.get("points") or 0) <= 0:
            return None
        if (payload.get("cause") or {}).get("type") == "campaign":
            return None  # a campaign's bonus points are announced by its own message
        return "points_earned", {
            "points": payload["points"],
            "pending_until": payload.get("pending_until"),
        }
    if event.topic == "points.expiring":
        return "points_expiring", {"points": payload["points"], "expires_at": payload["expires_at"]}
    if event.topic == "tier.changed":
        if payload.get("to") is None:
            return None
        return "tier_changed", {
            "tier_code": payload["to"],
            "previous_tier_code": payload.get("from"),
            "direction": payload.get("direction"),
        }
    if event.topic == "coupon.issued":
        if payload.get("source_type") == "campaign":
            return None
        template = "reward_ready" if payload.get("reward_id") else "coupon_issued"
        return template, {"coupon_id": payload["code_id"], "offer_id": payload["offer_id"]}
    return None


def drafts_for(events: Sequence[outbox.Event], now: datetime) -> list[Draft]:
    """The messages a chunk of events calls for, reading the chunk's people, consents and
    contacts once (a few statements however many events)."""
    wanted = [
        (event, found)
        for event in events
        if event.member_id is not None and (found := message_for(event)) is not None
    ]
    if not wanted:
        return []
    judge = policies.Evaluator(
        ((event.member_id, Purpose.TRANSACTIONAL) for event, _ in wanted),
        now=now,
        policy=policies.Policy(),
    )
    active = {
        member_id: person
        for member_id, person in judge.people.items()
        if person.status == MemberStatus.ACTIVE.value
    }
    reachable = contacts_many({person.id for person in active.values()})
    drafts = []
    for event, (template, variables) in wanted:
        person = active.get(event.member_id)  # type: ignore[arg-type]
        if person is None:
            continue
        for channel in Channel:
            if channel not in reachable[person.id]:
                continue
            if not judge.allows(person.id, channel, Purpose.TRANSACTIONAL):
                continue
            drafts.append(
                Draft(
                    member_id=person.id,
                    channel=channel,
                    template=template,
                    purpose=Purpose.TRANSACTIONAL,
                    dedupe_key=f"{event.topic}:{event.id}:{channel.value}",
                    variables=variables,
                )
            )
    return drafts


@outbox.consumer(*TOPICS, name=CONSUMER, batch=True)
def on_events(events: Sequence[outbox.Event]) -> None:
    """Queue the messages of a chunk of events: one INSERT for all of them."""
    now = utcnow()
    create_messages(drafts_for(events, now), now)


def on_event(event: outbox.Event) -> None:
    """One event (tests, replays by hand)."""
    on_events([event])
