"""Schemas of the outbox admin API (dead letters)."""

from __future__ import annotations

from marshmallow import fields, validate

from loyalty.db import BIGINT_MAX
from loyalty.outbox.consumers import MAX_NAME_LENGTH
from loyalty.schemas import StrictSchema, Text


class DeadLetterQuery(StrictSchema):
    consumer = Text(
        MAX_NAME_LENGTH, load_default=None, metadata={"description": "only this consumer"}
    )
    after_id = fields.Integer(
        load_default=None,
        validate=validate.Range(min=0, max=BIGINT_MAX),
        metadata={"description": "the previous page's next_after_id"},
    )
    limit = fields.Integer(load_default=50, validate=validate.Range(min=1, max=200))


class DeliverySchema(StrictSchema):
    id = fields.Integer(metadata={"description": "the delivery id (retry it by this id)"})
    consumer = fields.String()
    status = fields.String(metadata={"description": "pending, done or dead"})
    attempts = fields.Integer()
    next_attempt_at = fields.DateTime()
    last_error = fields.String(allow_none=True)
    created_at = fields.DateTime()
    updated_at = fields.DateTime()
    event_id = fields.Integer()
    topic = fields.String()
    member_id = fields.Integer(allow_none=True)
    payload = fields.Dict(metadata={"description": "ids and amounts; never personal data"})
    occurred_at = fields.DateTime()


class DeadLetterPageSchema(StrictSchema):
    items = fields.List(fields.Nested(DeliverySchema))
    next_after_id = fields.Integer(
        allow_none=True, metadata={"description": "pass as after_id for the next page; null: last"}
    )


class RetryAllRequestSchema(StrictSchema):
    consumer = Text(
        MAX_NAME_LENGTH, load_default=None, metadata={"description": "only this consumer's"}
    )


class RetryAllResultSchema(StrictSchema):
    retried = fields.Integer(metadata={"description": "dead letters put back in their queues"})
