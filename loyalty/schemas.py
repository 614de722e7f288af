"""Schema building blocks shared by every domain's API schemas."""

from __future__ import annotations

from typing import Any

from marshmallow import Schema, fields, validate

MAX_POINTS = 10**12
MAX_MINOR = 10**13  # 100 billion in major units: bigger than any real order


class StrictSchema(Schema):
    """Unknown fields are an error, not silently dropped."""

    class Meta:
        ordered = True


def Points(**kwargs: Any) -> fields.Integer:
    return fields.Integer(strict=True, validate=validate.Range(min=1, max=MAX_POINTS), **kwargs)


def Minor(**kwargs: Any) -> fields.Integer:
    """Money in minor units (cents), as an integer."""
    return fields.Integer(strict=True, validate=validate.Range(min=0, max=MAX_MINOR), **kwargs)


def Text(max_length: int, **kwargs: Any) -> fields.String:
    return fields.String(validate=validate.Length(min=1, max=max_length), **kwargs)


class CursorQuery(StrictSchema):
    cursor = fields.String(load_default=None, validate=validate.Length(max=64))
    limit = fields.Integer(load_default=50, validate=validate.Range(min=1, max=200))


class ProblemSchema(Schema):
    """RFC 9457 problem details (served as application/problem+json)."""

    class Meta:
        register = True

    type = fields.String()
    title = fields.String()
    status = fields.Integer()
    detail = fields.String()
    errors = fields.Dict()
    request_id = fields.String()
