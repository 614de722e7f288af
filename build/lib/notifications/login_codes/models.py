"""One-time login codes. Neither the code nor the phone or email is stored: the code as an
HMAC digest (keyed with SECRET_KEY, salted by a random nonce), the destination as an HMAC
digest to find the latest code for it. Rows are purged after they expire."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from loyalty.db import BigInt, UTCDateTime, db


class LoginCode(db.Model):
    __tablename__ = "login_codes"
    __table_args__ = (
        sa.CheckConstraint("channel IN ('sms', 'email')", name="channel_known"),
        sa.CheckConstraint("attempts >= 0 AND attempts <= max_attempts", name="attempts_capped"),
        sa.Index("ix_login_codes_destination", "destination_digest", "id"),
        sa.Index("ix_login_codes_expires_at", "expires_at"),
    )

    id: Mapped[int] = mapped_column(BigInt, primary_key=True)
    channel: Mapped[str] = mapped_column(sa.String(16))
    destination_digest: Mapped[str] = mapped_column(sa.String(64))
    nonce: Mapped[str] = mapped_column(sa.String(32))
    code_digest: Mapped[str] = mapped_column(sa.String(64))
    attempts: Mapped[int] = mapped_column(sa.Integer, default=0)
    max_attempts: Mapped[int] = mapped_column(sa.Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
