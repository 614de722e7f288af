"""How a journey step reaches a member: one small seam over the notifications pipeline, so
switching to the campaigns helper's `deliver_many` later touches this file only.

The first channel of the step's order that the member consented to (marketing) and can be
reached on gets the message; it is queued in the caller's transaction under a dedupe key,
so a step that runs again never sends twice (notifications' UNIQUE dedupe key).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from notifications import consent
from notifications.pipeline import member_destination, queue_message
from notifications.providers.base import Channel


def pick_channel(member_id: int, channels: Sequence[str]) -> str | None:
    """The first channel of `channels` the member allows marketing on and is reachable on."""
    for name in channels:
        channel = Channel(name)
        if not consent.allows(member_id, channel, consent.Purpose.MARKETING):
            continue
        if member_destination(member_id, channel) is not None:
            return channel.value
    return None


def deliver(
    member_id: int,
    *,
    template: str,
    channels: Sequence[str],
    dedupe_key: str,
    variables: Mapping[str, Any],
    now: datetime,
) -> dict[str, Any]:
    """Queue the message on the member's first usable channel; what happened, as details."""
    channel = pick_channel(member_id, channels)
    if channel is None:
        return {"outcome": "suppressed", "reason": "no channel with consent and a destination"}
    message = queue_message(
        member_id=member_id,
        channel=Channel(channel),
        template=template,
        purpose=consent.Purpose.MARKETING,
        dedupe_key=dedupe_key,
        variables=variables,
        now=now,
    )
    return {
        "outcome": "queued" if message is not None else "already_queued",
        "channel": channel,
        "message_id": message.id if message is not None else None,
    }
