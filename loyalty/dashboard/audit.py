"""The audit log: every change made from the dashboard or with an admin API key.

`record` writes one entry in the caller's transaction (so the change and its entry commit
together). Entries hold ids and figures, never personal data: snapshots (`snapshot`) are
status, tier, balance, counts; a reason is kept in `audit_reasons`, which erasure removes.
The log itself refuses UPDATE and DELETE (database triggers).
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from loyalty.dashboard.models import AuditEntry, AuditReason
from loyalty.db import db
from loyalty.members.privacy import register_erase_step
from loyalty.members.resolution import history_member_ids

Snapshot = Callable[[str], dict[str, Any] | None]
_snapshots: dict[str, Snapshot] = {}


def register_snapshot(target_type: str, func: Snapshot) -> None:
    """How to describe a `target_type` before and after a change (no personal data)."""
    _snapshots[target_type] = func


def snapshot(target_type: str | None, target_id: str | None) -> dict[str, Any] | None:
    func = _snapshots.get(target_type or "")
    if func is None or target_id is None:
        return None
    return func(target_id)


def record(
    *,
    actor: str,
    action: str,
    now: datetime,
    source: str = "dashboard",
    target_type: str | None = None,
    target_id: Any = None,
    reason: str | None = None,
    before: Any = None,
    after: Any = None,
    request_id: str | None = None,
) -> AuditEntry:
    entry = AuditEntry(
        at=now,
        actor=actor,
        source=source,
        action=action,
        target_type=target_type,
        target_id=None if target_id is None else str(target_id),
        before=_jsonable(before),
        after=_jsonable(after),
        request_id=request_id,
    )
    db.session.add(entry)
    db.session.flush()
    if reason and reason.strip():
        db.session.add(AuditReason(entry_id=entry.id, reason=reason.strip()))
    return entry


def _jsonable(value: Any) -> Any:
    if value is None:
        return None
    return json.loads(json.dumps(value, default=str))


@dataclass
class AuditQuery:
    text: str | None = None  # in actor, action or target id
    action: str | None = None
    target_type: str | None = None
    target_id: str | None = None
    since: datetime | None = None
    until: datetime | None = None


def _where(query: AuditQuery) -> list[Any]:
    where: list[Any] = []
    if query.action:
        where.append(AuditEntry.action == query.action)
    if query.target_type:
        where.append(AuditEntry.target_type == query.target_type)
    if query.target_id:
        where.append(AuditEntry.target_id == query.target_id)
    if query.since:
        where.append(AuditEntry.at >= query.since)
    if query.until:
        where.append(AuditEntry.at < query.until)
    if query.text:
        like = f"%{query.text.strip()}%"
        where.append(
            sa.or_(
                AuditEntry.actor.ilike(like),
                AuditEntry.action.ilike(like),
                AuditEntry.target_id == query.text.strip(),
            )
        )
    return where


def search(
    query: AuditQuery, *, before_id: int | None = None, limit: int = 50
) -> list[tuple[AuditEntry, str | None]]:
    """Newest first, keyset-paged by id (the primary key's index)."""
    statement = (
        sa.select(AuditEntry, AuditReason.reason)
        .outerjoin(AuditReason, AuditReason.entry_id == AuditEntry.id)
        .where(*_where(query))
        .order_by(AuditEntry.id.desc())
        .limit(limit)
    )
    if before_id is not None:
        statement = statement.where(AuditEntry.id < before_id)
    return [(entry, reason) for entry, reason in db.session.execute(statement).all()]


CSV_COLUMNS = ["id", "at", "actor", "source", "action", "target_type", "target_id", "reason"]


def export_csv(query: AuditQuery, *, chunk: int = 1000) -> Iterator[str]:
    """The matching entries as CSV, newest first, read in keyset chunks."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow([*CSV_COLUMNS, "before", "after"])
    yield _drain(buffer)
    before_id = None
    while True:
        rows = search(query, before_id=before_id, limit=chunk)
        if not rows:
            return
        for entry, reason in rows:
            writer.writerow(
                [
                    entry.id,
                    entry.at.isoformat(),
                    entry.actor,
                    entry.source,
                    entry.action,
                    entry.target_type or "",
                    entry.target_id or "",
                    _safe_cell(reason or ""),
                    json.dumps(entry.before, sort_keys=True) if entry.before is not None else "",
                    json.dumps(entry.after, sort_keys=True) if entry.after is not None else "",
                ]
            )
        yield _drain(buffer)
        before_id = rows[-1][0].id


def _safe_cell(text: str) -> str:
    """A cell a spreadsheet would run as a formula gets a leading quote (CSV injection)."""
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def _drain(buffer: io.StringIO) -> str:
    text = buffer.getvalue()
    buffer.seek(0)
    buffer.truncate()
    return text


def erase_reasons(member_id: int, now: datetime) -> dict[str, Any]:
    """Reasons written about the person go; who changed what and when stays."""
    ids = [str(i) for i in history_member_ids(member_id)]
    entry_ids = sa.select(AuditEntry.id).where(
        AuditEntry.target_type == "member", AuditEntry.target_id.in_(ids)
    )
    result = db.session.execute(sa.delete(AuditReason).where(AuditReason.entry_id.in_(entry_ids)))
    return {"audit_reasons_deleted": result.rowcount or 0}


register_erase_step("dashboard.audit_reasons", erase_reasons)
