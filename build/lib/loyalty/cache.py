"""Per-process caches for rows read on every request (API keys, stores, tiers, earning rules).

A `TTLCache` holds immutable snapshots (never ORM objects) for `ttl` seconds, per database.
It names the models it is built from; any ORM write to one of them in this process clears it
at once (when the write is flushed) and again when that transaction commits or rolls back, so
a concurrent request can't keep the row as it was before the commit, and a transaction never
caches what it wrote itself (it reads past the cache until it ends). Writes made by another
process (another gunicorn worker) are seen within the TTL: a key revoked there keeps working
here for up to `DEFAULT_TTL_SECONDS`, a new earning rule applies here that much later.

Tests call `clear_all()` between tests.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Hashable
from typing import Any, Generic, TypeVar

import sqlalchemy as sa
from sqlalchemy.orm import Session, SessionTransaction

from loyalty.db import db

V = TypeVar("V")

DEFAULT_TTL_SECONDS = 5.0
_PENDING = "omniloyal.cache.pending"  # session.info: caches this transaction invalidated

_caches: list[TTLCache[Any]] = []
_by_model: dict[type, list[TTLCache[Any]]] = {}


class TTLCache(Generic[V]):
    """A dict of snapshots that expire after `ttl` seconds (see the module docstring)."""

    def __init__(
        self,
        name: str,
        *,
        models: tuple[type, ...],
        ttl: float = DEFAULT_TTL_SECONDS,
        max_entries: int = 10_000,
        cache_none: bool = True,
    ) -> None:
        self.name = name
        self.cache_none = cache_none
        self.ttl = ttl
        self.max_entries = max_entries
        self._entries: dict[tuple[int, Hashable], tuple[float, V]] = {}
        self._generation = 0
        self._lock = threading.Lock()
        _caches.append(self)
        for model in models:
            _by_model.setdefault(model, []).append(self)

    def get(self, key: Hashable, load: Callable[[], V]) -> V:
        """The cached value for `key`, or `load()` (cached unless this transaction wrote)."""
        full_key = (id(db.engine), key)
        entry = self._entries.get(full_key)
        now = time.monotonic()
        if entry is not None and entry[0] > now:
            return entry[1]
        if self in db.session.info.get(_PENDING, ()):
            return load()  # this transaction changed the rows: never cache what it sees
        generation = self._generation
        value = load()
        if value is None and not self.cache_none:
            return value
        with self._lock:
            if generation == self._generation:  # no write was flushed while we loaded
                if len(self._entries) >= self.max_entries:
                    self._entries.clear()
                self._entries[full_key] = (now + self.ttl, value)
        return value

    def clear(self) -> None:
        with self._lock:
            self._generation += 1
            self._entries.clear()


def clear_all() -> None:
    """Forget every cached snapshot (tests call it between tests)."""
    for cache in _caches:
        cache.clear()


@sa.event.listens_for(Session, "after_flush")
def _on_flush(session: Session, _context: Any) -> None:
    if not _by_model:
        return
    touched: set[TTLCache[Any]] = set()
    for collection in (session.new, session.dirty, session.deleted):
        for instance in collection:
            touched.update(_by_model.get(type(instance), ()))
    if touched:
        for cache in touched:
            cache.clear()
        session.info.setdefault(_PENDING, set()).update(touched)


@sa.event.listens_for(Session, "after_transaction_end")
def _on_end(session: Session, transaction: SessionTransaction) -> None:
    if transaction.parent is not None:
        return  # a savepoint or a subtransaction: the database transaction goes on
    pending = session.info.pop(_PENDING, None)
    if pending:
        for cache in pending:
            cache.clear()
