"""Auth jobs: forget the use records of member QR tokens that have expired anyway."""

from __future__ import annotations

from loyalty.auth import tokens
from loyalty.clock import utcnow
from loyalty.queue import job
from loyalty.scheduler import Schedule


@job("default")
def purge_used_qr_tokens() -> int:
    """Delete one chunk of expired QR use records (a short statement; the next run takes
    the next chunk). Returns how many were deleted."""
    return tokens.purge_used_qr_tokens(utcnow())


def schedules() -> list[Schedule]:
    return [Schedule("purge-used-qr-tokens", 300, purge_used_qr_tokens)]
