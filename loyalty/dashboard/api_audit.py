"""Audit entries for changes made with the admin API (keys with the admin, coupons:admin,
segments:write, campaigns:write or journeys:write scope): the same log as the dashboard's,
written in the write's transaction through loyalty.http's write observer."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from flask import Response, current_app, g, request

from loyalty.auth import scopes
from loyalty.clock import utcnow
from loyalty.dashboard import audit
from loyalty.http import observe_writes

AUDITED_SCOPES = frozenset(
    {
        scopes.ADMIN,
        scopes.COUPONS_ADMIN,
        scopes.SEGMENTS_WRITE,
        scopes.CAMPAIGNS_WRITE,
        scopes.JOURNEYS_WRITE,
    }
)
# Which URL argument names which kind of target.
TARGET_ARGUMENTS = {
    "member_id": "member",
    "survivor_id": "member",
    "offer_id": "offer",
    "segment_id": "segment",
    "client_id": "api_client",
    "campaign_id": "campaign",
    "journey_id": "journey",
}
# Response fields that never go into the log (personal data; a key shown once).
PRIVATE_FIELDS = frozenset(
    {"name", "email", "phone", "birthday", "value", "identities", "key", "secret", "reason"}
)


def _target() -> tuple[str | None, str | None]:
    for argument, kind in TARGET_ARGUMENTS.items():
        if request.view_args and argument in request.view_args:
            return kind, str(request.view_args[argument])
    return None, None


def _reason() -> str | None:
    body = request.get_json(silent=True)
    reason = body.get("reason") if isinstance(body, dict) else None
    return reason if isinstance(reason, str) else None


def _summary(response: Response) -> dict[str, Any] | None:
    try:
        body = json.loads(response.get_data())
    except ValueError:
        return None
    if not isinstance(body, dict):
        return None
    return {
        k: v
        for k, v in body.items()
        if k not in PRIVATE_FIELDS and isinstance(v, int | float | bool | str) and len(str(v)) < 200
    }


@observe_writes
def audit_admin_writes() -> Callable[[Response], None] | None:
    view = current_app.view_functions.get(request.endpoint or "")
    if getattr(view, "_required_scope", None) not in AUDITED_SCOPES:
        return None
    caller = g.get("caller")
    if caller is None or caller.client_id is None:
        return None
    target_type, target_id = _target()
    before = audit.snapshot(target_type, target_id)

    def finish(response: Response) -> None:
        kind, target = target_type, target_id
        after = audit.snapshot(kind, target)
        summary = _summary(response)
        if kind is None and summary and "id" in summary:
            target = str(summary["id"])
        audit.record(
            actor=caller.actor,
            source="api",
            action=f"api.{request.endpoint}",
            now=utcnow(),
            target_type=kind,
            target_id=target,
            reason=_reason(),
            before=before,
            after=after if after is not None else summary,
            request_id=g.get("request_id"),
        )

    return finish
