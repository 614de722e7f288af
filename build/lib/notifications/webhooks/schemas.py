"""Schemas of the webhook admin API."""

from __future__ import annotations

from marshmallow import fields, validate

from loyalty.pagination import PageQuery, page_schema
from loyalty.schemas import StrictSchema, Text
from notifications.webhooks.models import SubscriptionStatus, WebhookDeliveryStatus
from notifications.webhooks.targets import MAX_URL_LENGTH

TOPICS_HELP = "outbox event types (e.g. points.earned), or '*' for every type"


class SubscriptionCreateSchema(StrictSchema):
    url = Text(MAX_URL_LENGTH, required=True, metadata={"description": "http(s) URL to POST to"})
    topics = fields.List(
        Text(64),
        required=True,
        validate=validate.Length(min=1, max=50),
        metadata={"description": TOPICS_HELP},
    )
    description = Text(500, load_default=None, allow_none=True)


class SubscriptionUpdateSchema(StrictSchema):
    url = Text(MAX_URL_LENGTH)
    topics = fields.List(Text(64), validate=validate.Length(min=1, max=50))
    description = Text(500, allow_none=True)
    status = fields.String(validate=validate.OneOf([s.value for s in SubscriptionStatus]))


class RotateSecretSchema(StrictSchema):
    keep_previous_seconds = fields.Integer(
        load_default=86400,
        validate=validate.Range(min=0, max=7 * 86400),
        metadata={"description": "how long the old secret keeps signing beside the new one"},
    )


class SubscriptionSchema(StrictSchema):
    id = fields.Integer()
    url = fields.String()
    topics = fields.List(fields.String())
    description = fields.String(allow_none=True)
    status = fields.String(metadata={"description": "active or disabled"})
    disabled_reason = fields.String(allow_none=True)
    consecutive_failures = fields.Integer(
        metadata={"description": "deliveries that failed in a row since the last success"}
    )
    previous_secret_expires_at = fields.DateTime(allow_none=True)
    created_by = fields.String()
    created_at = fields.DateTime()
    updated_at = fields.DateTime()


class SubscriptionWithSecretSchema(SubscriptionSchema):
    secret = fields.String(
        metadata={"description": "signs every delivery; shown in this response only"}
    )


class WebhookDeliveryQuery(PageQuery):
    status = fields.String(
        load_default=None, validate=validate.OneOf([s.value for s in WebhookDeliveryStatus])
    )


class WebhookDeliverySchema(StrictSchema):
    id = fields.Integer()
    subscription_id = fields.Integer()
    event_id = fields.Integer()
    topic = fields.String()
    status = fields.String(metadata={"description": "pending, succeeded or failed"})
    attempts = fields.Integer()
    next_attempt_at = fields.DateTime()
    last_attempt_at = fields.DateTime(allow_none=True)
    last_status_code = fields.Integer(allow_none=True)
    last_response_body = fields.String(
        allow_none=True, metadata={"description": "the receiver's answer, first 1000 characters"}
    )
    last_error = fields.String(allow_none=True)
    created_at = fields.DateTime()
    done_at = fields.DateTime(allow_none=True)


WebhookDeliveryPageSchema = page_schema(WebhookDeliverySchema)
