"""Idempotency keys: a retried write returns the first response and has no second effect.

The key row is inserted in the same transaction as the write it guards. On PostgreSQL a
concurrent duplicate's INSERT waits on the unique index until the first transaction ends,
then sees the committed row and replays its response; if the first rolled back, the
duplicate proceeds as the first. On SQLite, writes are serialised by BEGIN IMMEDIATE.
"""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from loyalty.db import BigInt, UTCDateTime, db, upsert_insert
from loyalty.errors import IdempotencyKeyReused, InvalidInput


class IdempotencyRecord(db.Model):
    __tablename__ = "idempotency_keys"
    __table_args__ = (sa.UniqueConstraint("scope", "key"),)

    id: Mapped[int] = mapped_column(BigInt, primary_key=True)
    scope: Mapped[str] = mapped_column(sa.String(64))
    key: Mapped[str] = mapped_column(sa.String(255))
    fingerprint: Mapped[str] = mapped_column(sa.String(64))
    status_code: Mapped[int | None] = mapped_column(sa.Integer)
    response_body: Mapped[bytes | None] = mapped_column(sa.LargeBinary)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)


def fingerprint(method: str, path: str, body: bytes) -> str:
    return hashlib.sha256(b"\n".join([method.encode(), path.encode(), body])).hexdigest()


def validate_key(key: str) -> str:
    if not 1 <= len(key) <= 255 or not key.isprintable() or not key.isascii():
        raise InvalidInput("Idempotency-Key must be 1-255 printable ASCII characters")
    return key


def claim(scope: str, key: str, print_: str, now: datetime) -> IdempotencyRecord | None:
    """Claim `key` for this request. Returns the earlier record when it was used before.

    Raises IdempotencyKeyReused when the earlier request had another body or path.
    """
    table = IdempotencyRecord.__table__
    inserted = db.session.execute(
        upsert_insert(table)
        .on_conflict_do_nothing(index_elements=["scope", "key"])
        .returning(table.c.id),
        {"scope": scope, "key": key, "fingerprint": print_, "created_at": now},
    ).scalar()
    if inserted is not None:
        return None
    earlier = db.session.scalar(
        sa.select(IdempotencyRecord).where(
            IdempotencyRecord.scope == scope, IdempotencyRecord.key == key
        )
    )
    assert earlier is not None  # the conflicting row is committed, so it is visible now
    if earlier.fingerprint != print_:
        raise IdempotencyKeyReused("this Idempotency-Key was already used for a different request")
    return earlier


def record_response(scope: str, key: str, status_code: int, body: bytes) -> None:
    table = IdempotencyRecord.__table__
    db.session.execute(
        sa.update(table)
        .where(table.c.scope == sa.bindparam("s"), table.c.key == sa.bindparam("k"))
        .values(status_code=sa.bindparam("status"), response_body=sa.bindparam("body")),
        {"s": scope, "k": key, "status": status_code, "body": body},
    )


def purge_expired_chunk(now: datetime, ttl_hours: int, *, limit: int = 5000) -> int:
    """Delete up to `limit` records older than the TTL, oldest first (no commit: the purge
    job commits each chunk, so no transaction holds many row locks for long).

    The ids come from the `created_at` index; on PostgreSQL rows a request has locked (a
    replay in progress) are skipped and go in a later run. Two statements, not
    `DELETE ... WHERE id IN (SELECT ... LIMIT n)`: for that one PostgreSQL may plan a hash
    join over a sequential scan of the whole table; a list of ids is deleted by primary key.
    """
    table = IdempotencyRecord.__table__
    chosen = (
        sa.select(table.c.id)
        .where(table.c.created_at < now - timedelta(hours=ttl_hours))
        .order_by(table.c.created_at)
        .limit(limit)
    )
    if db.engine.dialect.name == "postgresql":
        chosen = chosen.with_for_update(skip_locked=True)
    ids = list(db.session.scalars(chosen))
    if not ids:
        return 0
    db.session.execute(sa.delete(table).where(table.c.id.in_(ids)))
    return len(ids)
