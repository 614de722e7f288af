"""Schemas of the outbox admin API (dead letters)."""

from __future__ import annotations

from marshmallow import fields

from loyalty.outbox.consumers import MAX_NAME_LENGTH
from loyalty.pagination import PageQuery, page_schema
from loyalty.schemas import StrictSchema, Text


class DeadLetterQuery(PageQuery):
    consumer = Text(
        MAX_NAME_LENGTH, load_default=None, metadata={"description": "only this consumer"}
    )


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


DeadLetterPageSchema = page_schema(DeliverySchema, "DeadLetterPageSchema")


class RetryAllRequestSchema(StrictSchema):
    consumer = Text(
        MAX_NAME_LENGTH, load_default=None, metadata={"description": "only this consumer's"}
    )


class RetryAllResultSchema(StrictSchema):
    retried = fields.Integer(metadata={"description": "dead letters put back in their queues"})
