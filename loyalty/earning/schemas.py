"""Request and response schemas of the earning API (orders, refunds, activities, rules)."""

from __future__ import annotations

from typing import Any

from marshmallow import ValidationError, fields, validate, validates_schema

from loyalty.earning.models import ActivityKind, OrderStatus, RuleKind
from loyalty.members.paths import MemberRef
from loyalty.members.schemas import ExternalId
from loyalty.pagination import PageQuery, page_schema
from loyalty.schemas import (
    MAX_BASKET_LINES,
    MAX_LINE_QUANTITY,
    MAX_MINOR,
    MAX_POINTS,
    MAX_UNIT_PRICE,
    Id,
    Instant,
    Metadata,
    MetadataOut,
    StrictSchema,
    Text,
)
from loyalty.stores.models import Channel

MAX_LINES = MAX_BASKET_LINES
MAX_QUANTITY = MAX_LINE_QUANTITY
# Ids travel in URLs, so no "/", "?", "#" or "%".
EXTERNAL_ID = validate.Regexp(
    r"^[A-Za-z0-9._:~@+=,;!$*()'-]{1,128}$",
    error="1-128 letters, digits or . _ : ~ @ + = , ; ! $ * ( ) ' -",
)
CURRENCY = validate.Regexp(r"^[A-Z]{3}$", error="an ISO 4217 code such as EUR")


def _strings(max_items: int = 200, max_length: int = 64, **kwargs: Any) -> fields.List:
    return fields.List(
        fields.String(validate=validate.Length(min=1, max=max_length)),
        validate=validate.Length(min=1, max=max_items),
        **kwargs,
    )


class MemberRefSchema(StrictSchema):
    """Exactly one of member_id, qr_token or member_token; or one or more identities and/or
    your `external_id` (an unknown member is enrolled, unless `enrol` is false)."""

    member_id = Id()
    phone = fields.String(
        validate=validate.Length(min=3, max=32),
        metadata={
            "description": "E.164, or a national number: the store's country (else the "
            "program's OMNILOYAL_DEFAULT_REGION) is its region, as in identify"
        },
    )
    email = fields.String(validate=validate.Length(min=3, max=320))
    card = fields.String(validate=validate.Length(min=1, max=64))
    app_user = fields.String(validate=validate.Length(min=1, max=128))
    external_id = ExternalId()
    qr_token = fields.String(validate=validate.Length(min=1, max=512))
    member_token = fields.String(validate=validate.Length(min=1, max=512))
    enrol = fields.Boolean(
        load_default=True,
        metadata={
            "description": "enrol a member nobody has these identities for (the default); "
            "false: an unknown member is a 404 `member-not-found` (a typo at checkout creates "
            "no duplicate)"
        },
    )

    @validates_schema
    def one_reference(self, data: dict[str, Any], **_: Any) -> None:
        references = [k for k in ("member_id", "qr_token", "member_token") if k in data]
        identities = [k for k in (*IDENTITY_FIELDS, "external_id") if k in data]
        if len(references) + (1 if identities else 0) != 1:
            raise ValidationError(
                "give exactly one of member_id, qr_token, member_token, or identities "
                "(phone, email, card, app_user, external_id)"
            )


IDENTITY_FIELDS = ("phone", "email", "card", "app_user")


class OrderLineSchema(StrictSchema):
    sku = Text(64, required=True)
    category = fields.String(load_default=None, validate=validate.Length(min=1, max=64))
    quantity = fields.Integer(
        strict=True, required=True, validate=validate.Range(min=1, max=MAX_QUANTITY)
    )
    unit_price_minor = fields.Integer(
        strict=True, required=True, validate=validate.Range(min=0, max=MAX_UNIT_PRICE)
    )


class OrderRequestSchema(StrictSchema):
    order_id = fields.String(required=True, validate=EXTERNAL_ID)
    channel = fields.String(required=True, validate=validate.OneOf([c.value for c in Channel]))
    store_id = fields.String(load_default=None, validate=validate.Length(min=1, max=64))
    member = fields.Nested(MemberRefSchema, required=True)
    lines = fields.List(
        fields.Nested(OrderLineSchema),
        required=True,
        validate=validate.Length(min=1, max=MAX_LINES),
    )
    currency = fields.String(required=True, validate=CURRENCY)
    occurred_at = Instant(
        load_default=None,
        metadata={
            "description": "when the purchase happened (default: now), with an offset. At most "
            "5 minutes ahead of the server clock and at most OMNILOYAL_MAX_ORDER_AGE_DAYS "
            "(default 30) days in the past; otherwise a 422 naming occurred_at."
        },
    )
    coupon_codes = _strings(max_items=10, load_default=None)
    metadata = Metadata(load_default=None)
    subtotal_minor = fields.Integer(
        strict=True,
        load_default=None,
        validate=validate.Range(min=0, max=MAX_MINOR),
        metadata={"description": "optional check: must equal the sum of the lines"},
    )
    total_minor = fields.Integer(
        strict=True,
        load_default=None,
        validate=validate.Range(min=0, max=MAX_MINOR),
        metadata={"description": "optional check: subtotal minus the coupons' discount"},
    )

    @validates_schema
    def consistent_totals(self, data: dict[str, Any], **_: Any) -> None:
        total = sum(line["quantity"] * line["unit_price_minor"] for line in data.get("lines", []))
        if total > MAX_MINOR:
            raise ValidationError(f"the order total must be at most {MAX_MINOR}", "lines")
        if data.get("subtotal_minor") is not None and data["subtotal_minor"] != total:
            raise ValidationError(f"the lines add up to {total}", "subtotal_minor")
        if data.get("total_minor") is not None and data["total_minor"] > total:
            raise ValidationError("the total can't exceed the lines' sum", "total_minor")


