"""Journeys on the journey engine (campaigns/journeys): the list with members per step, a
journey's steps and results, and activate / pause / resume (the operations the journeys
API calls, audited)."""

from __future__ import annotations

from typing import Any

from flask import abort, flash, redirect, url_for
from flask_babel import gettext as _

from loyalty.clock import utcnow
from loyalty.dashboard.access import needs
from loyalty.dashboard.blueprint import bp, render
from loyalty.dashboard.edge import Refused, change
from loyalty.dashboard.roles import Permission
from loyalty.db import db

# action -> the status it asks for; "resume" is "activate" of a paused journey.
ACTIONS = {"activate": "active", "resume": "active", "pause": "paused"}
LIST_LIMIT = 200


@bp.route("/journeys")
@needs(Permission.VIEW)
def journeys() -> Any:
    from campaigns import journeys as journey_ops

    found = journey_ops.list_journeys(after_id=None, limit=LIST_LIMIT)
    return render(
        "journeys.html",
        journeys=found,
        counts=journey_ops.entries_per_step([j.id for j in found]),
    )


def _journey_or_404(journey_id: int) -> Any:
    from campaigns.journey_models import Journey

    found = db.session.get(Journey, journey_id)
    if found is None:
        abort(404)
    return found


@bp.route("/journeys/<int:journey_id>")
@needs(Permission.VIEW)
def journey(journey_id: int) -> Any:
    from campaigns import journeys as journey_ops

    found = _journey_or_404(journey_id)
    results = journey_ops.results(journey_id)
    outcomes: dict[int, list[tuple[str, int]]] = {}
    for row in results["steps"]:
        outcomes.setdefault(row["step_index"], []).append((row["outcome"], row["count"]))
    return render(
        "journey.html",
        journey=found,
        steps=journey_ops.steps_of(found.id, found.version),
        counts=journey_ops.entries_per_step([found.id])[found.id],
        results=results,
        outcomes=outcomes,
    )


@bp.route("/journeys/<int:journey_id>/<action>", methods=["POST"])
@needs(Permission.JOURNEYS_WRITE)
def journey_action(journey_id: int, action: str) -> Any:
    from campaigns import journeys as journey_ops

    if action not in ACTIONS:
        abort(404)
    _journey_or_404(journey_id)
    try:
        changed = change(
            f"journeys.{action}",
            lambda: journey_ops.set_status(journey_id, ACTIONS[action], now=utcnow()),
            target_type="journey",
            target_id=journey_id,
        )
    except Refused:
        return redirect(url_for("dashboard.journey", journey_id=journey_id))
    if changed.status == "active" and changed.trigger == "segment":
        # As the API's activate does, after the commit: the audience enters in a job.
        from campaigns.journey_jobs import enter_segment_audience

        enter_segment_audience.enqueue(changed.id)
    flash(_("Journey: %(status)s.", status=_(changed.status)), "ok")
    return redirect(url_for("dashboard.journey", journey_id=journey_id))
