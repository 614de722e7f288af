"""Delivery signatures, the way Stripe signs its webhooks.

    Omniloyal-Signature: t=1700000000,v1=5257a869e7...[,v1=<signed with the previous secret>]

`v1` is the hex HMAC-SHA256, keyed with the subscription's secret, of `"{t}.{body}"` (the
timestamp, a dot, and the raw request body). A receiver recomputes it over the bytes it
received, compares in constant time against each v1, and refuses a `t` older than its
tolerance (replays). During a secret rotation a delivery carries one v1 per valid secret.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

HEADER = "Omniloyal-Signature"
SECRET_PREFIX = "whsec_"
DEFAULT_TOLERANCE_SECONDS = 300


def new_secret() -> str:
    return SECRET_PREFIX + secrets.token_urlsafe(32)


def sign(secret: str, timestamp: int, body: bytes) -> str:
    signed = str(timestamp).encode() + b"." + body
    return hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()


def signature_header(secrets_: list[str], timestamp: int, body: bytes) -> str:
    return ",".join([f"t={timestamp}", *(f"v1={sign(s, timestamp, body)}" for s in secrets_)])


def verify(secret: str, header: str, body: bytes, *, now: float, tolerance: int = 300) -> bool:
    """What a receiver does: True if one v1 matches and t is within the tolerance."""
    timestamp, candidates = None, []
    for part in header.split(","):
        key, _, value = part.strip().partition("=")
        if key == "t" and value.isdigit():
            timestamp = int(value)
        elif key == "v1":
            candidates.append(value)
    if timestamp is None or abs(now - timestamp) > tolerance:
        return False
    expected = sign(secret, timestamp, body)
    return any(hmac.compare_digest(expected, candidate) for candidate in candidates)
