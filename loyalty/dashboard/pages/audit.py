"""The audit log: search and CSV export."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from typing import Any

from flask import Response, request, stream_with_context
from flask_login import current_user

from loyalty.dashboard import audit
from loyalty.dashboard.access import needs
from loyalty.dashboard.blueprint import bp, render
from loyalty.dashboard.edge import record_event
from loyalty.dashboard.roles import Permission


def _date(name: str) -> datetime | None:
    raw = request.args.get(name, "").strip()
    try:
        day = datetime.strptime(raw, "%Y-%m-%d").date() if raw else None
    except ValueError:
        return None
    return datetime.combine(day, time(), tzinfo=UTC) if day else None


def _query() -> audit.AuditQuery:
    def text(name: str) -> str | None:
        return request.args.get(name, "").strip()[:200] or None

    until = _date("until")
    if until is not None:
        until += timedelta(days=1)
    return audit.AuditQuery(
        text=text("q"),
        action=text("action"),
        target_type=text("target_type"),
        target_id=text("target_id"),
        since=_date("since"),
        until=until,
    )


@bp.route("/audit")
@needs(Permission.AUDIT)
def audit_log() -> Any:
    before = request.args.get("before", "")
    before_id = int(before) if before.isdigit() and len(before) < 19 else None
    rows = audit.search(_query(), before_id=before_id, limit=50)
    return render("audit.html", rows=rows, args=request.args)


@bp.route("/audit.csv")
@needs(Permission.AUDIT)
def audit_csv() -> Any:
    query = _query()
    record_event("audit.export", actor=current_user.actor, after={"filters": vars(query)})
    return Response(
        stream_with_context(audit.export_csv(query)),
        mimetype="text/csv",
        headers={"Content-Disposition": 'attachment; filename="audit-log.csv"'},
    )
