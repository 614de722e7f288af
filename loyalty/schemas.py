"""Schema building blocks shared by every domain's API schemas."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, date, datetime
from typing import Any

from marshmallow import INCLUDE, Schema, ValidationError, fields, pre_load, validate

from loyalty.db import BIGINT_MAX

MAX_POINTS = 10**12
MAX_MINOR = 10**13  # 100 billion in major units: bigger than any real order


NUL_MESSAGE = "must not contain NUL (\\u0000) characters"


class StrictSchema(Schema):
    """Unknown fields are an error, not silently dropped; no text may contain NUL.

    PostgreSQL can't store NUL in text or JSONB, so a NUL anywhere in a field's value is
    refused here, as a 422 naming the field, for every request schema at once.
    """

    class Meta:
        ordered = True

    @pre_load
    def refuse_nul_characters(self, data: Any, **_: Any) -> Any:
        if isinstance(data, Mapping):
            errors = {
                str(key): [NUL_MESSAGE]
                for key, value in data.items()
                if _contains_nul(key) or _contains_nul(value)
            }
            if errors:
                raise ValidationError(errors)
        return data


def _contains_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, Mapping):
        return any(_contains_nul(k) or _contains_nul(v) for k, v in value.items())
    if isinstance(value, list | tuple):
        return any(_contains_nul(item) for item in value)
    return False


class Instant(fields.AwareDateTime):
    """A point in time given with its UTC offset, loaded in UTC, within 1970-9000.

    Dates near year 1 or 9999 overflow when converted to UTC or moved by a few days
    (expiry, windows), which would be a 500; they are no real order or offer time anyway.
    """

    EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
    LATEST = datetime(9000, 1, 1, tzinfo=UTC)
    default_error_messages = {"out_of_range": "must be between 1970 and 9000"}

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> datetime:
        loaded = super()._deserialize(value, attr, data, **kwargs)
        try:
            in_utc = loaded.astimezone(UTC)
        except OverflowError as error:
            raise self.make_error("out_of_range") from error
        if not self.EARLIEST <= in_utc < self.LATEST:
            raise self.make_error("out_of_range")
        return in_utc


class Day(fields.Date):
    """A calendar day within 1970-9000, for report ranges (see Instant for why)."""

    default_error_messages = {"out_of_range": "must be between 1970 and 9000"}

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> date:
        loaded = super()._deserialize(value, attr, data, **kwargs)
        if not Instant.EARLIEST.date() <= loaded < Instant.LATEST.date():
            raise self.make_error("out_of_range")
        return loaded


def Points(**kwargs: Any) -> fields.Integer:
    return fields.Integer(strict=True, validate=validate.Range(min=1, max=MAX_POINTS), **kwargs)


def Minor(**kwargs: Any) -> fields.Integer:
    """Money in minor units (cents), as an integer."""
    return fields.Integer(strict=True, validate=validate.Range(min=0, max=MAX_MINOR), **kwargs)


def Id(**kwargs: Any) -> fields.Integer:
    """A reference to a row by id: a positive integer a BIGINT id column can hold.

    Without the upper bound a huge number reaches the database driver and overflows (a 500).
    """
    return fields.Integer(strict=True, validate=validate.Range(min=1, max=BIGINT_MAX), **kwargs)


def Count(**kwargs: Any) -> fields.Integer:
    """A positive limit or stock stored in a BIGINT column (max uses, max redemptions...)."""
    return fields.Integer(strict=True, validate=validate.Range(min=1, max=BIGINT_MAX), **kwargs)


def Text(max_length: int, **kwargs: Any) -> fields.String:
    return fields.String(validate=validate.Length(min=1, max=max_length), **kwargs)


class CursorQuery(StrictSchema):
    cursor = fields.String(load_default=None, validate=validate.Length(max=64))
    limit = fields.Integer(load_default=50, validate=validate.Range(min=1, max=200))


class ProblemSchema(Schema):
    """RFC 9457 problem details (served as application/problem+json).

    `errors` maps each invalid field to its messages (nested like the request body). A
    problem type may add extension members (RFC 9457 section 3.2), e.g. `field`, `held`.
    """

    class Meta:
        register = True
        unknown = INCLUDE  # documents additionalProperties: extension members are allowed

    type = fields.String(required=True)
    title = fields.String(required=True)
    status = fields.Integer(required=True)
    detail = fields.String()
    errors = fields.Dict(keys=fields.String())
    field = fields.String(metadata={"description": "the field a domain rule refused"})
    request_id = fields.String()
