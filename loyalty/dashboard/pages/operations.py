"""Operations (admin): queues, failed jobs with retry, outbox dead letters, the scheduler's
heartbeat."""

from __future__ import annotations

import time
from typing import Any

from flask import flash, redirect, request, url_for
from flask_babel import gettext as _
from flask_login import current_user
from rq import Queue
from rq.job import Job

from loyalty.clock import utcnow
from loyalty.dashboard.access import needs
from loyalty.dashboard.blueprint import bp, render
from loyalty.dashboard.edge import Refused, change, record_event
from loyalty.dashboard.roles import Permission
from loyalty.queue import QUEUES, get_redis
from loyalty.scheduler import last_tick

SHOWN_FAILED = 50


def queue_status() -> list[dict[str, Any]]:
    connection = get_redis()
    found = []
    for name in QUEUES:
        queue = Queue(name, connection=connection)
        registry = queue.failed_job_registry
        failed_ids = registry.get_job_ids(0, SHOWN_FAILED - 1)
        failed = []
        for job in Job.fetch_many(failed_ids, connection=connection):
            if job is not None:
                failed.append(
                    {
                        "id": job.id,
                        "function": job.func_name,
                        "ended_at": job.ended_at,
                        "error": (job.latest_result().exc_string or "")[-300:]
                        if job.latest_result()
                        else "",
                    }
                )
        found.append(
            {"name": name, "queued": queue.count, "failed_count": registry.count, "failed": failed}
        )
    return found


@bp.route("/operations")
@needs(Permission.OPERATIONS)
def operations() -> Any:
    from loyalty.outbox.admin import backlog, list_dead_letters

    tick = last_tick(get_redis())
    return render(
        "operations.html",
        queues=queue_status(),
        dead_letters=list_dead_letters(limit=50).items,
        backlog=backlog(utcnow()),
        tick_age=None if tick is None else round(time.time() - tick, 1),
    )


@bp.route("/operations/jobs/retry", methods=["POST"])
@needs(Permission.OPERATIONS)
def retry_job() -> Any:
    queue_name = request.form.get("queue", "")
    job_id = request.form.get("job_id", "")
    if queue_name in QUEUES:
        registry = Queue(queue_name, connection=get_redis()).failed_job_registry
        if job_id in registry.get_job_ids():
            registry.requeue(job_id)
            record_event("operations.job_retry", actor=current_user.actor, target_type="rq_job",
                         target_id=job_id, after={"queue": queue_name})  # fmt: skip
            flash(_("Job queued again."), "ok")
    return redirect(url_for("dashboard.operations"))


@bp.route("/operations/dead-letters/retry", methods=["POST"])
@needs(Permission.OPERATIONS)
def retry_dead_letter() -> Any:
    from loyalty.outbox import admin

    raw = request.form.get("delivery_id", "")
    try:
        if raw.isdigit() and len(raw) < 19:
            change("outbox.dead_letter_retry",
                   lambda: admin.retry_dead_letter(int(raw), now=utcnow()),
                   target_type="outbox_delivery", target_id=raw)  # fmt: skip
        else:
            change("outbox.dead_letters_retry_all",
                   lambda: admin.retry_dead_letters(now=utcnow()),
                   details=lambda n: {"retried": n})  # fmt: skip
        flash(_("Delivery queued again."), "ok")
    except Refused:
        pass
    return redirect(url_for("dashboard.operations"))
