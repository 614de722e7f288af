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

from typing import Any

from loyalty import outbox
from loyalty.clock import utcnow
from loyalty.members.models import MemberStatus
from notifications.consent import Purpose, granted_channels, person_of
from notifications.pipeline import contacts, queue_message
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


@outbox.consumer(*TOPICS, name=CONSUMER)
def on_event(event: outbox.Event) -> None:
    if event.member_id is None:
        return
    wanted = message_for(event)
    if wanted is None:
        return
    template, variables = wanted
    person = person_of(event.member_id)
    if person is None or person.status != MemberStatus.ACTIVE.value:
        return
    now = utcnow()
    allowed = granted_channels(person.id, Purpose.TRANSACTIONAL)
    reachable = contacts(person.id)
    for channel in Channel:
        if not allowed[channel.value] or channel not in reachable:
            continue
        queue_message(
            member_id=person.id,
            channel=channel,
            template=template,
            purpose=Purpose.TRANSACTIONAL,
            dedupe_key=f"{event.topic}:{event.id}:{channel.value}",
            variables=variables,
            now=now,
        )
