"""Outbox admin API: see the dead letters (deliveries that used up their attempts) and retry
them, one or all. Admin scope, like the other operator tools."""

from __future__ import annotations

from typing import Any

from loyalty.api import Blueprint
from loyalty.auth import scopes
from loyalty.auth.context import requires
from loyalty.clock import utcnow
from loyalty.http import write_endpoint
from loyalty.outbox import admin
from loyalty.outbox.models import OutboxDelivery, OutboxEvent
from loyalty.outbox.schemas import (
    DeadLetterPageSchema,
    DeadLetterQuery,
    DeliverySchema,
    RetryAllRequestSchema,
    RetryAllResultSchema,
)
from loyalty.pagination import int_cursor

blp = Blueprint("outbox", __name__, description="Outbox deliveries: dead letters and retries")
API_KEY = [{"ApiKey": []}]


def _view(delivery: OutboxDelivery, event: OutboxEvent) -> dict[str, Any]:
    return {
        "id": delivery.id,
        "consumer": delivery.consumer,
        "status": delivery.status,
        "attempts": delivery.attempts,
        "next_attempt_at": delivery.next_attempt_at,
        "last_error": delivery.last_error,
        "created_at": delivery.created_at,
        "updated_at": delivery.updated_at,
        "event_id": event.id,
        "topic": event.topic,
        "member_id": event.member_id,
        "payload": event.payload,
        "occurred_at": event.occurred_at,
    }


@blp.route("/outbox/dead-letters")
@blp.doc(security=API_KEY)
@requires(scopes.ADMIN)
@blp.arguments(DeadLetterQuery, location="query")
@blp.response(200, DeadLetterPageSchema)
def list_dead_letters(query: dict[str, Any]) -> Any:
    """Deliveries that failed their last allowed attempt, oldest first, with the event and
    the last error."""
    found = admin.list_dead_letters(
        consumer=query["consumer"], after_id=int_cursor(query["cursor"]), limit=query["limit"]
    )
    next_cursor = None if found.next_after_id is None else str(found.next_after_id)
    return {"items": [_view(*item) for item in found.items], "next_cursor": next_cursor}


@blp.route("/outbox/dead-letters/<int:delivery_id>/retry", methods=["POST"])
@blp.doc(security=API_KEY)
@requires(scopes.ADMIN)
@write_endpoint()
@blp.response(200, DeliverySchema)
def retry_dead_letter(delivery_id: int) -> Any:
    """Put a dead letter back in its member's queue with all its attempts (409 if it is not
    dead). It is delivered late: after the member's events that went on meanwhile."""
    return _view(*admin.retry_dead_letter(delivery_id, now=utcnow()))


@blp.route("/outbox/dead-letters/retry", methods=["POST"])
@blp.doc(security=API_KEY)
@requires(scopes.ADMIN)
@write_endpoint()
@blp.arguments(RetryAllRequestSchema)
@blp.response(200, RetryAllResultSchema)
def retry_dead_letters(data: dict[str, Any]) -> Any:
    """Retry every dead letter, or one consumer's (after fixing what made them fail)."""
    return {"retried": admin.retry_dead_letters(now=utcnow(), consumer=data["consumer"])}
