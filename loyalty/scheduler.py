"""Periodic jobs: each worker checks what is due and enqueues it once per time slot.

A Redis SET NX per (job, slot) makes sure only one of many workers enqueues a slot, and
the jobs themselves are idempotent, so a slot that runs twice does no harm.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from flask import Flask


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
    return enqueued
