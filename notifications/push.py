"""Web Push subscriptions: the member app registers and removes them with its member token.

A subscription is what the browser's `PushManager.subscribe()` returns (endpoint, the
p256dh public key and the auth secret; `expirationTime` may be null). It belongs to the
member who registered it last: an endpoint is unique, and a device signed in as someone else
re-registers it under them. The push channel's destination is the member's newest
unexpired subscription (one device per message); a 404 or 410 from the push service
deletes the subscription (the pipeline's `on_gone` hook).

Endpoints are where our workers POST, so the API takes only https URLs to a host name (no
IP literals, no localhost): a member token can't point the sender at internal services.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import json
from collections.abc import Collection
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import sqlalchemy as sa
from marshmallow import ValidationError, fields, validate, validates
from sqlalchemy.orm import Mapped, mapped_column

from loyalty.api import Blueprint
from loyalty.auth.context import current_caller, requires_member
from loyalty.clock import utcnow
from loyalty.db import BigInt, UTCDateTime, any_of, db, upsert_insert
from loyalty.errors import NotFound
from loyalty.http import write_endpoint
from loyalty.members.merge import register_merge_step
from loyalty.members.models import Member
from loyalty.members.privacy import register_erase_step, register_export_section
from loyalty.members.resolution import get_member, history_member_ids
from loyalty.pagination import PageQuery, int_cursor, page, page_schema
from loyalty.schemas import Instant, StrictSchema
from notifications import pipeline
from notifications.providers.base import Channel

MAX_ENDPOINT = 2000


class PushSubscription(db.Model):
    __tablename__ = "push_subscriptions"
    __table_args__ = (
        sa.UniqueConstraint("endpoint"),
        sa.Index("ix_push_subscriptions_member_id_id", "member_id", "id"),
    )

    id: Mapped[int] = mapped_column(BigInt, primary_key=True)
    member_id: Mapped[int] = mapped_column(sa.ForeignKey("members.id"))
    endpoint: Mapped[str] = mapped_column(sa.String(MAX_ENDPOINT))
    p256dh: Mapped[str] = mapped_column(sa.String(200))
    auth: Mapped[str] = mapped_column(sa.String(100))
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


# --- operations -------------------------------------------------------------------------------


def register_subscription(
    member_id: int, *, endpoint: str, p256dh: str, auth: str, expires_at: datetime | None,
    now: datetime,
) -> PushSubscription:  # fmt: skip
    """Store (or move to this member, with fresh keys) the subscription for `endpoint`.

    One statement (INSERT ... ON CONFLICT (endpoint) DO UPDATE): two registrations of one
    endpoint at once never fail on the unique constraint."""
    table = PushSubscription.__table__
    values = {
        "member_id": member_id, "p256dh": p256dh, "auth": auth,
        "expires_at": expires_at, "created_at": now,
    }  # fmt: skip
    statement = upsert_insert(table).values(endpoint=endpoint, **values)
    new_id = db.session.execute(
        statement.on_conflict_do_update(index_elements=["endpoint"], set_=values).returning(
            table.c.id
        )
    ).scalar_one()
    db.session.expire_all()
    subscription = db.session.get(PushSubscription, new_id)
    assert subscription is not None
    return subscription


def remove_subscription(member_id: int, subscription_id: int) -> None:
    """Delete one of the member's (or their merged accounts') subscriptions; NotFound else."""
    deleted = db.session.execute(
        sa.delete(PushSubscription).where(
            PushSubscription.id == subscription_id,
            PushSubscription.member_id.in_(history_member_ids(member_id)),
        )
    ).rowcount
    if not deleted:
        raise NotFound(f"no push subscription {subscription_id}")


def member_subscriptions(
    member_id: int, *, before_id: int | None = None, limit: int | None = None
) -> list[PushSubscription]:
    """The person's subscriptions, newest first (those below `before_id`, up to `limit`)."""
    query = sa.select(PushSubscription).where(
        PushSubscription.member_id.in_(history_member_ids(member_id))
    )
    if before_id is not None:
        query = query.where(PushSubscription.id < before_id)
    return list(db.session.scalars(query.order_by(PushSubscription.id.desc()).limit(limit)))


