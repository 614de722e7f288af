"""Coupon API schemas: offers, codes, baskets, validation and redemption results, wallet."""

from __future__ import annotations

from typing import Any

from marshmallow import ValidationError, fields, post_load, validate, validates_schema

from loyalty.basket import Basket, BasketLine
from loyalty.coupons.codes import MAX_BATCH, MAX_BATCH_AT_ONCE
from loyalty.coupons.discounts import OfferKind, Stacking
from loyalty.coupons.models import OfferStatus
from loyalty.db import BIGINT_MAX
from loyalty.members.paths import MemberRef, MemberRefList
from loyalty.pagination import PageQuery, page_schema
from loyalty.schemas import (
    MAX_BASKET_LINES,
    MAX_LINE_QUANTITY,
    MAX_MINOR,
    MAX_UNIT_PRICE,
    Count,
    Id,
    Instant,
    Metadata,
    MetadataOut,
    Minor,
    Points,
    StrictSchema,
    Text,
)
from loyalty.stores.models import Channel

CHANNELS = [c.value for c in Channel]
Currency = lambda **kw: fields.String(validate=validate.Regexp(r"^[A-Z]{3}$"), **kw)  # noqa: E731
Code = lambda **kw: Text(80, **kw)  # noqa: E731  (hyphens and spaces are stripped later)
TextList = lambda n=1000, **kw: fields.List(Text(64), validate=validate.Length(max=n), **kw)  # noqa: E731


# --- offers ---------------------------------------------------------------------------------


class OfferTermsFields(StrictSchema):
    kind = fields.String(validate=validate.OneOf([k.value for k in OfferKind]))
    percent_bp = fields.Integer(
        strict=True,
        validate=validate.Range(min=1, max=10_000),
        metadata={"description": "percent off in basis points (1500 = 15 %)"},
    )
    percent = fields.Decimal(
        places=2,
        validate=validate.Range(min=0, max=100, min_inclusive=False),
        # Documented bounds as numbers: apispec would write them as Decimal, i.e. strings.
        metadata={
            "description": "percent off (alternative to percent_bp)",
            "minimum": 0.01,
            "maximum": 100,
        },
    )
    max_discount_minor = Minor(allow_none=True)
    amount_minor = fields.Integer(strict=True, validate=validate.Range(min=1, max=MAX_MINOR))
    free_sku = Text(64)
    free_quantity = fields.Integer(strict=True, validate=validate.Range(min=1, max=1000))
    bonus_points = Points()
    points_multiplier_pct = fields.Integer(
        strict=True,
        validate=validate.Range(min=101, max=1000),
        metadata={"description": "200 = double points on the order"},
    )
    currency = Currency(allow_none=True)
    min_spend_minor = Minor()
    eligible_skus = TextList()
    excluded_skus = TextList()
    eligible_categories = TextList()
    excluded_categories = TextList()
    channels = fields.List(fields.String(validate=validate.OneOf(CHANNELS)))
    store_ids = TextList()
    regions = TextList()
    valid_from = Instant(allow_none=True)
    valid_until = Instant(allow_none=True)
    valid_days_after_issue = fields.Integer(
        strict=True, allow_none=True, validate=validate.Range(min=1, max=3660)
    )
    stacking = fields.String(validate=validate.OneOf([s.value for s in Stacking]))
    stack_group = Text(64, allow_none=True)
    priority = fields.Integer(strict=True, validate=validate.Range(min=0, max=1000))
    max_redemptions = Count(allow_none=True)
    budget_minor = fields.Integer(
        strict=True, allow_none=True, validate=validate.Range(min=1, max=MAX_MINOR)
    )
    per_member_limit = fields.Integer(
        strict=True, allow_none=True, validate=validate.Range(min=1, max=10_000)
    )
    name = Text(200)
    description = fields.String(validate=validate.Length(max=2000), allow_none=True)
    status = fields.String(validate=validate.OneOf([s.value for s in OfferStatus]))
    campaign_id = Id(allow_none=True)
    metadata = Metadata(allow_none=True)

    @validates_schema
    def percent_once(self, data: dict[str, Any], **_: object) -> None:
        if "percent" in data and "percent_bp" in data:
            raise ValidationError("give percent or percent_bp, not both", "percent")

    @post_load
    def to_basis_points(self, data: dict[str, Any], **_: object) -> dict[str, Any]:
        if "percent" in data:
            data["percent_bp"] = int(data.pop("percent") * 100)
        return data


