"""Transactional outbox: domain events written in the same transaction as the change, and
delivered to each consumer with its own state (see docs/architecture.md, "The outbox
delivery model").

- `emit()` adds an event inside the caller's transaction, so an event exists if and only if
  the change committed. Payloads carry ids, never personal data.
- `consumer(*topics, name=...)` registers a handler under a stable name; it gets an `Event`.
- The `relay-outbox` job (`relay.relay_batch`) fans each event out into one delivery per
  consumer and delivers it: per member in event order, with exponential backoff and a dead
  letter after the maximum attempts, the consumer running outside the claiming transaction.
- Dead letters are listed and retried through the admin API (`loyalty/outbox/api.py`);
  events whose deliveries are all done are purged after the retention period.
"""

from loyalty.outbox.consumers import Consumer, Handler, consumer, registered, unregister
from loyalty.outbox.events import Event, emit, event_insert, event_parameters
from loyalty.outbox.models import DeliveryStatus, OutboxDelivery, OutboxEvent
from loyalty.outbox.relay import RelayResult, relay_batch

__all__ = [
    "Consumer",
    "DeliveryStatus",
    "Event",
    "Handler",
    "OutboxDelivery",
    "OutboxEvent",
    "RelayResult",
    "consumer",
    "emit",
    "event_insert",
    "event_parameters",
    "registered",
    "relay_batch",
    "unregister",
]
