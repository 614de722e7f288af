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

A consumer declared with `batch=True` receives a list of events (a claimed chunk, in event
id order, at most one per member) and handles them at once (one query for all their
members instead of one per event). If it raises, the relay calls it again with each event
alone, so one bad event fails only its own delivery.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from loyalty.outbox.events import Event

Handler = Callable[[Event], None]
BatchHandler = Callable[[Sequence[Event]], None]


@dataclass(frozen=True)
class Consumer:
    name: str
    topics: frozenset[str]
    handler: Any  # Handler, or BatchHandler when `batch`
    batch: bool = False

    def handle(self, events: Sequence[Event]) -> None:
        """Hand `events` to the consumer: all at once, or one by one."""
        if self.batch:
            self.handler(list(events))
            return
        for event in events:
            self.handler(event)


_consumers: dict[str, Consumer] = {}

MAX_NAME_LENGTH = 100  # outbox_deliveries.consumer


def consumer(*topics: str, name: str | None = None, batch: bool = False) -> Callable[[Any], Any]:
    """Register the decorated function for `topics` under a stable `name`.

    Registering the same function again under the same name adds topics; another function
    under a taken name is refused (two consumers would share one delivery state).
    `batch=True`: the function takes a list of events (see the module docstring).
    """
    if not topics:
        raise ValueError("a consumer needs at least one topic")

    def register(func: Any) -> Any:
        key = name or f"{func.__module__}.{func.__qualname__}"
        if not 1 <= len(key) <= MAX_NAME_LENGTH:
            raise ValueError(f"consumer name must be 1-{MAX_NAME_LENGTH} characters: {key!r}")
        existing = _consumers.get(key)
        if existing is not None and existing.handler is not func:
            raise ValueError(f"another function is already registered as consumer {key!r}")
        known = existing.topics if existing is not None else frozenset()
        _consumers[key] = Consumer(key, known | frozenset(topics), func, batch)
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
