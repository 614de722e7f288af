"""Tier jobs (being built)."""

from loyalty.scheduler import Schedule


def schedules() -> list[Schedule]:
    return []
