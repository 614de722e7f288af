from __future__ import annotations

import enum
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from loyalty.db import UTCDateTime, db


class Channel(enum.StrEnum):
    ONLINE = "online"  # the web shop
    APP = "app"  # the mobile app
    STORE = "store"  # the retailer's own stores
    PARTNER = "partner"  # partner stores

    @property
    def needs_store(self) -> bool:
        return self in {Channel.STORE, Channel.PARTNER}


class Store(db.Model):
    __tablename__ = "stores"

    id: Mapped[str] = mapped_column(sa.String(64), primary_key=True)  # the retailer's code
    name: Mapped[str] = mapped_column(sa.String(200))
    region: Mapped[str | None] = mapped_column(sa.String(64), index=True)
    # ISO 3166 alpha-2; phone numbers typed at this store without a country code use it.
    country: Mapped[str | None] = mapped_column(sa.String(2))
    timezone: Mapped[str] = mapped_column(sa.String(64))
    partner: Mapped[bool] = mapped_column(sa.Boolean, default=False)
    active: Mapped[bool] = mapped_column(sa.Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