class OfferCreateSchema(OfferTermsFields):
    """An offer: what it gives (kind + its field), conditions, validity, limits, stacking."""

    kind = fields.String(required=True, validate=validate.OneOf([k.value for k in OfferKind]))
    name = Text(200, required=True)


class OfferUpdateSchema(OfferTermsFields):
    """Any subset of the offer's fields; changing a term creates a new version."""


class OfferSchema(StrictSchema):
    id = fields.Integer()
    name = fields.String()
    description = fields.String(allow_none=True)
    status = fields.String()
    version = fields.Integer()
    max_redemptions = fields.Integer(allow_none=True)
    budget_minor = fields.Integer(allow_none=True)
    per_member_limit = fields.Integer(allow_none=True)
    redemptions_count = fields.Integer(
        metadata={
            "description": "uses held or redeemed now (rolled back, released and expired "
            "ones don't count), for every offer, capped or not"
        }
    )
    discount_spent_minor = fields.Integer(
        metadata={"description": "the discount of those uses (minor units)"}
    )
    metadata = MetadataOut()
    has_codes = fields.Boolean()
    campaign_id = fields.Integer(allow_none=True)
    terms = fields.Dict(metadata={"description": "the current version's terms"})
    created_at = fields.DateTime()
    updated_at = fields.DateTime()


class OfferVersionSchema(StrictSchema):
    version = fields.Integer()
    terms = fields.Dict()
    created_at = fields.DateTime()
    created_by = fields.String()


class OfferQuery(PageQuery):
    status = fields.String(
        load_default=None, validate=validate.OneOf([s.value for s in OfferStatus])
    )


class OfferStatsSchema(StrictSchema):
    codes = fields.Integer()
    uses_taken = fields.Integer()
    redeemed = fields.Integer()
    discount_minor = fields.Integer()
    by_status = fields.Dict(keys=fields.String(), values=fields.Integer())
    by_channel = fields.Dict()


# --- codes ----------------------------------------------------------------------------------


MAX_USES_DESCRIPTION = "uses each code allows (null: unlimited); the CLI's --max-uses (`unlimited`)"
_LITERAL = validate.Regexp(
    r"^[A-Z0-9]*$",
    error="upper-case letters and digits only: codes are compared without hyphens or spaces, "
    "so a prefix such as 'WS-' can't be kept (it is never silently changed)",
)


class MaxUsesFields(StrictSchema):
    """`max_uses`, one name in the API and the CLI; `max_uses_per_code` is its old name."""

    max_uses = Count(allow_none=True, metadata={"description": MAX_USES_DESCRIPTION})
    max_uses_per_code = Count(
        allow_none=True,
        metadata={"description": "deprecated: the old name of max_uses", "deprecated": True},
    )

    @post_load
    def one_max_uses(self, data: dict[str, Any], **_: object) -> dict[str, Any]:
        given = "max_uses" in data and "max_uses_per_code" in data
        if given and data["max_uses"] != data["max_uses_per_code"]:
            raise ValidationError("give max_uses (max_uses_per_code is its old name)", "max_uses")
        old = data.pop("max_uses_per_code", 1)
        data["max_uses"] = data.get("max_uses", old)
        return data


