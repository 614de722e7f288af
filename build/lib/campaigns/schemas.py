"""Request and response schemas of the segments API."""

from __future__ import annotations

from marshmallow import Schema, fields, validate

from campaigns.models import SegmentKind
from loyalty.schemas import StrictSchema, Text

# The issue's own example; the OpenAPI document shows it and bench/segments.py counts it.
ISSUE_EXAMPLE_RULE: dict = {
    "and": [
        {"field": "tier", "op": "in", "value": ["gold", "platinum"]},
        {
            "field": "categories",
            "op": "contains_any",
            "value": ["phones"],
            "within_days": 180,
            "channels": ["store"],
        },
        {
            "not": {
                "field": "categories",
                "op": "contains_any",
                "value": ["phones"],
                "channels": ["app"],
            }
        },
        {"field": "points_expiring_30d", "op": "gte", "value": 500},
    ]
}

RULE_DOC = {
    "description": "a rule tree: {and: [...]}, {or: [...]}, {not: rule} or a condition "
    "{field, op, value, ...options}; see GET /v1/segments/attributes",
    "example": ISSUE_EXAMPLE_RULE,
}


class AttributeSchema(Schema):
    name = fields.String()
    type = fields.String(metadata={"enum": ["number", "date", "string", "set", "boolean"]})
    description = fields.String()
    operators = fields.List(fields.String())
    options = fields.List(fields.String())
    values = fields.List(fields.String(), allow_none=True)


class SegmentCreateSchema(StrictSchema):
    name = Text(200, required=True)
    description = Text(1000, load_default=None, allow_none=True)
    kind = fields.String(
        load_default=SegmentKind.DYNAMIC.value,
        validate=validate.OneOf([kind.value for kind in SegmentKind]),
    )
    rule = fields.Dict(load_default=None, allow_none=True, metadata=RULE_DOC)


class SegmentUpdateSchema(StrictSchema):
    name = Text(200)
    description = Text(1000, allow_none=True)
    rule = fields.Dict(allow_none=True, metadata=RULE_DOC)


class SegmentSchema(Schema):
    id = fields.Integer()
    name = fields.String()
    description = fields.String(allow_none=True)
    kind = fields.String()
    rule = fields.Dict(allow_none=True)
    version = fields.Integer()
    snapshot_at = fields.DateTime(allow_none=True)
    created_by = fields.String()
    created_at = fields.DateTime()
    updated_at = fields.DateTime()


class PreviewSchema(StrictSchema):
    rule = fields.Dict(required=True, metadata=RULE_DOC)
    sample_size = fields.Integer(load_default=10, validate=validate.Range(min=0, max=100))


class SampleQuery(StrictSchema):
    size = fields.Integer(load_default=20, validate=validate.Range(min=1, max=100))


class SampleMemberSchema(Schema):
    member_id = fields.Integer()
    region = fields.String(allow_none=True)
    points_balance = fields.Integer()
    orders_lifetime = fields.Integer()
    spend_lifetime_minor = fields.Integer()
    last_order_at = fields.DateTime(allow_none=True)


class CountSchema(Schema):
    count = fields.Integer()
    evaluated_at = fields.DateTime()


class PreviewResultSchema(CountSchema):
    sample = fields.List(fields.Nested(SampleMemberSchema))


class SampleSchema(Schema):
    members = fields.List(fields.Nested(SampleMemberSchema))


class UploadSchema(StrictSchema):
    csv = fields.String(
        required=True,
        validate=validate.Length(min=1, max=20_000_000),
        metadata={
            "description": "CSV text; the header names member_id, phone, email, card or app_user"
        },
    )
    replace = fields.Boolean(load_default=False)
    default_region = fields.String(
        load_default=None, allow_none=True, validate=validate.Regexp(r"^[A-Z]{2}$")
    )


class UnmatchedRowSchema(Schema):
    line = fields.Integer()
    value = fields.String()
    reason = fields.String()


class UploadReportSchema(Schema):
    rows = fields.Integer()
    matched = fields.Integer()
    added = fields.Integer()
    unmatched_count = fields.Integer()
    unmatched = fields.List(fields.Nested(UnmatchedRowSchema))


class SnapshotSchema(Schema):
    count = fields.Integer()
    snapshot_at = fields.DateTime()
