"""Webhook admin API: subscriptions, secret rotation, deliveries with their last response.
Admin scope, like the other operator tools."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import sqlalchemy as sa
from flask import current_app

from loyalty.api import Blueprint
from loyalty.auth import scopes
from loyalty.auth.context import current_caller, requires
from loyalty.clock import utcnow
from loyalty.db import db
from loyalty.http import write_endpoint
from loyalty.pagination import PageQuery, int_cursor, page, page_schema
from notifications.webhooks import operations
from notifications.webhooks.models import WebhookSubscription
from notifications.webhooks.schemas import (
    RotateSecretSchema,
    SubscriptionUpdateSchema,
    WebhookDeliveryPageSchema,
    WebhookDeliveryQuery,
    WebhookDeliverySchema,
    WebhookSubscriptionCreateSchema,
    WebhookSubscriptionSchema,
    WebhookSubscriptionWithSecretSchema,
)

blp = Blueprint("webhooks", __name__, description="Outgoing webhooks for integrators")
API_KEY = [{"ApiKey": []}]


def _allow_private() -> bool:
    return current_app.extensions["omniloyal.settings"].webhook_allow_private_targets


@blp.route("/webhooks", methods=["POST"])
@blp.doc(security=API_KEY)
@requires(scopes.ADMIN)
@write_endpoint()
@blp.arguments(WebhookSubscriptionCreateSchema)
@blp.response(201, WebhookSubscriptionWithSecretSchema)
def create_subscription(data: dict[str, Any]) -> Any:
    """Subscribe a URL to event types. The signing secret is in this response only."""
    return operations.create_subscription(
        url=data["url"],
        topics=data["topics"],
        description=data["description"],
        actor=current_caller().actor,
        now=utcnow(),
        allow_private=_allow_private(),
    )


@blp.route("/webhooks")
@blp.doc(security=API_KEY)
@requires(scopes.ADMIN)
@blp.arguments(PageQuery, location="query")
@blp.response(200, page_schema(WebhookSubscriptionSchema, "WebhookSubscriptionPageSchema"))
def list_subscriptions(query: dict[str, Any]) -> Any:
    """Every subscription (never its secret), oldest first."""
    select = sa.select(WebhookSubscription)
    after = int_cursor(query["cursor"])
    if after is not None:
        select = select.where(WebhookSubscription.id > after)
    rows = list(
        db.session.scalars(select.order_by(WebhookSubscription.id).limit(query["limit"] + 1))
    )
    return page(rows, query["limit"], key=lambda row: row.id)


@blp.route("/webhooks/<int:subscription_id>")
@blp.doc(security=API_KEY)
@requires(scopes.ADMIN)
@blp.response(200, WebhookSubscriptionSchema)
def get_subscription(subscription_id: int) -> Any:
    """One subscription (never its secret)."""
    return operations.get_subscription(subscription_id)


@blp.route("/webhooks/<int:subscription_id>", methods=["PATCH"])
@blp.doc(security=API_KEY)
@requires(scopes.ADMIN)
@write_endpoint(key_required=False)
@blp.arguments(SubscriptionUpdateSchema)
@blp.response(200, WebhookSubscriptionSchema)
def update_subscription(data: dict[str, Any], subscription_id: int) -> Any:
    """Change the URL, event types, description, or status (`active` enables a disabled
    subscription again: its waiting deliveries go out)."""
    return operations.update_subscription(
        subscription_id, data, now=utcnow(), allow_private=_allow_private()
    )


@blp.route("/webhooks/<int:subscription_id>", methods=["DELETE"])
@blp.doc(security=API_KEY)
@requires(scopes.ADMIN)
@write_endpoint(key_required=False)
@blp.response(204)
def delete_subscription(subscription_id: int) -> Any:
    """Remove a subscription; its deliveries go with it."""
    operations.delete_subscription(subscription_id)


@blp.route("/webhooks/<int:subscription_id>/rotate-secret", methods=["POST"])
@blp.doc(security=API_KEY)
@requires(scopes.ADMIN)
@write_endpoint()
@blp.arguments(RotateSecretSchema)
@blp.response(200, WebhookSubscriptionWithSecretSchema)
def rotate_secret(data: dict[str, Any], subscription_id: int) -> Any:
    """A new signing secret (in this response only). The old one keeps signing beside it,
    as a second `v1=`, for `keep_previous_seconds` (0: stop at once)."""
    return operations.rotate_secret(
        subscription_id,
        keep_previous_for=timedelta(seconds=data["keep_previous_seconds"]),
        now=utcnow(),
    )


@blp.route("/webhooks/<int:subscription_id>/deliveries")
@blp.doc(security=API_KEY)
@requires(scopes.ADMIN)
@blp.arguments(WebhookDeliveryQuery, location="query")
@blp.response(200, WebhookDeliveryPageSchema)
def list_deliveries(query: dict[str, Any], subscription_id: int) -> Any:
    """The subscription's deliveries, newest first, each with its last response (status
    code, the first 1000 characters of the body, time) or error."""
    items = operations.deliveries_page(
        subscription_id,
        status=query["status"],
        before_id=int_cursor(query["cursor"]),
        limit=query["limit"] + 1,
    )
    return page(items, query["limit"], key=lambda delivery: delivery.id)


@blp.route("/webhooks/deliveries/<int:delivery_id>/retry", methods=["POST"])
@blp.doc(security=API_KEY)
@requires(scopes.ADMIN)
@write_endpoint(key_required=False)
@blp.response(200, WebhookDeliverySchema)
def retry_delivery(delivery_id: int) -> Any:
    """Send a failed delivery again with all its attempts (409 if it has not failed)."""
    return operations.retry_delivery(delivery_id, now=utcnow())
