"""Request and response schemas of the journeys, store events (O2O) and referral APIs."""

from __future__ import annotations

from typing import Any

from marshmallow import Schema, ValidationError, fields, validate

from campaigns.campaign_schemas import CampaignConversionSchema
from campaigns.journeys import ATTRIBUTION_DAYS, CHANNELS, CHECKS, HOLDOUT_PCT, STEP_TYPES, TRIGGERS
from campaigns.schemas import RULE_DOC
from loyalty.members.paths import MemberRef, MemberRefList
from loyalty.schemas import Id, Instant, Points, StrictSchema, Text

WELCOME_EXAMPLE = [
    {"type": "message", "template": "welcome", "channels": ["push", "sms", "email"]},
    {"type": "wait", "days": 3},
    {"type": "condition", "check": "purchased_since_entry", "expect": False, "otherwise": "exit"},
    {"type": "coupon", "offer_id": 1},
    {"type": "message", "template": "coupon_issued", "channels": ["push", "email"]},
    {"type": "wait", "days": 7},
    {"type": "condition", "check": "redeemed_coupon", "expect": False, "otherwise": "exit"},
    {"type": "message", "template": "coupon_reminder", "channels": ["push", "email"]},
]


def _later_step_or_exit(value: Any) -> None:
    if value == "exit" or (
        isinstance(value, int) and not isinstance(value, bool) and 0 < value < 50
    ):
        return
    raise ValidationError("'exit' or the index of a later step")


class StepSchema(StrictSchema):
    type = fields.String(required=True, validate=validate.OneOf(STEP_TYPES))
    days = fields.Integer(strict=True, validate=validate.Range(min=0, max=3650))
    hours = fields.Integer(strict=True, validate=validate.Range(min=0, max=24 * 3650))
    minutes = fields.Integer(strict=True, validate=validate.Range(min=0, max=60 * 24 * 3650))
    check = fields.String(validate=validate.OneOf(CHECKS))
    rule = fields.Dict(metadata=RULE_DOC)
    expect = fields.Boolean()
    otherwise = fields.Raw(
        validate=_later_step_or_exit, metadata={"description": "'exit' or a later step's index"}
    )
    template = Text(100)
    channels = fields.List(
        fields.String(validate=validate.OneOf(CHANNELS)), validate=validate.Length(min=1, max=3)
    )
    offer_id = Id()
    nearest_stores = fields.Integer(strict=True, validate=validate.Range(min=0, max=20))
    points = Points()


class JourneyCreateSchema(StrictSchema):
    name = Text(200, required=True)
    trigger = fields.String(required=True, validate=validate.OneOf(TRIGGERS))
    trigger_days = fields.Integer(
        strict=True, validate=validate.Range(min=1, max=3650), allow_none=True
    )
    segment_id = Id(allow_none=True)
    reentry = fields.String(
        load_default="never", validate=validate.OneOf(["never", "after_days", "always"])
    )
    reentry_days = fields.Integer(
        strict=True, validate=validate.Range(min=1, max=3650), allow_none=True
    )
    steps = fields.List(
        fields.Nested(StepSchema),
        required=True,
        validate=validate.Length(min=1, max=50),
        metadata={"example": WELCOME_EXAMPLE},
    )
    holdout_pct = fields.Integer(
        strict=True,
        load_default=HOLDOUT_PCT,
        validate=validate.Range(min=0, max=50),
        metadata={
            "description": "Control group share: held-out entries are recorded and run no "
            "step (deterministic by journey and person)"
        },
    )
    attribution_days = fields.Integer(
        strict=True, load_default=ATTRIBUTION_DAYS, validate=validate.Range(min=1, max=90)
    )


class VersionCreateSchema(StrictSchema):
    steps = fields.List(
        fields.Nested(StepSchema), required=True, validate=validate.Length(min=1, max=50)
    )


class JourneySchema(Schema):
    id = fields.Integer()
    name = fields.String()
    kind = fields.String()
    status = fields.String()
    version = fields.Integer()
    trigger = fields.String()
    trigger_days = fields.Integer(allow_none=True)
    segment_id = fields.Integer(allow_none=True)
    reentry = fields.String()
    reentry_days = fields.Integer(allow_none=True)
    holdout_pct = fields.Integer()
    attribution_days = fields.Integer()
    created_by = fields.String()
    created_at = fields.DateTime()
    updated_at = fields.DateTime()


class VersionSchema(Schema):
    version = fields.Integer()
    steps = fields.List(fields.Dict())
    created_at = fields.DateTime()


class EnterSchema(StrictSchema):
    member_ids = MemberRefList(required=True, validate=validate.Length(min=1, max=1000))


class EnteredSchema(Schema):
    entered = fields.List(fields.Integer(), metadata={"description": "the entries made"})


class StepRunSchema(Schema):
    step_index = fields.Integer()
    type = fields.String()
    outcome = fields.String()
    ran_at = fields.DateTime()