class PreviewMemberSchema(MemberRefSchema):
    """The member to preview for: by id, external id or identities (never enrolled; an
    unknown identity previews for a new member). No QR token: its one use is the order's."""

    class Meta:
        exclude = ("qr_token", "member_token", "enrol")


class OrderPreviewRequestSchema(OrderRequestSchema):
    """An order's basket; nothing is written, so no order id."""

    class Meta:
        exclude = ("order_id", "subtotal_minor", "total_minor", "metadata")

    member = fields.Nested(
        PreviewMemberSchema,
        load_default=None,
        metadata={"description": "whose tier multiplies the points (default: nobody's)"},
    )


class BreakdownSchema(StrictSchema):
    rule_id = fields.Integer(allow_none=True)
    name = fields.String(allow_none=True)
    kind = fields.String()
    points = fields.Integer()


class PreviewLineDiscountSchema(StrictSchema):
    line = fields.Integer(metadata={"description": "index of the basket line (0-based)"})
    discount_minor = fields.Integer()


class OrderPreviewSchema(StrictSchema):
    member_id = fields.Integer(allow_none=True)
    member_known = fields.Boolean(
        metadata={"description": "false: nobody has these identities yet (the order enrols)"}
    )
    tier = fields.String(allow_none=True)
    currency = fields.String()
    subtotal_minor = fields.Integer()
    discount_minor = fields.Integer(metadata={"description": "what the codes would take off"})
    total_minor = fields.Integer()
    line_discounts = fields.List(fields.Nested(PreviewLineDiscountSchema))
    points = fields.Integer(metadata={"description": "what the order would earn"})
    breakdown = fields.List(fields.Nested(BreakdownSchema))
    pending_until = fields.DateTime(allow_none=True)
    coupons = fields.Dict(
        allow_none=True,
        metadata={
            "description": "per code: applies, reasons, discount (as POST /v1/coupons/validate)"
        },
    )


class ReversalSchema(StrictSchema):
    points_reversed = fields.Integer(metadata={"description": "the proportional target"})
    revoked_pending = fields.Integer()
    revoked_available = fields.Integer()
    clawed_back = fields.Integer(metadata={"description": "recorded as debt (claw-back)"})
    forgiven = fields.Integer(metadata={"description": "not taken back (return policy)"})
    already_expired = fields.Integer(
        metadata={"description": "not taken back: the order's own points had expired"}
    )
    points_returned = fields.Integer(
        metadata={"description": "points that paid for the order (captured holds) given back"}
    )
    policy = fields.String()
    ledger_transaction_id = fields.Integer(allow_none=True)
    cancelled_at = fields.String()


class OrderSchema(StrictSchema):
    order_id = fields.String(attribute="external_id")
    id = fields.Integer()
    member_id = fields.Integer()
    member_enrolled = fields.Boolean(metadata={"description": "the order enrolled the member"})
    channel = fields.String()
    store_id = fields.String(allow_none=True)
    currency = fields.String()
    subtotal_minor = fields.Integer()
    discount_minor = fields.Integer()
    total_minor = fields.Integer()
    refunded_minor = fields.Integer()
    occurred_at = fields.DateTime()
    status = fields.String(validate=validate.OneOf([s.value for s in OrderStatus]))
    points_earned = fields.Integer()
    points_reversed = fields.Integer()
    pending_until = fields.DateTime(allow_none=True)
    metadata = MetadataOut()
    breakdown = fields.List(fields.Nested(BreakdownSchema))
    coupons = fields.List(fields.Dict())
    cancellation = fields.Nested(ReversalSchema, allow_none=True)


class RefundLineSchema(StrictSchema):
    index = fields.Integer(strict=True, required=True, validate=validate.Range(min=0, max=10_000))
    quantity = fields.Integer(
        strict=True, required=True, validate=validate.Range(min=1, max=MAX_QUANTITY)
    )


