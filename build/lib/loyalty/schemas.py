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
NOT_UNICODE_MESSAGE = "must be valid Unicode text (a lone surrogate such as \\ud800 is not)"


class StrictSchema(Schema):
    """Unknown fields are an error, not silently dropped; all text must be storable.

    Checked here, for every request schema at once, as a 422 naming the field:
    - no NUL: PostgreSQL can't store NUL in text or JSONB;
    - valid Unicode only: JSON's \\ud800 escape decodes to a lone surrogate, which no
      database driver can encode (UTF-8 has no encoding for it).
    Nested values (lists, objects, their keys) are checked too.
    """

    class Meta:
        ordered = True

    @pre_load
    def refuse_unstorable_text(self, data: Any, **_: Any) -> Any:
        if isinstance(data, Mapping):
            errors = {}
            for key, value in data.items():
                problem = _text_problem(key) or _text_problem(value)
                if problem:
                    errors[_printable_key(key)] = [problem]
            if errors:
                raise ValidationError(errors)
        return data


def _text_problem(value: Any) -> str | None:
    """Why `value` (or any text inside it) can't be stored, or None."""
    if isinstance(value, str):
        if "\x00" in value:
            return NUL_MESSAGE
        if not _is_unicode(value):
            return NOT_UNICODE_MESSAGE
        return None
    if isinstance(value, Mapping):
        items: Any = (item for pair in value.items() for item in pair)
    elif isinstance(value, list | tuple):
        items = value
    else:
        return None
    return next((problem for item in items if (problem := _text_problem(item))), None)


def _is_unicode(text: str) -> bool:
    if text.isascii():
        return True
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _printable_key(key: Any) -> str:
    """The field name for the error; an unencodable name is escaped so the answer is valid."""
    name = str(key)
    return name if _is_unicode(name) else name.encode("utf-8", "backslashreplace").decode()


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


class FieldErrorSchema(Schema):
    """One invalid field of the request."""

    class Meta:
        register = True

    field = fields.String(
        required=True,
        metadata={
            "description": "The field's path: body fields by JSON name, list items by index, "
            "joined by dots (`lines.0.unit_price_minor`); query parameters and headers by "
            "name; empty for the body as a whole.",
            "example": "lines.0.unit_price_minor",
        },
    )
    message = fields.String(
        required=True, metadata={"example": "Must be greater than or equal to 0."}
    )


class ProblemSchema(Schema):
    """RFC 9457 problem details, served as `application/problem+json`.

    A problem type may add extension members (RFC 9457 section 3.2): `errors` on a 422,
    `reason`/`reasons` on coupon problems, `retry_after` with `Retry-After`, `held`...
    """

    class Meta:
        register = True
        unknown = INCLUDE  # documents additionalProperties: extension members are allowed

    type = fields.String(
        required=True,
        metadata={
            "description": "Identifies the problem type; stable, switch on it. A URI "
            "reference (`/problems/<slug>`) that resolves, on this service, to the page "
            "explaining the type.",
            "example": "/problems/validation-failed",
        },
    )
    title = fields.String(
        required=True, metadata={"description": "The type's one human-readable title."}
    )
    status = fields.Integer(required=True, metadata={"description": "The HTTP status code."})
    detail = fields.String(metadata={"description": "What went wrong in this occurrence."})
    errors = fields.List(
        fields.Nested(FieldErrorSchema),
        metadata={
            "description": "On `validation-failed` (422): every invalid field, whether the "
            "schema or a business rule refused it, in one shape."
        },
    )
    request_id = fields.String(
        metadata={"description": "Matches the `X-Request-ID` header and the server's log."}
    )
