"""Program policies that decide when points expire and what a return takes back."""

from __future__ import annotations

import calendar
import enum
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo


class ReturnPolicy(enum.StrEnum):
    """What a refund does when the points it reverses were already spent.

    - pending-only: only points still pending are revoked; spent points stay spent.
    - cap-at-zero: revoke what is there, never below zero; the rest is forgiven.
    - claw-back: revoke everything; what the balance can't cover is recorded as debt
      (a negative member debt account) that later earnings repay first.
    """

    PENDING_ONLY = "pending-only"
    CAP_AT_ZERO = "cap-at-zero"
    CLAW_BACK = "claw-back"

    @classmethod
    def parse(cls, raw: str) -> ReturnPolicy:
        from loyalty.config import ConfigError

        try:
            return cls(raw.strip().lower())
        except ValueError:
            choices = ", ".join(p.value for p in cls)
            raise ConfigError(
                f"OMNILOYAL_RETURN_POLICY must be one of {choices}: {raw!r}"
            ) from None


@dataclass(frozen=True)
class ExpiryPolicy:
    """When a lot of points earned at a given instant expires.

    Spelled in OMNILOYAL_POINTS_EXPIRY as:
    - ``never``
    - ``days:N``            N days after earning
    - ``months:N``          N calendar months after earning
    - ``months:N:end``      ... rounded up to the end of that month
    - ``years-end:N``       end of the Nth calendar year after the year of earning
      (``years-end:0`` is the end of the year of earning)

    Calendar months and years are the program's (OMNILOYAL_PROGRAM_TIMEZONE, `timezone`):
    points "expiring at the end of November" stop counting at midnight local time.
    """

    kind: str
    count: int = 0
    round_to_month_end: bool = False
    timezone: str = "UTC"

    @classmethod
    def parse(cls, raw: str, timezone: str = "UTC") -> ExpiryPolicy:
        from loyalty.config import ConfigError

        text = raw.strip().lower()
        if text == "never":
            return cls("never", timezone=timezone)
        match = re.fullmatch(r"(days|months|years-end):(\d{1,4})(:end)?", text)
        if not match or (match.group(3) and match.group(1) != "months"):
            raise ConfigError(
                "OMNILOYAL_POINTS_EXPIRY must be never, days:N, months:N, months:N:end or "
                f"years-end:N, got {raw!r}"
            )
        count = int(match.group(2))
        if match.group(1) != "years-end" and count == 0:
            raise ConfigError("OMNILOYAL_POINTS_EXPIRY needs a positive count")
        return cls(match.group(1), count, bool(match.group(3)), timezone)

    def expires_at(self, earned_at: datetime) -> datetime | None:
        """The first instant at which the lot no longer counts (UTC)."""
        if self.kind == "never":
            return None
        if self.kind == "days":
            return earned_at.astimezone(UTC) + timedelta(days=self.count)
        zone = ZoneInfo(self.timezone)
        earned_at = earned_at.astimezone(zone)
        if self.kind == "years-end":
            return datetime(earned_at.year + self.count + 1, 1, 1, tzinfo=zone).astimezone(UTC)
        month_index = earned_at.month - 1 + self.count
        year, month = earned_at.year + month_index // 12, month_index % 12 + 1
        if self.round_to_month_end:
            return _first_of_next_month(year, month, zone)
        day = min(earned_at.day, calendar.monthrange(year, month)[1])
        return earned_at.replace(year=year, month=month, day=day).astimezone(UTC)

    def __str__(self) -> str:
        if self.kind == "never":
            return "never"
        return f"{self.kind}:{self.count}" + (":end" if self.round_to_month_end else "")


def _first_of_next_month(year: int, month: int, zone: ZoneInfo) -> datetime:
    return datetime(year + month // 12, month % 12 + 1, 1, tzinfo=zone).astimezone(UTC)
