"""The send job (RQ queue "notifications") and its schedule.

The scheduler enqueues `send-notifications` every 2 seconds (one job per slot across every
worker); a run sends until nothing is due or its 50 s budget is spent, so while a big send
is going out the next slots' jobs start on other workers and share the work through
`FOR UPDATE SKIP LOCKED`. Redis never holds the only copy of a message: the job derives its
work from the `messages` table, so a Redis restart loses nothing.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from flask import current_app

from loyalty.clock import utcnow
from loyalty.queue import job
from loyalty.scheduler import Schedule
from notifications import pipeline
from notifications.providers.base import Channel, Provider

SEND_EVERY_SECONDS = 2
SEND_TIME_BUDGET = 50.0  # seconds; well inside the job's timeout


def providers() -> dict[Channel, Provider]:
    """The app's providers, built once per process from its settings."""
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    built = app.extensions.get("omniloyal.notify.providers")
    if built is None:
        built = pipeline.build_providers(app.extensions["omniloyal.settings"])
        app.extensions["omniloyal.notify.providers"] = built
    return built


@job("notifications", timeout=180)
def send_notifications(chunk: int = 100) -> dict[str, Any]:
    stats = pipeline.send_due(
        settings=current_app.extensions["omniloyal.settings"],
        providers=providers(),
        redis=current_app.extensions["omniloyal.redis"],
        clock=utcnow,
        chunk=chunk,
        time_budget=SEND_TIME_BUDGET,
    )
    return asdict(stats)


def schedules() -> list[Schedule]:
    return [Schedule("send-notifications", SEND_EVERY_SECONDS, send_notifications)]
