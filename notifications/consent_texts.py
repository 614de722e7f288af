"""Consent texts: the wording a member agrees to, per channel, purpose and locale, versioned.

Publishing appends a version (the table refuses UPDATE and DELETE, like the ledger): the
highest version of a (channel, purpose, locale) is the one in force, and every consent
granted over the API names the text in force then (`consent_changes.text_id`), so "what
exactly did this member agree to?" has an answer years later. No member data here.
"""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from loyalty.db import BigInt, UTCDateTime, db
from loyalty.errors import InvalidInput
from loyalty.ledger.models import make_append_only
from notifications.providers.base import Channel

LOCALES = ("en", "zh")  # the wording is written per language; zh-CN members read `zh`
MAX_TEXT = 5000


class ConsentText(db.Model):
    __tablename__ = "consent_texts"
    __table_args__ = (sa.UniqueConstraint("channel", "purpose", "locale", "version"),)

    id: Mapped[int] = mapped_column(BigInt, primary_key=True)
    channel: Mapped[str] = mapped_column(sa.String(16))
    purpose: Mapped[str] = mapped_column(sa.String(16))
    locale: Mapped[str] = mapped_column(sa.String(16))
    version: Mapped[int] = mapped_column(sa.Integer)
    text: Mapped[str] = mapped_column(sa.Text)
    created_by: Mapped[str] = mapped_column(sa.String(200))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


make_append_only(ConsentText.__table__)


def _check(channel: str, purpose: str, locale: str) -> tuple[str, str, str]:
    from notifications.consent import Purpose

    try:
        channel, purpose = Channel(channel).value, Purpose(purpose).value
    except ValueError as error:
        raise InvalidInput(str(error)) from None
    if locale not in LOCALES:
        raise InvalidInput(f"locale must be one of {', '.join(LOCALES)}", field="locale")
    return channel, purpose, locale


def publish(
    channel: str, purpose: str, locale: str, text: str, *, actor: str, now: datetime
) -> ConsentText:
    """A new version of the wording, in force from now on (earlier versions are kept)."""
    channel, purpose, locale = _check(channel, purpose, locale)
    text = text.strip()
    if not text:
        raise InvalidInput("the text is empty", field="text")
    if len(text) > MAX_TEXT:
        raise InvalidInput(f"at most {MAX_TEXT} characters", field="text")
    current = db.session.scalar(
        sa.select(sa.func.max(ConsentText.version)).where(
            ConsentText.channel == channel,
            ConsentText.purpose == purpose,
            ConsentText.locale == locale,
        )
    )
    row = ConsentText(
        channel=channel,
        purpose=purpose,
        locale=locale,
        version=(current or 0) + 1,
        text=text,
        created_by=actor[:200],
        created_at=now,
    )
    db.session.add(row)
    db.session.flush()  # two concurrent publishes: the unique version refuses the second
    return row


def in_force(channel: str, purpose: str, member_locale: str | None) -> ConsentText | None:
    """The text a member with this locale reads: their language's latest, else English."""
    language = (member_locale or "en").replace("_", "-").split("-")[0].lower()
    candidates = [language] if language in LOCALES else []
    candidates += [] if "en" in candidates else ["en"]
    rows = db.session.scalars(
        sa.select(ConsentText)
        .where(
            ConsentText.channel == str(channel),
            ConsentText.purpose == str(purpose),
            ConsentText.locale.in_(candidates),
        )
        .order_by(ConsentText.version.desc())
    ).all()
    for locale in candidates:
        for row in rows:
            if row.locale == locale:
                return row
    return None


def current_texts() -> dict[tuple[str, str, str], ConsentText]:
    """The text in force per (channel, purpose, locale)."""
    latest = (
        sa.select(
            ConsentText.channel,
            ConsentText.purpose,
            ConsentText.locale,
            sa.func.max(ConsentText.version).label("version"),
        )
        .group_by(ConsentText.channel, ConsentText.purpose, ConsentText.locale)
        .subquery()
    )
    rows = db.session.scalars(
        sa.select(ConsentText).join(
            latest,
            sa.and_(
                ConsentText.channel == latest.c.channel,
                ConsentText.purpose == latest.c.purpose,
                ConsentText.locale == latest.c.locale,
                ConsentText.version == latest.c.version,
            ),
        )
    ).all()
    return {(r.channel, r.purpose, r.locale): r for r in rows}


def versions(channel: str, purpose: str, locale: str, *, limit: int = 20) -> list[ConsentText]:
    """The versions of one text, newest first."""
    return list(
        db.session.scalars(
            sa.select(ConsentText)
            .where(
                ConsentText.channel == channel,
                ConsentText.purpose == purpose,
                ConsentText.locale == locale,
            )
            .order_by(ConsentText.version.desc())
            .limit(limit)
        )
    )
