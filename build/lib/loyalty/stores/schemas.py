"""Request and response schemas of the stores API."""

from __future__ import annotations

from typing import Any

from marshmallow import ValidationError, fields, validate

from loyalty.errors import InvalidInput
from loyalty.pagination import PageQuery
from loyalty.schemas import StrictSchema, Text
from loyalty.timezones import validate_timezone

STORE_ID = validate.Regexp(
    r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$", error="1-64 letters, digits, _ . -"
)
COUNTRY = validate.Regexp(r"^[A-Z]{2}$", error="an ISO 3166 alpha-2 country code, e.g. FR")


def iana_timezone(value: str) -> None:
    """Marshmallow validator around loyalty.timezones, so the error is per field."""
    try:
        validate_timezone(value)
    except InvalidInput as error:
        raise ValidationError(error.detail) from None


def no_control_characters(value: str) -> None:
    if any(ord(c) < 32 or 0x7F <= ord(c) < 0xA0 or c in "\u2028\u2029" for c in value):
        raise ValidationError("control characters are not allowed")


def PlainText(max_length: int, **kwargs: Any) -> fields.String:
    """Any printable text, unicode welcome; control characters refused."""
    return fields.String(
        validate=[validate.Length(min=1, max=max_length), no_control_characters], **kwargs
    )


class StoreFieldsSchema(StrictSchema):
    name = PlainText(200, required=True)
    region = PlainText(64, load_default=None, allow_none=True)
    country = fields.String(load_default=None, allow_none=True, validate=COUNTRY)
    timezone = fields.String(required=True, validate=iana_timezone)
    partner = fields.Boolean(load_default=False)
    active = fields.Boolean(load_default=True)


class StoreCreateSchema(StoreFieldsSchema):
    id = fields.String(required=True, validate=STORE_ID, metadata={"description": "your code"})


class StoreUpdateSchema(StrictSchema):
    """Only the fields given change."""

    name = PlainText(200)
    region = PlainText(64, allow_none=True)
    country = fields.String(allow_none=True, validate=COUNTRY)
    timezone = fields.String(validate=iana_timezone)
    partner = fields.Boolean()
    active = fields.Boolean()


class StoreQuery(PageQuery):
    region = Text(64, load_default=None)
    active = fields.Boolean(load_default=None)
    partner = fields.Boolean(load_default=None)


class StoreSchema(StrictSchema):
    id = fields.String()
    name = fields.String()
    region = fields.String(allow_none=True)
    country = fields.String(allow_none=True)
    timezone = fields.String()
    partner = fields.Boolean()
    active = fields.Boolean()
    created_at = fields.DateTime()
    updated_at = fields.DateTime(allow_none=True)


class ChannelSchema(StrictSchema):
    code = fields.String()
    needs_store = fields.Boolean()