class EntrySchema(Schema):
    id = fields.Integer()
    member_id = fields.Integer()
    version = fields.Integer()
    status = fields.String()
    step_index = fields.Integer()
    next_run_at = fields.DateTime(allow_none=True)
    entered_at = fields.DateTime()
    exit_reason = fields.String(allow_none=True)
    history = fields.List(fields.Nested(StepRunSchema))


class ProgressSchema(Schema):
    journey_id = fields.Integer()
    member_id = fields.Integer()
    entries = fields.List(fields.Nested(EntrySchema))


class CountByVersionSchema(Schema):
    version = fields.Integer()
    status = fields.String()
    count = fields.Integer()


class CountByStepSchema(Schema):
    step_index = fields.Integer()
    outcome = fields.String()
    count = fields.Integer()


class JourneyResultsSchema(Schema):
    journey_id = fields.Integer()
    entered = fields.Integer(metadata={"description": "every entry, the control group's too"})
    held_out = fields.Integer(metadata={"description": "entries of the control group"})
    holdout_pct = fields.Integer()
    attribution_days = fields.Integer()
    attribution_rule = fields.String()
    conversion = fields.Nested(
        CampaignConversionSchema,
        metadata={"description": "entries through the journey against the control group"},
    )
    entries = fields.Dict(keys=fields.String(), values=fields.Integer())
    by_version = fields.List(fields.Nested(CountByVersionSchema))
    steps = fields.List(fields.Nested(CountByStepSchema))


# --- store events (online to offline) ---


class EventCreateSchema(StrictSchema):
    name = Text(200, required=True)
    store_id = Text(64, required=True)
    starts_at = Instant(required=True)
    ends_at = Instant(required=True)
    capacity = fields.Integer(
        strict=True, required=True, validate=validate.Range(min=1, max=1_000_000)
    )
    checkin_points = fields.Integer(
        strict=True, load_default=0, validate=validate.Range(min=0, max=1_000_000)
    )
    attribution_days = fields.Integer(
        strict=True, load_default=7, validate=validate.Range(min=1, max=365)
    )


class LaunchSchema(EventCreateSchema):
    """A new-product launch: the event, and a journey that announces it to a segment."""

    segment_id = Id(required=True)
    holdout_pct = fields.Integer(
        strict=True, load_default=HOLDOUT_PCT, validate=validate.Range(min=0, max=50)
    )
    template = Text(100, required=True)
    channels = fields.List(
        fields.String(validate=validate.OneOf(CHANNELS)),
        required=True,
        validate=validate.Length(min=1, max=3),
    )


class BookInStoreSchema(StrictSchema):
    """Book online, experience in store: a coupon only the member's nearest stores accept."""

    name = Text(200, required=True)
    segment_id = Id(required=True)
    offer_id = Id(required=True)
    holdout_pct = fields.Integer(
        strict=True, load_default=HOLDOUT_PCT, validate=validate.Range(min=0, max=50)
    )
    nearest_stores = fields.Integer(
        strict=True, load_default=3, validate=validate.Range(min=1, max=20)
    )
    template = Text(100, required=True)
    channels = fields.List(
        fields.String(validate=validate.OneOf(CHANNELS)),
        required=True,
        validate=validate.Length(min=1, max=3),
    )


class EventSchema(Schema):
    id = fields.Integer()
    name = fields.String()
    store_id = fields.String()
    journey_id = fields.Integer(allow_none=True)
    starts_at = fields.DateTime()
    ends_at = fields.DateTime()
    capacity = fields.Integer()
    reserved = fields.Integer()
    checkin_points = fields.Integer()
    attribution_days = fields.Integer()


class LaunchResultSchema(Schema):
    event = fields.Nested(EventSchema)
    journey = fields.Nested(JourneySchema)


class EventResultsSchema(Schema):
    event_id = fields.Integer()
    capacity = fields.Integer()
    reserved = fields.Integer()
    checked_in = fields.Integer()
    cancelled = fields.Integer()
    purchasers = fields.Integer()
    attributed_revenue_minor = fields.Integer()


class ReservationSchema(Schema):
    id = fields.Integer()
    event_id = fields.Integer()
    status = fields.String()
    reserved_at = fields.DateTime()
    checked_in_at = fields.DateTime(allow_none=True)


class CheckInSchema(StrictSchema):
    member_id = MemberRef(required=True)


class CheckInResultSchema(ReservationSchema):
    points = fields.Integer()


# --- referrals ---


class ReferralQuery(StrictSchema):
    device_fingerprint = Text(200, load_default=None)


class ReferralCodeSchema(Schema):
    code = fields.String()
    share_link = fields.String()
    pending = fields.Integer()
    rewarded = fields.Integer()
    refused = fields.Integer()


class ClaimSchema(StrictSchema):
    code = Text(16, required=True)
    device_fingerprint = Text(200, load_default=None)


class ReferralSchema(Schema):
    id = fields.Integer()
    status = fields.String()
    created_at = fields.DateTime()
