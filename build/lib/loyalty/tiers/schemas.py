"""Schemas of the tiers API and of the member app's home call (/v1/me)."""

from __future__ import annotations

from typing import Any

from marshmallow import ValidationError, fields, validate, validates_schema

from loyalty.ledger.schemas import BalanceSchema
from loyalty.pagination import page_schema
from loyalty.schemas import MAX_MINOR, StrictSchema, Text
from loyalty.tiers.models import TierBasis

BASES = [basis.value for basis in TierBasis]


class TierFieldsSchema(StrictSchema):
    code = fields.String(validate=validate.Regexp(r"^[a-z0-9_-]{1,32}$"))
    name = Text(100)
    rank = fields.Integer(strict=True, validate=validate.Range(min=0, max=1000))
    basis = fields.String(validate=validate.OneOf(BASES))
    threshold = fields.Integer(strict=True, validate=validate.Range(min=0, max=MAX_MINOR))
    window_days = fields.Integer(strict=True, validate=validate.Range(min=1, max=3660))
    currency = fields.String(allow_none=True, validate=validate.Regexp(r"^[A-Z]{3}$"))
    earn_multiplier_pct = fields.Integer(strict=True, validate=validate.Range(min=100, max=1000))
    benefits = fields.String(allow_none=True, validate=validate.Length(max=2000))


class TierCreateSchema(TierFieldsSchema):
    code = fields.String(required=True, validate=validate.Regexp(r"^[a-z0-9_-]{1,32}$"))
    name = Text(100, required=True)
    rank = fields.Integer(strict=True, required=True, validate=validate.Range(min=0, max=1000))


class TierUpdateSchema(TierFieldsSchema):
    @validates_schema
    def not_empty(self, data: dict[str, Any], **_: Any) -> None:
        if not data:
            raise ValidationError("nothing to change")


class TierSchema(TierFieldsSchema):
    id = fields.Integer()
    created_at = fields.DateTime()
    updated_at = fields.DateTime(allow_none=True)


TierListSchema = page_schema(TierSchema)


class TierBriefSchema(StrictSchema):
    id = fields.Integer()
    code = fields.String()
    name = fields.String()
    rank = fields.Integer()
    earn_multiplier_pct = fields.Integer()
    threshold = fields.Integer()
    benefits = fields.String(allow_none=True)


class TierProgressSchema(StrictSchema):
    current = fields.Nested(TierBriefSchema, allow_none=True)
    next = fields.Nested(TierBriefSchema, allow_none=True)
    basis = fields.String(allow_none=True)
    window_days = fields.Integer(allow_none=True)
    qualifying_value = fields.Integer(
        metadata={"description": "points earned (or net spend) inside the rolling window"}
    )
    remaining = fields.Integer(metadata={"description": "to reach the next tier; 0 at the top"})


class MeSchema(StrictSchema):
    member_id = fields.Integer()
    name = fields.String(allow_none=True)
    timezone = fields.String()
    locale = fields.String()
    tier = fields.Nested(TierProgressSchema)
    balance = fields.Nested(BalanceSchema)
