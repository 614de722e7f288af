"""Request and response schemas of the campaigns API."""

from __future__ import annotations

from marshmallow import Schema, fields, validate

from campaigns.engine_models import CampaignStatus, OfferKind, ScheduleKind
from loyalty.members.paths import MemberRef
from loyalty.schemas import Instant, StrictSchema, Text

CHANNELS = ["sms", "email", "push"]
ATTRIBUTION_RULE = (
    "An order is attributed to the campaign when it redeems one of the campaign's coupon "
    "codes (always), or, last touch, when the campaign's message was the last marketing "
    "message sent to the person before the order and at most `attribution_days` (default "
    "7) earlier. The control group is measured over the same window from the run's start."
)


class CampaignTemplatesSchema(StrictSchema):
    """A template key per channel (e.g. `campaign_offer`); the template itself is chosen
    per member locale by notifications (stored version, else the shipped default)."""

    sms = Text(100)
    email = Text(100)
    push = Text(100)


class CampaignVariantSchema(StrictSchema):
    name = Text(32, required=True)
    weight = fields.Integer(load_default=1, validate=validate.Range(min=1, max=100))
    templates = fields.Nested(CampaignTemplatesSchema, required=True)


class CampaignContentSchema(StrictSchema):
    variants = fields.List(
        fields.Nested(CampaignVariantSchema),
        required=True,
        validate=validate.Length(min=1, max=5),
        metadata={"description": "A/B variants; members are split by weight (a stable hash)"},
    )


class CampaignOfferSchema(StrictSchema):
    kind = fields.String(
        load_default=OfferKind.NONE.value,
        validate=validate.OneOf([k.value for k in OfferKind]),
        metadata={
            "description": "coupon: a unique code of `offer_id` per recipient, issued at send "
            "time; points: `points` credited through the ledger; multiplier: "
            "`multiplier_pct` on purchases for `days` after the message; none"
        },
    )
    offer_id = fields.Integer(load_default=None, allow_none=True)
    points = fields.Integer(
        load_default=None, allow_none=True, validate=validate.Range(min=1, max=10_000_000)
    )
    multiplier_pct = fields.Integer(
        load_default=None, allow_none=True, validate=validate.Range(min=101, max=1000)
    )
    days = fields.Integer(
        load_default=None, allow_none=True, validate=validate.Range(min=1, max=90)
    )


class CampaignScheduleSchema(StrictSchema):
    kind = fields.String(
        load_default=ScheduleKind.NOW.value,
        validate=validate.OneOf([k.value for k in ScheduleKind]),
        metadata={
            "description": "now; at (`at`); daily or weekly (first at `at`, then at that local "
            "time every day or week); cron (`cron`, 5 fields, in `timezone`). Event-triggered "
            "campaigns are journeys (see /v1/journeys)."
        },
    )
    at = Instant(load_default=None, allow_none=True)
    cron = Text(100, load_default=None, allow_none=True)
    timezone = Text(64, load_default="UTC")
    until = Instant(load_default=None, allow_none=True)


class CampaignCreateSchema(StrictSchema):
    name = Text(200, required=True)
    description = Text(1000, load_default=None, allow_none=True)
    segment_id = fields.Integer(required=True)
    offer = fields.Nested(CampaignOfferSchema, load_default=lambda: {"kind": "none"})
    channel_order = fields.List(
        fields.String(validate=validate.OneOf(CHANNELS)),
        load_default=lambda: ["push", "sms", "email"],
        validate=validate.Length(min=1, max=3),
        metadata={"description": "Preference order: the first channel with consent and a "
                  "destination is used, one message per member per run"},
    )  # fmt: skip
    content = fields.Nested(CampaignContentSchema, required=True)
    schedule = fields.Nested(CampaignScheduleSchema, load_default=lambda: {"kind": "now"})
    holdout_pct = fields.Integer(
        load_default=10,
        validate=validate.Range(min=0, max=50),
        metadata={"description": "Control group share (deterministic by campaign and person)"},
    )
    attribution_days = fields.Integer(load_default=7, validate=validate.Range(min=1, max=90))