class RefundRequestSchema(StrictSchema):
    refund_id = fields.String(required=True, validate=EXTERNAL_ID)
    lines = fields.List(
        fields.Nested(RefundLineSchema), validate=validate.Length(min=1, max=MAX_LINES)
    )
    amount_minor = fields.Integer(strict=True, validate=validate.Range(min=1, max=MAX_MINOR))

    @validates_schema
    def lines_or_amount(self, data: dict[str, Any], **_: Any) -> None:
        if ("lines" in data) == ("amount_minor" in data):
            raise ValidationError("give either lines or amount_minor")
        indexes = [line["index"] for line in data.get("lines", [])]
        if len(indexes) != len(set(indexes)):
            raise ValidationError("each line index at most once", "lines")


class RefundLineResultSchema(StrictSchema):
    index = fields.Integer()
    quantity = fields.Integer()
    amount_minor = fields.Integer()


class RefundSchema(StrictSchema):
    refund_id = fields.String(attribute="external_id")
    order_id = fields.String()
    order_status = fields.String()
    amount_minor = fields.Integer()
    lines = fields.List(fields.Nested(RefundLineResultSchema))
    points_reversed = fields.Integer(
        metadata={"description": "points this refund takes back, before the return policy"}
    )
    revoked_pending = fields.Integer()
    revoked_available = fields.Integer()
    clawed_back = fields.Integer(metadata={"description": "recorded as debt (claw-back)"})
    forgiven = fields.Integer(metadata={"description": "not taken back (return policy)"})
    already_expired = fields.Integer(
        metadata={"description": "not taken back: the order's own points had expired"}
    )
    points_returned = fields.Integer(
        metadata={
            "description": "points that paid for the order given back, in proportion to the "
            "part of the order refunded so far"
        }
    )
    policy = fields.String()
    created_at = fields.DateTime()


class ActivityEventRequestSchema(StrictSchema):
    kind = fields.String(required=True, validate=validate.OneOf([k.value for k in ActivityKind]))
    key = fields.String(
        load_default=None,
        validate=EXTERNAL_ID,
        metadata={"description": "the caller's own reference, recorded (dedupe is ours)"},
    )
    referred_member_id = MemberRef(load_default=None)


class ActivityEventSchema(StrictSchema):
    id = fields.Integer()
    member_id = fields.Integer()
    kind = fields.String()
    key = fields.String(attribute="dedupe_key")
    reference = fields.String(allow_none=True)
    referred_member_id = fields.Integer(allow_none=True)
    points = fields.Integer()
    breakdown = fields.List(fields.Nested(BreakdownSchema))
    already_earned = fields.Boolean()
    created_at = fields.DateTime()


# --- rules ----------------------------------------------------------------------------------


class RuleFieldsSchema(StrictSchema):
    name = Text(200)
    kind = fields.String(validate=validate.OneOf([k.value for k in RuleKind]))
    active = fields.Boolean()
    currency = fields.String(allow_none=True, validate=CURRENCY)
    channels = _strings(allow_none=True)
    store_ids = _strings(allow_none=True, max_items=1000)
    regions = _strings(allow_none=True)
    categories = _strings(allow_none=True, max_items=1000)
    skus = _strings(allow_none=True, max_items=1000)
    points = fields.Integer(strict=True, validate=validate.Range(min=0, max=1_000_000))
    per_minor = fields.Integer(strict=True, validate=validate.Range(min=1, max=MAX_MINOR))
    multiplier_pct = fields.Integer(strict=True, validate=validate.Range(min=100, max=10_000))
    bonus_points = fields.Integer(strict=True, validate=validate.Range(min=0, max=MAX_POINTS))
    min_spend_minor = fields.Integer(
        strict=True, allow_none=True, validate=validate.Range(min=0, max=MAX_MINOR)
    )
    max_points = fields.Integer(
        strict=True, allow_none=True, validate=validate.Range(min=0, max=MAX_POINTS)
    )
    activity_kind = fields.String(
        allow_none=True, validate=validate.OneOf([k.value for k in ActivityKind])
    )
    starts_at = Instant(allow_none=True)
    ends_at = Instant(allow_none=True)

    @validates_schema
    def known_channels(self, data: dict[str, Any], **_: Any) -> None:
        known = {c.value for c in Channel}
        unknown = set(data.get("channels") or []) - known
        if unknown:
            raise ValidationError(f"unknown channel(s): {', '.join(sorted(unknown))}", "channels")


class RuleCreateSchema(RuleFieldsSchema):
    name = Text(200, required=True)
    kind = fields.String(required=True, validate=validate.OneOf([k.value for k in RuleKind]))


class RuleUpdateSchema(RuleFieldsSchema):
    pass


class RuleSchema(RuleFieldsSchema):
    id = fields.Integer()
    created_at = fields.DateTime()
    updated_at = fields.DateTime()


class RuleQuery(PageQuery):
    kind = fields.String(load_default=None, validate=validate.OneOf([k.value for k in RuleKind]))
    active = fields.Boolean(load_default=None)


RulePageSchema = page_schema(RuleSchema)