class GenerateSchema(MaxUsesFields):
    count = fields.Integer(
        strict=True,
        required=True,
        validate=validate.Range(min=1, max=MAX_BATCH),
        metadata={
            "description": f"up to {MAX_BATCH:,} (as `omniloyal coupons generate --count`); "
            f"up to {MAX_BATCH_AT_ONCE:,} are made at once (201), more in the background "
            "(202: the batch is `running` until `done`, see GET /v1/coupons/batches/{id})"
        },
    )
    prefix = fields.String(load_default=None, validate=[validate.Length(max=16), _LITERAL])
    suffix = fields.String(load_default=None, validate=[validate.Length(max=16), _LITERAL])
    pattern = fields.String(
        load_default=None,
        validate=validate.Length(max=64),
        metadata={"description": "'#' = random character, e.g. 'SPR-####-####-####'"},
    )
    length = fields.Integer(load_default=12, validate=validate.Range(min=12, max=32))
    campaign_id = Id(load_default=None)


class BatchSchema(StrictSchema):
    id = fields.Integer()
    offer_id = fields.Integer()
    kind = fields.String()
    requested = fields.Integer()
    created_count = fields.Integer()
    prefix = fields.String(allow_none=True)
    suffix = fields.String(allow_none=True)
    pattern = fields.String(allow_none=True)
    max_uses = fields.Function(
        lambda batch: batch.max_uses_per_code,
        metadata={"type": ["integer", "null"], "description": MAX_USES_DESCRIPTION},
    )
    max_uses_per_code = fields.Integer(
        allow_none=True, metadata={"description": "deprecated: max_uses", "deprecated": True}
    )
    campaign_id = fields.Integer(allow_none=True)
    status = fields.String(
        metadata={
            "enum": ["running", "done", "failed"],
            "description": "`running` while a background batch is made (`created_count` "
            "grows), then `done`; `failed` with `error` (the codes made so far stay)",
        }
    )
    error = fields.String(allow_none=True)
    created_at = fields.DateTime()


class SharedCodeCreateSchema(StrictSchema):
    code = Code(required=True)
    max_uses = Count(load_default=None, metadata={"description": MAX_USES_DESCRIPTION})


class CodeSchema(StrictSchema):
    id = fields.Integer()
    code = fields.String()
    offer_id = fields.Integer()
    kind = fields.String()
    status = fields.String()
    uses = fields.Integer()
    max_uses = fields.Integer(allow_none=True)
    member_id = fields.Integer(allow_none=True)
    expires_at = fields.DateTime(allow_none=True)


class ImportSchema(MaxUsesFields):
    codes = fields.List(Code(), required=True, validate=validate.Length(min=1, max=100_000))


class ImportResultSchema(StrictSchema):
    batch = fields.Nested(BatchSchema)
    invalid = fields.List(fields.String())
    duplicates = fields.List(fields.String())


class IssueSchema(StrictSchema):
    member_ids = MemberRefList(required=True, validate=validate.Length(min=1, max=10_000))
    source_type = fields.String(
        load_default="admin", validate=validate.OneOf(["admin", "campaign", "support"])
    )
    source_ref = Text(128, load_default=None)
    campaign_id = Id(load_default=None)


class IssuedSchema(StrictSchema):
    items = fields.List(
        fields.Nested(CodeSchema), metadata={"description": "the coupons issued, one per member"}
    )


# --- baskets, validation, redemption ----------------------------------------------------------


class BasketLineSchema(StrictSchema):
    sku = Text(64, required=True)
    category = Text(64, load_default=None)
    quantity = fields.Integer(
        strict=True, required=True, validate=validate.Range(min=1, max=MAX_LINE_QUANTITY)
    )
    unit_price_minor = fields.Integer(
        strict=True, required=True, validate=validate.Range(min=0, max=MAX_UNIT_PRICE)
    )


class BasketFields(StrictSchema):
    codes = fields.List(Code(), required=True, validate=validate.Length(min=1, max=10))
    store_id = Text(64, load_default=None)
    channel = fields.String(required=True, validate=validate.OneOf(CHANNELS))
    currency = Currency(required=True)
    lines = fields.List(
        fields.Nested(BasketLineSchema),
        required=True,
        validate=validate.Length(min=1, max=MAX_BASKET_LINES),
    )

    @validates_schema
    def basket_total_in_range(self, data: dict[str, Any], **_: object) -> None:
        # Like an order's: discounts are stored in BIGINT columns, so the basket is capped.
        total = sum(line["quantity"] * line["unit_price_minor"] for line in data.get("lines", []))
        if total > MAX_MINOR:
            raise ValidationError(f"the basket total must be at most {MAX_MINOR}", "lines")