class CampaignUpdateSchema(StrictSchema):
    name = Text(200)
    description = Text(1000, allow_none=True)
    segment_id = fields.Integer()
    offer = fields.Nested(CampaignOfferSchema)
    channel_order = fields.List(
        fields.String(validate=validate.OneOf(CHANNELS)), validate=validate.Length(min=1, max=3)
    )
    content = fields.Nested(CampaignContentSchema)
    schedule = fields.Nested(CampaignScheduleSchema)
    holdout_pct = fields.Integer(validate=validate.Range(min=0, max=50))
    attribution_days = fields.Integer(validate=validate.Range(min=1, max=90))


class CampaignListQuery(StrictSchema):
    limit = fields.Integer(load_default=50, validate=validate.Range(min=1, max=200))
    cursor = fields.String(load_default=None, validate=validate.Length(min=1, max=64))
    status = fields.String(
        load_default=None, validate=validate.OneOf([s.value for s in CampaignStatus])
    )


class CampaignOfferOutSchema(Schema):
    kind = fields.String()
    offer_id = fields.Integer(allow_none=True)
    points = fields.Integer(allow_none=True)
    multiplier_pct = fields.Integer(allow_none=True)
    days = fields.Integer(allow_none=True)


class CampaignScheduleOutSchema(Schema):
    kind = fields.String()
    at = fields.DateTime(allow_none=True)
    cron = fields.String(allow_none=True)
    timezone = fields.String()
    until = fields.DateTime(allow_none=True)


class CampaignTemplatesOutSchema(Schema):
    sms = fields.String()
    email = fields.String()
    push = fields.String()


class CampaignVariantOutSchema(Schema):
    name = fields.String()
    weight = fields.Integer()
    templates = fields.Nested(CampaignTemplatesOutSchema)


class CampaignContentOutSchema(Schema):
    variants = fields.List(fields.Nested(CampaignVariantOutSchema))


class CampaignSchema(Schema):
    id = fields.Integer()
    name = fields.String()
    description = fields.String(allow_none=True)
    status = fields.String(metadata={"enum": [s.value for s in CampaignStatus]})
    segment_id = fields.Integer()
    offer = fields.Nested(CampaignOfferOutSchema)
    channel_order = fields.List(fields.String())
    content = fields.Nested(CampaignContentOutSchema)
    version = fields.Integer()
    schedule = fields.Nested(CampaignScheduleOutSchema)
    next_run_at = fields.DateTime(allow_none=True)
    holdout_pct = fields.Integer()
    attribution_days = fields.Integer()
    attribution_rule = fields.String()
    runs_started = fields.Integer()
    created_by = fields.String()
    created_at = fields.DateTime()
    updated_at = fields.DateTime()
    launched_at = fields.DateTime(allow_none=True)
    finished_at = fields.DateTime(allow_none=True)


class CampaignVersionSchema(Schema):
    version = fields.Integer()
    content = fields.Nested(CampaignContentOutSchema)
    created_by = fields.String()
    created_at = fields.DateTime()


class CampaignTransitionSchema(Schema):
    from_status = fields.String()
    to_status = fields.String()
    actor = fields.String()
    at = fields.DateTime()


class CampaignRunSchema(Schema):
    id = fields.Integer()
    number = fields.Integer()
    status = fields.String()
    scheduled_for = fields.DateTime()
    started_at = fields.DateTime()
    finished_at = fields.DateTime(allow_none=True)
    audience = fields.Integer()
    held_out = fields.Integer()


class CampaignActivitySchema(Schema):
    transitions = fields.List(fields.Nested(CampaignTransitionSchema))
    runs = fields.List(fields.Nested(CampaignRunSchema))


class CampaignChannelCountsSchema(Schema):
    sms = fields.Integer()
    email = fields.Integer()
    push = fields.Integer()


class CampaignEstimateSchema(Schema):
    evaluated_at = fields.DateTime()
    audience = fields.Integer(metadata={"description": "people in the segment now"})
    held_out = fields.Integer(metadata={"description": "the control group (exact, by hash)"})
    messages = fields.Nested(
        CampaignChannelCountsSchema,
        metadata={"description": "expected per channel after consent, reachability and the cap"},
    )
    no_channel = fields.Integer(metadata={"description": "no consented, reachable channel"})
    capped = fields.Integer(metadata={"description": "at the marketing frequency cap now"})
    max_discount_minor = fields.Integer(
        allow_none=True, metadata={"description": "coupon: the most the codes can cost"}
    )
    max_points = fields.Integer(
        allow_none=True,
        metadata={
            "description": "the most bonus points the campaign can credit (its bonus points, "
            "or a bonus-points coupon's); null: unbounded (an earn multiplier)"
        },
    )
    cost_minor = fields.Integer(metadata={"description": "provider cost at the set prices"})
    prices_minor = fields.Nested(CampaignChannelCountsSchema)


