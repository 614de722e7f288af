"""Schema building blocks shared by every domain's API schemas."""

from __future__ import annotations

import json
from collections.abc import Mapping
from contextvars import ContextVar
from datetime import UTC, date, datetime
from typing import Any

from marshmallow import INCLUDE, Schema, ValidationError, fields, validate

from loyalty.db import BIGINT_MAX

MAX_POINTS = 10**12
MAX_MINOR = 10**13  # 100 billion in major units: bigger than any real order
# One basket, whoever reads it (an order, a coupon validation, a dry run): the same limits,
# so a basket that validates can be posted as an order.
MAX_UNIT_PRICE = 10**10  # 100 million in major units per unit
MAX_LINE_QUANTITY = 100_000
MAX_BASKET_LINES = 500


NUL_MESSAGE = "must not contain NUL (\\u0000) characters"
NOT_UNICODE_MESSAGE = "must be valid Unicode text (a lone surrogate such as \\ud800 is not)"


# Set while a StrictSchema loads: the schemas nested in it load parts of a body it checked.
_loading_checked_body: ContextVar[bool] = ContextVar("loading_checked_body", default=False)


class StrictSchema(Schema):
    """Unknown fields are an error, not silently dropped; all text must be storable.

    Checked here, for every request schema at once, as a 422 naming the field:
    - no NUL: PostgreSQL can't store NUL in text or JSONB;
    - valid Unicode only: JSON's \\ud800 escape decodes to a lone surrogate, which no
      database driver can encode (UTF-8 has no encoding for it).
    Nested values (lists, objects, their keys) are checked too, in one walk over the whole
    body by the outermost schema; the schemas nested in it don't walk their parts again.
    """

    class Meta:
        ordered = True

    def load(
        self,
        data: Any,
        *,
        many: bool | None = None,
        partial: Any = None,
        unknown: Any = None,
    ) -> Any:
        if _loading_checked_body.get():
            return super().load(data, many=many, partial=partial, unknown=unknown)
        _refuse_unstorable_text(data, self.many if many is None else many)
        checked = _loading_checked_body.set(True)
        try:
            return super().load(data, many=many, partial=partial, unknown=unknown)
        finally:
            _loading_checked_body.reset(checked)


def _refuse_unstorable_text(data: Any, many: bool) -> None:
    """ValidationError naming each field whose value holds text no database can store."""
    if many and isinstance(data, list):
        errors = {i: problems for i, item in enumerate(data) if (problems := _field_problems(item))}
    else:
        errors = _field_problems(data)  # type: ignore[assignment]
    if errors:
        raise ValidationError(errors)


def _field_problems(data: Any) -> dict[str, list[str]]:
    if not isinstance(data, Mapping):
        return {}  # not an object: the schema says so itself
    return {
        _printable_key(key): [problem]
        for key, value in data.items()
        if (problem := _text_problem(key) or _text_problem(value))
    }


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


# --- metadata: the integrator's own key-value data on members, orders, redemptions, offers ---

METADATA_MAX_KEYS = 50
METADATA_MAX_KEY_LENGTH = 40
METADATA_MAX_BYTES = 8 * 1024
METADATA_DESCRIPTION = (
    "Your own data, stored and returned exactly as sent: a JSON object of at most "
    f"{METADATA_MAX_KEYS} keys (each 1-{METADATA_MAX_KEY_LENGTH} characters) whose values "
    f"are text, numbers, true/false or null, at most {METADATA_MAX_BYTES} bytes as JSON. "
    "Not for personal data of other people; blanked when the member is erased."
)


def _check_metadata(value: Mapping[str, Any]) -> None:
    if len(value) > METADATA_MAX_KEYS:
        raise ValidationError(f"at most {METADATA_MAX_KEYS} keys, got {len(value)}")
    for key, item in value.items():
        if not 1 <= len(key) <= METADATA_MAX_KEY_LENGTH:
            shown = key[:METADATA_MAX_KEY_LENGTH]
            raise ValidationError(f"keys are 1-{METADATA_MAX_KEY_LENGTH} characters: {shown!r}")
        if item is not None and not isinstance(item, str | bool | int | float):
            raise ValidationError(f"{key!r}: values are text, numbers, true/false or null")
    size = len(json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode("utf-8"))
    if size > METADATA_MAX_BYTES:
        raise ValidationError(f"at most {METADATA_MAX_BYTES} bytes as JSON, got {size}")


def Metadata(**kwargs: Any) -> fields.Dict:
    """`metadata` on a request: a bounded object of scalar values (a 422 naming the field)."""
    kwargs.setdefault("metadata", {"description": METADATA_DESCRIPTION})
    return fields.Dict(
        keys=fields.String(), values=fields.Raw(allow_none=True), validate=_check_metadata, **kwargs
    )


def MetadataOut(attribute: str = "extra") -> fields.Function:
    """`metadata` in a response: as stored, `{}` when none was given."""
    return fields.Function(
        lambda obj: (
            (obj.get(attribute) if isinstance(obj, Mapping) else getattr(obj, attribute, None))
            or {}
        ),
        metadata={"type": "object", "description": METADATA_DESCRIPTION},
    )
