"""Outbox consumers: named handlers subscribed to topics.

    @outbox.consumer("points.earned", "tier.changed", name="notifications.sms")
    def send_sms(event: outbox.Event) -> None:
        ...

The name is the consumer's identity in `outbox_deliveries`: keep it stable (renaming a
consumer orphans its pending deliveries). Without `name`, the function's dotted path is used,
so moving or renaming the function renames the consumer: give long-lived consumers a name.

A consumer is called outside any database transaction the relay holds, at least once per
event (twice only if the worker dies between the call and recording the result): it must be
idempotent by `event.id`. Database writes it makes through `db.session` commit together with
its "done" record, or are rolled back when it raises. It receives ids, not personal data: it
reads contact details (phone, email, name) when it acts, so an erased member gets nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from loyalty.outbox.events import Event

Handler = Callable[[Event], None]


@dataclass(frozen=True)
class Consumer:
    name: str
    topics: frozenset[str]
    handler: Handler


_consumers: dict[str, Consumer] = {}

MAX_NAME_LENGTH = 100  # outbox_deliveries.consumer


def consumer(*topics: str, name: str | None = None) -> Callable[[Handler], Handler]:
    """Register the decorated function for `topics` under a stable `name`.

    Registering the same function again under the same name adds topics; another function
    under a taken name is refused (two consumers would share one delivery state).
    """
    if not topics:
        raise ValueError("a consumer needs at least one topic")

    def register(func: Handler) -> Handler:
        key = name or f"{func.__module__}.{func.__qualname__}"
        if not 1 <= len(key) <= MAX_NAME_LENGTH:
            raise ValueError(f"consumer name must be 1-{MAX_NAME_LENGTH} characters: {key!r}")
        existing = _consumers.get(key)
        if existing is not None and existing.handler is not func:
            raise ValueError(f"another function is already registered as consumer {key!r}")
        known = existing.topics if existing is not None else frozenset()
        _consumers[key] = Consumer(key, known | frozenset(topics), func)
        return func

    return register


def unregister(name: str) -> None:
    """Forget a consumer (its deliveries stay; they resume if it is registered again)."""
    _consumers.pop(name, None)


def registered() -> list[Consumer]:
    """Every consumer, by name (a stable order for the relay)."""
    return [_consumers[name] for name in sorted(_consumers)]


def subscribers(topic: str) -> list[str]:
    return [c.name for c in registered() if topic in c.topics]


def get(name: str) -> Consumer | None:
    return _consumers.get(name)