def basket_from(data: dict[str, Any], store_id: str | None) -> Basket:
    return Basket(
        currency=data["currency"],
        channel=data["channel"],
        store_id=store_id,
        lines=tuple(
            BasketLine(
                index=i,
                sku=line["sku"],
                category=line["category"],
                quantity=line["quantity"],
                unit_price_minor=line["unit_price_minor"],
            )
            for i, line in enumerate(data["lines"])
        ),
    )


class ValidateSchema(BasketFields):
    member_id = MemberRef(load_default=None)


class MemberValidateSchema(BasketFields):
    """The member's own check from the app (their id comes from the token)."""


class RedeemSchema(BasketFields):
    member_id = MemberRef(load_default=None)
    order_ref = Text(128, required=True, metadata={"description": "your order or receipt id"})
    metadata = Metadata(load_default=None)


class CouponHoldRequestSchema(BasketFields):
    member_id = MemberRef(load_default=None)
    order_ref = Text(128, load_default=None)
    ttl_seconds = fields.Integer(load_default=None, validate=validate.Range(min=10, max=86_400))
    metadata = Metadata(load_default=None)


class RollbackRequestSchema(StrictSchema):
    reason = Text(500, load_default=None, metadata={"description": "why: stored and returned"})


class RollbacksRequestSchema(StrictSchema):
    checkout_ref = Text(64, load_default=None, metadata={"description": "one checkout's codes"})
    order_ref = Text(128, load_default=None, metadata={"description": "one order's codes"})
    reason = Text(500, load_default=None, metadata={"description": "why: stored and returned"})

    @validates_schema
    def one_reference(self, data: dict[str, Any], **_: object) -> None:
        if (data.get("checkout_ref") is None) == (data.get("order_ref") is None):
            raise ValidationError("give checkout_ref or order_ref", "checkout_ref")


class CouponCaptureSchema(StrictSchema):
    order_ref = Text(128, load_default=None)


class LineDiscountSchema(StrictSchema):
    line = fields.Integer(metadata={"description": "index of the basket line (0-based)"})
    discount_minor = fields.Integer()


class OfferSummarySchema(StrictSchema):
    id = fields.Integer()
    name = fields.String()
    version = fields.Integer()
    kind = fields.String()


class CodeResultSchema(StrictSchema):
    code = fields.String(metadata={"description": "normalised"})
    applies = fields.Boolean()
    reasons = fields.List(fields.String())
    discount_minor = fields.Integer()
    line_discounts = fields.List(fields.Nested(LineDiscountSchema))
    bonus_points = fields.Integer()
    points_multiplier_pct = fields.Integer()
    offer = fields.Nested(OfferSummarySchema, allow_none=True)


class ValidationResultSchema(StrictSchema):
    results = fields.List(fields.Nested(CodeResultSchema))
    total_discount_minor = fields.Integer()
    line_discounts = fields.List(fields.Nested(LineDiscountSchema))
    bonus_points = fields.Integer()
    points_multiplier_pct = fields.Integer()


