"""The online-to-offline templates a marketer fills in; each makes ordinary journeys (and a
store event), so they run, version, pause and report like any other journey.

- launch: the store event + a `segment` journey announcing it (message with `event_id`);
  members reserve (/me/events/{id}/reservation), the till checks them in (points), and a
  purchase within `attribution_days` of the check-in is attributed (campaigns.o2o).
- book in store: a `segment` journey issuing each member a code of the offer redeemable
  only at their nearest stores (the code's `store_ids`, enforced by the coupons domain at
  redemption), then a message carrying the code.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from campaigns import journeys, o2o
from campaigns.journey_models import Journey, StoreEvent
from campaigns.segments import get_segment
from loyalty.coupons.offers import get_offer

EVENT_FIELDS = (
    "name",
    "store_id",
    "starts_at",
    "ends_at",
    "capacity",
    "checkin_points",
    "attribution_days",
)


def launch(data: dict[str, Any], *, now: datetime, actor: str) -> tuple[StoreEvent, Journey]:
    get_segment(data["segment_id"])
    event = o2o.create_event({k: data[k] for k in EVENT_FIELDS}, now=now)
    journey = journeys.create_journey(
        {
            "name": f"Launch: {data['name']}"[:200],
            "kind": "launch",
            "trigger": "segment",
            "segment_id": data["segment_id"],
            "reentry": "never",
            "holdout_pct": data["holdout_pct"],
            "attribution_days": data["attribution_days"],
            "steps": [
                {
                    "type": "message",
                    "template": data["template"],
                    "channels": data["channels"],
                    "event_id": event.id,
                }
            ],
        },
        now=now,
        actor=actor,
    )
    event.journey_id = journey.id
    return event, journey


def book_in_store(data: dict[str, Any], *, now: datetime, actor: str) -> Journey:
    get_segment(data["segment_id"])
    get_offer(data["offer_id"])
    return journeys.create_journey(
        {
            "name": data["name"],
            "kind": "book_in_store",
            "trigger": "segment",
            "segment_id": data["segment_id"],
            "reentry": "never",
            "holdout_pct": data["holdout_pct"],
            "steps": [
                {
                    "type": "coupon",
                    "offer_id": data["offer_id"],
                    "nearest_stores": data["nearest_stores"],
                },
                {"type": "message", "template": data["template"], "channels": data["channels"]},
            ],
        },
        now=now,
        actor=actor,
    )
