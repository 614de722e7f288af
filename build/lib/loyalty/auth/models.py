from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from loyalty.db import BigInt, JSONType, UTCDateTime, db


class ApiClient(db.Model):
    """A system that calls the API: a store's POS, the web shop, the app backend, a tool.

    The key is shown once at creation; only its SHA-256 digest is stored. Keys are 256-bit
    random tokens, so a fast hash is enough (a slow password hash would cost every request
    tens of milliseconds without adding safety against a brute force that is already
    infeasible).
    """

    __tablename__ = "api_clients"

    id: Mapped[int] = mapped_column(BigInt, primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(120))
    key_prefix: Mapped[str] = mapped_column(sa.String(16), unique=True)
    key_digest: Mapped[str] = mapped_column(sa.String(64))
    scopes: Mapped[list[str]] = mapped_column(JSONType)
    store_id: Mapped[str | None] = mapped_column(sa.ForeignKey("stores.id"), index=True)
    active: Mapped[bool] = mapped_column(sa.Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class UsedQrToken(db.Model):
    """A member QR token used at a till: each token is good for one use.

    Keyed by a digest of what the token's signature covers; purged once past expiry.
    """

    __tablename__ = "used_member_qr_tokens"

    digest: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    member_id: Mapped[int] = mapped_column(BigInt)
    used_at: Mapped[datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