class RedemptionSchema(StrictSchema):
    id = fields.Integer()
    code = fields.String()
    offer_id = fields.Integer()
    offer_version = fields.Integer()
    status = fields.String()
    checkout_ref = fields.String()
    order_ref = fields.String(allow_none=True)
    order_id = fields.Integer(allow_none=True)
    member_id = fields.Integer(allow_none=True)
    store_id = fields.String(allow_none=True)
    channel = fields.String()
    currency = fields.String()
    discount_minor = fields.Integer()
    line_discounts = fields.Method("dump_lines")
    bonus_points = fields.Integer()
    points_multiplier_pct = fields.Integer()
    source_type = fields.String(allow_none=True)
    source_ref = fields.String(allow_none=True)
    campaign_id = fields.Integer(allow_none=True)
    expires_at = fields.DateTime(allow_none=True)
    created_at = fields.DateTime()
    redeemed_at = fields.DateTime(allow_none=True)
    closed_at = fields.DateTime(allow_none=True)
    rollback_reason = fields.String(allow_none=True, metadata={"description": "as given"})
    metadata = MetadataOut()

    def dump_lines(self, redemption: Any) -> list[dict[str, int]]:
        return [
            {"line": int(i), "discount_minor": d}
            for i, d in sorted(redemption.line_discounts.items(), key=lambda kv: int(kv[0]))
        ]


class RollbackResultSchema(StrictSchema):
    checkout_ref = fields.String(allow_none=True)
    order_ref = fields.String(allow_none=True)
    reason = fields.String(allow_none=True)
    rolled_back = fields.Integer(metadata={"description": "rolled back by this call"})
    redemptions = fields.List(fields.Nested(RedemptionSchema))


class CheckoutSchema(StrictSchema):
    checkout_ref = fields.String(metadata={"description": "the hold id for capture/release"})
    status = fields.String()
    replayed = fields.Boolean(
        metadata={
            "description": "true: these codes were already "
            "redeemed for this order_ref; nothing new was taken"
        }
    )
    total_discount_minor = fields.Integer()
    line_discounts = fields.List(fields.Nested(LineDiscountSchema))
    bonus_points = fields.Integer()
    points_multiplier_pct = fields.Integer()
    redemptions = fields.List(fields.Nested(RedemptionSchema))


# --- wallet and rewards -----------------------------------------------------------------------


class WhereSchema(StrictSchema):
    everywhere = fields.Boolean()
    channels = fields.List(fields.String())
    store_ids = fields.List(fields.String())
    regions = fields.List(fields.String())


class WalletOfferSchema(StrictSchema):
    id = fields.Integer()
    name = fields.String()
    description = fields.String(allow_none=True)
    kind = fields.String()
    version = fields.Integer()


class WalletCouponSchema(StrictSchema):
    id = fields.Integer()
    code = fields.String()
    status = fields.String(metadata={"description": "available, held, redeemed or expired"})
    offer = fields.Nested(WalletOfferSchema)
    valid_from = fields.DateTime(allow_none=True)
    expires_at = fields.DateTime(allow_none=True)
    local_expires_at = fields.String(allow_none=True)
    where = fields.Nested(WhereSchema)
    uses = fields.Integer()
    max_uses = fields.Integer(allow_none=True)
    returnable = fields.Boolean()
    source = fields.Dict()


WalletSchema = page_schema(WalletCouponSchema, "WalletSchema")


class WalletQuery(PageQuery):
    status = fields.String(
        load_default=None, validate=validate.OneOf(["available", "held", "redeemed", "expired"])
    )


class RewardCreateSchema(StrictSchema):
    offer_id = Id(required=True)
    name = Text(200, required=True)
    description = fields.String(load_default=None, validate=validate.Length(max=2000))
    points_cost = Points(required=True)
    stock = fields.Integer(
        strict=True, load_default=None, validate=validate.Range(min=0, max=BIGINT_MAX)
    )
    active = fields.Boolean(load_default=True)


class RewardUpdateSchema(StrictSchema):
    name = Text(200)
    description = fields.String(validate=validate.Length(max=2000), allow_none=True)
    points_cost = Points()
    stock = fields.Integer(
        strict=True, allow_none=True, validate=validate.Range(min=0, max=BIGINT_MAX)
    )
    active = fields.Boolean()


class RewardSchema(StrictSchema):
    id = fields.Integer()
    offer_id = fields.Integer()
    name = fields.String()
    description = fields.String(allow_none=True)
    points_cost = fields.Integer()
    stock = fields.Integer(allow_none=True)
    active = fields.Boolean()
