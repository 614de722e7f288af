"""Normalising identities so the same person is found whichever way they type it."""

from __future__ import annotations

import re

import phonenumbers

from loyalty.errors import InvalidInput
from loyalty.members.models import IdentityKind

_EMAIL = re.compile(r"^[^@\s]{1,64}@[^@\s]{1,255}\.[^@\s]{2,63}$")
_CARD = re.compile(r"^[0-9A-Z]{6,32}$")
_APP_USER = re.compile(r"^[\x21-\x7e]{1,128}$")


def normalise(kind: str, value: str, *, default_region: str | None = None) -> str:
    """The canonical form of an identity, or InvalidInput saying what is wrong with it."""
    if kind == IdentityKind.PHONE:
        return normalise_phone(value, default_region)
    if kind == IdentityKind.EMAIL:
        email = value.strip().lower()
        if not _EMAIL.match(email):
            raise InvalidInput(f"{value!r} is not an email address", field="email")
        return email
    if kind == IdentityKind.CARD:
        card = re.sub(r"[\s-]", "", value).upper()
        if not _CARD.match(card):
            raise InvalidInput("a card number is 6-32 letters or digits", field="card")
        return card
    if kind == IdentityKind.APP_USER:
        user = value.strip()
        if not _APP_USER.match(user):
            raise InvalidInput("an app user id is 1-128 visible ASCII characters", field="app_user")
        return user
    raise InvalidInput(f"unknown identity kind {kind!r}")


def normalise_phone(value: str, default_region: str | None = None) -> str:
    """E.164. Numbers without a country code need `default_region` (e.g. the store's)."""
    try:
        number = phonenumbers.parse(value, default_region)
    except phonenumbers.NumberParseException:
        raise InvalidInput(f"{value!r} is not a phone number", field="phone") from None
    if not phonenumbers.is_valid_number(number):
        raise InvalidInput(f"{value!r} is not a valid phone number", field="phone")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
