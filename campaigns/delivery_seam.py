"""How journey steps reach members: the messages of one chunk of the journey engine, read
and queued in bulk over the notifications pipeline (`notifications.bulk` for the reads,
`pipeline.create_messages` for the insert, as the campaigns' fan-out does), never one member
at a time.

    deliveries = Deliveries(person_ids, now)   # consents and destinations: 3 reads in all
    details = deliveries.add(member_id, ...)   # the channel, decided now (or suppressed)
    queued = deliveries.queue()                # one INSERT ... ON CONFLICT for the chunk

The first channel of the step's order that the member consented to (marketing) and can be
reached on gets the message; it is queued in the caller's transaction under a dedupe key,
so a step that runs again never sends twice (notifications' UNIQUE dedupe key). Consent,
quiet hours and caps are checked again at send time by the pipeline.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from notifications import bulk
from notifications.consent import Purpose
from notifications.pipeline import Draft, create_messages
from notifications.providers.base import Channel

NO_CHANNEL = "no channel with consent and a destination"


class Deliveries:
    """The messages of one chunk: what the chunk's people allow and where they are reached
    is read once for all of them; the messages are queued together by `queue()`."""

    def __init__(self, person_ids: Iterable[int], now: datetime) -> None:
        ids = sorted(set(person_ids))
        self.now = now
        self.granted = bulk.marketing_consents(ids)
        self.reach = bulk.reachable(ids, now)
        self.pending: list[Draft] = []

    def pick_channel(self, member_id: int, channels: Sequence[str]) -> str | None:
        """The first channel of `channels` the member allows marketing on and is reachable
        on (`member_id` is the person: the engine resolves merges under the lock)."""
        for name in channels:
            channel = Channel(name)
            if channel in self.granted.get(member_id, ()) and channel in self.reach.get(
                member_id, ()
            ):
                return channel.value
        return None

    def add(
        self,
        member_id: int,
        *,
        template: str,
        channels: Sequence[str],
        dedupe_key: str,
        variables: Mapping[str, Any],
    ) -> dict[str, Any]:
        """Decide the member's channel and hold the message for `queue()`; the details the
        step run records (`outcome` queued, or suppressed with the reason)."""
        channel = self.pick_channel(member_id, channels)
        if channel is None:
            return {"outcome": "suppressed", "reason": NO_CHANNEL}
        self.pending.append(
            Draft(
                member_id=member_id,
                channel=Channel(channel),
                template=template,
                dedupe_key=dedupe_key,
                purpose=Purpose.MARKETING,
                variables=dict(variables),
            )
        )
        return {"outcome": "queued", "channel": channel, "dedupe_key": dedupe_key}

    def queue(self) -> dict[str, int]:
        """Queue every held message in one statement; dedupe key -> message id of those
        inserted (a key already used is absent: its step was queued before)."""
        messages, self.pending = self.pending, []
        return create_messages(messages, self.now)


def settle(details: dict[str, Any], queued: Mapping[str, int]) -> tuple[str, dict[str, Any]]:
    """A message step's outcome once the chunk's messages are queued: (outcome, details)."""
    details = dict(details)
    outcome = details.pop("outcome")
    key = details.pop("dedupe_key", None)
    if key is None:
        return outcome, details
    message_id = queued.get(key)
    return ("queued" if message_id is not None else "already_queued"), {
        **details,
        "message_id": message_id,
    }