class CampaignPreviewRequestSchema(StrictSchema):
    member_id = MemberRef(required=True)
    variant = Text(32, load_default=None, allow_none=True)
    locale = Text(16, load_default=None, allow_none=True)


class CampaignRenderedSchema(Schema):
    channel = fields.String()
    variant = fields.String()
    template = fields.String()
    locale = fields.String()
    template_version = fields.Integer()
    subject = fields.String(allow_none=True)
    body = fields.String()
    html = fields.String(allow_none=True)
    sms_segments = fields.Integer(allow_none=True)


class CampaignPreviewResultSchema(Schema):
    member_id = fields.Integer()
    channel = fields.String(
        allow_none=True, metadata={"description": "the channel the member would get now"}
    )
    reason = fields.String(allow_none=True, metadata={"description": "why none, if none"})
    held_out = fields.Boolean()
    variant = fields.String()
    rendered = fields.List(fields.Nested(CampaignRenderedSchema))


class CampaignTestSendSchema(StrictSchema):
    member_id = MemberRef(required=True, metadata={"description": "whose data it renders"})
    channel = fields.String(required=True, validate=validate.OneOf(CHANNELS))
    to = Text(2000, required=True, metadata={"description": "phone, email or push JSON"})
    variant = Text(32, load_default=None, allow_none=True)


class CampaignTestSendResultSchema(Schema):
    message_id = fields.Integer()
    channel = fields.String()
    template = fields.String()


class CampaignSuppressionSchema(Schema):
    reason = fields.String()
    count = fields.Integer()


class CampaignRedemptionSplitSchema(Schema):
    online = fields.Integer()
    in_store = fields.Integer()
    by_store = fields.Dict(keys=fields.String(), values=fields.Integer())


class CampaignIntervalSchema(Schema):
    low = fields.Float()
    high = fields.Float()


class CampaignConversionSchema(Schema):
    recipients = fields.Integer()
    recipients_converted = fields.Integer()
    recipients_rate = fields.Float()
    control = fields.Integer()
    control_converted = fields.Integer()
    control_rate = fields.Float()
    lift = fields.Float(metadata={"description": "recipients_rate - control_rate"})
    confidence = fields.Float()
    interval = fields.Nested(
        CampaignIntervalSchema,
        allow_none=True,
        metadata={"description": "Newcombe (Wilson) interval of the lift"},
    )
    recipients_revenue_minor = fields.Integer()
    control_revenue_minor = fields.Integer()
    incremental_revenue_minor = fields.Integer()


class CampaignFiguresSchema(Schema):
    targeted = fields.Integer()
    held_out = fields.Integer()
    pending = fields.Integer()
    sent = fields.Integer()
    delivered = fields.Integer()
    failed = fields.Integer()
    in_flight = fields.Integer()
    suppressed = fields.Integer()
    suppressed_by_reason = fields.List(fields.Nested(CampaignSuppressionSchema))
    opted_out = fields.Integer()
    coupons_issued = fields.Integer()
    coupons_redeemed = fields.Integer()
    redemptions = fields.Nested(CampaignRedemptionSplitSchema)
    orders = fields.Integer()
    revenue_minor = fields.Integer()
    points_issued = fields.Integer()
    discount_minor = fields.Integer()
    cost_minor = fields.Integer()
    conversion = fields.Nested(CampaignConversionSchema)


class CampaignVariantResultsSchema(CampaignFiguresSchema):
    variant = fields.String()


class CampaignResultsSchema(CampaignFiguresSchema):
    campaign_id = fields.Integer()
    evaluated_at = fields.DateTime()
    attribution_days = fields.Integer()
    attribution_rule = fields.String()
    variants = fields.List(fields.Nested(CampaignVariantResultsSchema))
