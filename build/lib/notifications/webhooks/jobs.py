"""The deliver-webhooks job (queue "notifications")."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from flask import current_app

from loyalty.queue import job
from loyalty.scheduler import Schedule
from notifications.webhooks import operations


@job("default")
def purge_webhook_deliveries(chunk: int = 5000) -> int:
    from loyalty.clock import utcnow
    from loyalty.jobs import PURGE_TIME_BUDGET, run_in_chunks

    now = utcnow()
    return run_in_chunks(
        lambda: operations.purge_finished_chunk(now, retention=operations.RETENTION, limit=chunk),
        limit=chunk,
        time_budget=PURGE_TIME_BUDGET,
    )


@job("notifications", timeout=300)
def deliver_webhooks() -> dict[str, Any]:
    policy = operations.policy_from(current_app.extensions["omniloyal.settings"])
    return asdict(operations.deliver_due(policy))


def schedules() -> list[Schedule]:
    return [
        Schedule("deliver-webhooks", 5, deliver_webhooks),
        Schedule("purge-webhook-deliveries", 3600, purge_webhook_deliveries),
    ]
