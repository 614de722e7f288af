"""Idempotency keys: a retried write returns the first response and has no second effect.

The key row is inserted in the same transaction as the write it guards. On PostgreSQL a
concurrent duplicate's INSERT waits on the unique index until the first transaction ends,
then sees the committed row and replays its response; if the first rolled back, the
duplicate proceeds as the first. On SQLite, writes are serialised by BEGIN IMMEDIATE.

A stored response may hold a member's personal data (a profile, an identity), so each
record notes the member its write concerned (`member_id`), and erasing that member blanks
the records that concern them or were made with their token (`blank_for_members`). A
blanked key still guards against a second effect: a retry gets a 410 problem, never the
write again and never the old body.
"""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta
from functools import cache

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from loyalty.db import BigInt, UTCDateTime, db, insert_unless_present
from loyalty.errors import IdempotencyKeyReused, InvalidInput, ResponseErased


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
    # The member the write concerned (no foreign key: the record outlives nothing it needs).
    member_id: Mapped[int | None] = mapped_column(BigInt, index=True)
    # Set when the member was erased: the response is gone, the key still blocks a rerun.
    erased_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


def member_scope(member_id: int) -> str:
    """The scope of keys sent with a member's own token (see auth.context.Caller)."""
    return f"member:{member_id}"


def blank_for_members(member_ids: list[int], now: datetime) -> int:
    """Erasure: drop the stored responses of writes that concerned these members or were
    made with their tokens. The fingerprint goes too (a hash of a body that held their
    data); the key stays, so a retry still can't run the write twice."""
    table = IdempotencyRecord.__table__
    result = db.session.execute(
        sa.update(table)
        .where(
            sa.or_(
                table.c.member_id.in_(member_ids),
                table.c.scope.in_([member_scope(member_id) for member_id in member_ids]),
            ),
            table.c.erased_at.is_(None),
        )
        .values(response_body=None, fingerprint="erased", erased_at=now)
    )
    return result.rowcount or 0


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
    inserted = db.session.execute(
        insert_unless_present(IdempotencyRecord.__table__, ("scope", "key")),
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
    if earlier.erased_at is not None:
        raise ResponseErased(
            "this Idempotency-Key's request succeeded; its response concerned a member whose "
            "personal data has since been erased, so it is not kept"
        )
    if earlier.fingerprint != print_:
        raise IdempotencyKeyReused("this Idempotency-Key was already used for a different request")
    return earlier


def stored_response(scope: str, key: str, print_: str) -> IdempotencyRecord | None:
    """The completed earlier request under `key` with this very fingerprint, read without
    claiming anything: how a request refused before its handler (rate limited, locked out)
    can still replay its first answer. None when there is nothing to replay."""
    earlier = db.session.scalar(
        sa.select(IdempotencyRecord).where(
            IdempotencyRecord.scope == scope, IdempotencyRecord.key == key
        )
    )
    if (
        earlier is None
        or earlier.status_code is None
        or earlier.erased_at is not None
        or earlier.fingerprint != print_
    ):
        return None
    return earlier


def record_response(
    scope: str, key: str, status_code: int, body: bytes, *, member_id: int | None
) -> None:
    db.session.execute(
        _record_response_statement(),
        {"s": scope, "k": key, "status": status_code, "body": body, "member": member_id},
    )


@cache
def _record_response_statement() -> sa.Update:
    table = IdempotencyRecord.__table__
    return (
        sa.update(table)
        .where(table.c.scope == sa.bindparam("s"), table.c.key == sa.bindparam("k"))
        .values(
            status_code=sa.bindparam("status"),
            response_body=sa.bindparam("body"),
            member_id=sa.bindparam("member"),
        )
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
