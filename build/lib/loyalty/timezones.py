"""Member-facing times: stored in UTC, shown in the member's timezone."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from loyalty.errors import InvalidInput


def validate_timezone(name: str) -> str:
    if name not in _known():
        raise InvalidInput(
            f"{name!r} is not an IANA timezone (e.g. Europe/Paris)", field="timezone"
        )
    return name


def local(moment: datetime, timezone: str) -> datetime:
    try:
        return moment.astimezone(ZoneInfo(timezone))
    except ZoneInfoNotFoundError:
        return moment


_zones: set[str] | None = None


def _known() -> set[str]:
    global _zones
    if _zones is None:
        _zones = available_timezones() | {"UTC"}
    return _zones
