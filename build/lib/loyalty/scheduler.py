"""Periodic jobs: each worker checks what is due and enqueues it once per time slot.

A Redis SET NX per (job, slot) makes sure only one of many workers enqueues a slot, and
the jobs themselves are idempotent, so a slot that runs twice does no harm. Every tick
records its time under TICK_KEY (shown by /readyz), and the loop survives Redis and
database outages: a failed tick is logged and retried with backoff, never the end of it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from flask import Flask

log = logging.getLogger(__name__)

TICK_KEY = "omniloyal:scheduler:last_tick"  # unix time of the last completed tick
TICK_SECONDS = 1.0
MAX_BACKOFF_SECONDS = 30.0


@dataclass(frozen=True)
class Schedule:
    name: str
    every_seconds: int
    job: Callable[..., Any]


def schedules() -> list[Schedule]:
    # Imported here: each domain's jobs module imports the app's models.
    from loyalty.jobs import periodic_jobs

    return periodic_jobs()


def run_due_schedules(app: Flask, now: float | None = None) -> list[str]:
    connection = app.extensions["omniloyal.redis"]
    now = time.time() if now is None else now
    enqueued = []
    for schedule in schedules():
        slot = int(now // schedule.every_seconds)
        marker = f"omniloyal:schedule:{schedule.name}:{slot}"
        if connection.set(marker, 1, nx=True, ex=schedule.every_seconds * 2):
            schedule.job.enqueue(job_id=f"{schedule.name}-{slot}")
            enqueued.append(schedule.name)
    connection.set(TICK_KEY, repr(now))
    return enqueued


def last_tick(connection: Any) -> float | None:
    """When a scheduler last completed a tick (unix time), or None if none did since Redis
    started."""
    raw = connection.get(TICK_KEY)
    return float(raw) if raw is not None else None


def scheduler_loop(app: Flask, stop: threading.Event) -> None:
    """Tick every second until `stop` is set. A failing tick (Redis restarting, the
    database away) is logged and retried after a doubling pause of up to 30 s."""
    pause = TICK_SECONDS
    while not stop.is_set():
        try:
            with app.app_context():
                run_due_schedules(app)
            pause = TICK_SECONDS
        except Exception:  # keep ticking whatever happened; the log has the cause
            log.warning("scheduler tick failed; next try in %.0f s", pause, exc_info=True)
            stop.wait(pause)
            pause = min(pause * 2, MAX_BACKOFF_SECONDS)
            continue
        stop.wait(pause)
