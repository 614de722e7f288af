"""The deliver-webhooks job (queue "notifications")."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from flask import current_app

from loyalty.queue import job
from loyalty.scheduler import Schedule
from notifications.webhooks import operations


@job("notifications", timeout=300)
def deliver_webhooks() -> dict[str, Any]:
    policy = operations.policy_from(current_app.extensions["omniloyal.settings"])
    return asdict(operations.deliver_due(policy))


def schedules() -> list[Schedule]:
    return [Schedule("deliver-webhooks", 5, deliver_webhooks)]