def as_destination(subscription: PushSubscription) -> str:
    """The browser subscription JSON the web push provider sends to."""
    return json.dumps(
        {
            "endpoint": subscription.endpoint,
            "expirationTime": None,
            "keys": {"p256dh": subscription.p256dh, "auth": subscription.auth},
        }
    )


@pipeline.destination_resolver(Channel.PUSH)
def newest_subscription(person_id: int) -> str | None:
    """The push destination: the member's newest subscription that hasn't expired."""
    now = utcnow()
    for subscription in member_subscriptions(person_id):
        if subscription.expires_at is None or subscription.expires_at > now:
            return as_destination(subscription)
    return None


@pipeline.destination_resolver_many(Channel.PUSH)
def newest_subscriptions(person_ids: Collection[int]) -> dict[int, str]:
    """`newest_subscription` for many people in two reads (the send job's chunks)."""
    if not person_ids:
        return {}
    members = Member.__table__
    owners = dict(
        db.session.execute(
            sa.select(members.c.id, sa.func.coalesce(members.c.merged_into_id, members.c.id)).where(
                sa.or_(
                    any_of(members.c.id, person_ids), any_of(members.c.merged_into_id, person_ids)
                )
            )
        ).all()
    )
    now, found = utcnow(), {}
    for subscription in db.session.scalars(
        sa.select(PushSubscription)
        .where(any_of(PushSubscription.member_id, owners))
        .order_by(PushSubscription.id.desc())
    ):
        person = owners[subscription.member_id]
        if person not in found and (
            subscription.expires_at is None or subscription.expires_at > now
        ):
            found[person] = as_destination(subscription)
    return found


@pipeline.on_gone(Channel.PUSH)
def forget_gone_subscription(_member_id: int | None, destination: str, _now: datetime) -> None:
    """The push service said 404/410: the browser dropped the subscription."""
    try:
        endpoint = json.loads(destination)["endpoint"]
    except (ValueError, KeyError, TypeError):
        return
    db.session.execute(sa.delete(PushSubscription).where(PushSubscription.endpoint == endpoint))


def export_subscriptions(member_id: int) -> list[dict[str, Any]]:
    return [
        {
            "id": s.id,
            "endpoint": s.endpoint,
            "expires_at": s.expires_at.isoformat() if s.expires_at else None,
            "created_at": s.created_at.isoformat(),
        }
        for s in member_subscriptions(member_id)
    ]


def erase_subscriptions(member_id: int, _now: datetime) -> dict[str, Any]:
    deleted = db.session.execute(
        sa.delete(PushSubscription).where(
            PushSubscription.member_id.in_(history_member_ids(member_id))
        )
    ).rowcount
    return {"push_subscriptions_deleted": deleted or 0}


def merge_subscriptions(merged_id: int, survivor_id: int, _now: datetime) -> dict[str, Any]:
    """Merge step: the merged member's devices now reach the survivor. An endpoint is unique
    (one row per device), so moving them can't duplicate a device."""
    moved = db.session.execute(
        sa.update(PushSubscription)
        .where(PushSubscription.member_id == merged_id)
        .values(member_id=survivor_id)
        .execution_options(synchronize_session=False)
    ).rowcount
    return {"push_subscriptions": moved or 0}


register_merge_step(merge_subscriptions)
register_export_section("push_subscriptions", export_subscriptions)
register_erase_step("push_subscriptions", erase_subscriptions)


# --- HTTP: the member app ---------------------------------------------------------------------


def _b64url_bytes(text: str) -> bytes:
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        raise ValidationError("must be base64url") from None


class PushSubscriptionKeysSchema(StrictSchema):
    p256dh = fields.String(required=True, validate=validate.Length(min=80, max=200))
    auth = fields.String(required=True, validate=validate.Length(min=16, max=100))

    @validates("p256dh")
    def uncompressed_p256_point(self, value: str, **_: Any) -> None:
        raw = _b64url_bytes(value)
        if len(raw) != 65 or raw[0] != 4:
            raise ValidationError("must be an uncompressed P-256 public key (65 bytes)")

    @validates("auth")
    def sixteen_bytes(self, value: str, **_: Any) -> None:
        if len(_b64url_bytes(value)) != 16:
            raise ValidationError("must be a 16-byte auth secret")


class PushSubscriptionCreateSchema(StrictSchema):
    """`PushSubscription.toJSON()` from the browser, as is."""

    endpoint = fields.String(required=True, validate=validate.Length(min=10, max=MAX_ENDPOINT))
    # Milliseconds since the epoch, or null (most browsers send null).
    expirationTime = fields.Integer(
        load_default=None, allow_none=True, strict=True, validate=validate.Range(min=0, max=2**53)
    )
    keys = fields.Nested(PushSubscriptionKeysSchema, required=True)

    @validates("endpoint")
    def https_to_a_host_name(self, value: str, **_: Any) -> None:
        parts = urlsplit(value)
        host = (parts.hostname or "").lower()
        if parts.scheme != "https" or not host or parts.username or parts.password:
            raise ValidationError("must be an https URL from the browser's push service")
        try:
            ipaddress.ip_address(host)
        except ValueError:
            pass
        else:
            raise ValidationError("must name the push service by host name, not an address")
        if host == "localhost" or host.endswith((".localhost", ".local", ".internal")):
            raise ValidationError("must be a public push service")


class PushSubscriptionSchema(StrictSchema):
    id = fields.Integer()
    endpoint = fields.String()
    expires_at = Instant(allow_none=True)
    created_at = Instant()


PushSubscriptionListSchema = page_schema(PushSubscriptionSchema, "PushSubscriptionListSchema")


blp = Blueprint("push", __name__, description="Web Push subscriptions of the member app")
MEMBER = [{"MemberToken": []}]


@blp.route("/me/push-subscriptions")
@blp.doc(security=MEMBER)
@requires_member
@blp.arguments(PageQuery, location="query")
@blp.response(200, PushSubscriptionListSchema)
def my_subscriptions(query: dict[str, Any]) -> Any:
    """The member's registered push subscriptions, newest first."""
    member = get_member(current_caller().member_id)  # type: ignore[arg-type]
    rows = member_subscriptions(
        member.id, before_id=int_cursor(query["cursor"]), limit=query["limit"] + 1
    )
    return page(rows, query["limit"], key=lambda row: row.id)


@blp.route("/me/push-subscriptions", methods=["POST"])
@blp.doc(security=MEMBER)
@requires_member
@write_endpoint()
@blp.arguments(PushSubscriptionCreateSchema)
@blp.response(201, PushSubscriptionSchema)
def register_my_subscription(data: dict[str, Any]) -> Any:
    """Register this device's subscription (the browser's JSON as is); registering the same
    endpoint again updates its keys and moves it to the calling member."""
    member = get_member(current_caller().member_id)  # type: ignore[arg-type]
    expires = data["expirationTime"]
    return register_subscription(
        member.id,
        endpoint=data["endpoint"],
        p256dh=data["keys"]["p256dh"],
        auth=data["keys"]["auth"],
        expires_at=datetime.fromtimestamp(expires / 1000, UTC) if expires else None,
        now=utcnow(),
    )


@blp.route("/me/push-subscriptions/<int:subscription_id>", methods=["DELETE"])
@blp.doc(security=MEMBER)
@requires_member
@write_endpoint(key_required=False)
@blp.response(204)
def remove_my_subscription(subscription_id: int) -> None:
    """Remove a subscription (the member signed out, or turned notifications off)."""
    member = get_member(current_caller().member_id)  # type: ignore[arg-type]
    remove_subscription(member.id, subscription_id)
