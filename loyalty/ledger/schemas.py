from __future__ import annotations

from marshmallow import fields, validate

from loyalty.ledger.models import TransactionKind
from loyalty.ledger.notes import shown_reason
from loyalty.pagination import PageQuery, page_schema
from loyalty.schemas import MAX_POINTS, Day, Instant, Points, StrictSchema, Text


class BalanceSchema(StrictSchema):
    member_id = fields.Integer()
    balance = fields.Integer(metadata={"description": "points + debt"})
    available = fields.Integer(metadata={"description": "spendable now: balance minus holds"})
    pending = fields.Integer(metadata={"description": "inside the return window"})
    held = fields.Integer()
    debt = fields.Integer(metadata={"description": "<= 0: claw-backs not yet repaid"})


class TransactionSchema(StrictSchema):
    id = fields.Integer()
    member_id = fields.Integer(
        metadata={
            "description": "the id it was booked under: a person's history also lists the "
            "transactions of members merged into them"
        }
    )
    kind = fields.String()
    points = fields.Integer(attribute="amount")
    cause = fields.Method("dump_cause")
    reason = fields.Method("dump_reason", metadata={"type": ["string", "null"]})
    created_at = fields.DateTime()
    local_time = fields.String(metadata={"description": "created_at in the member's timezone"})
    details = fields.Dict()

    def dump_cause(self, tx) -> dict[str, str]:  # type: ignore[no-untyped-def]
        return {"type": tx.cause_type, "ref": tx.cause_ref}

    def dump_reason(self, tx) -> str | None:  # type: ignore[no-untyped-def]
        return shown_reason(tx)


class HistoryQuery(PageQuery):
    kind = fields.List(
        fields.String(validate=validate.OneOf([k.value for k in TransactionKind])),
        load_default=None,
    )
    since = Instant(load_default=None)
    until = Instant(load_default=None)


HistoryPageSchema = page_schema(TransactionSchema, "HistoryPageSchema")


class ExpiringQuery(StrictSchema):
    days = fields.Integer(load_default=30, validate=validate.Range(min=1, max=3660))


class ExpiringBucketSchema(StrictSchema):
    expires_at = fields.DateTime()
    local_date = fields.String()
    points = fields.Integer(metadata={"description": "points that expire then (held excluded)"})
    held = fields.Integer(
        metadata={"description": "points due then that are under an active hold: they don't "
                  "expire while held (a capture spends them, a release lets them expire)"}
    )  # fmt: skip


class ExpiringSchema(StrictSchema):
    total = fields.Integer(metadata={"description": "points expiring in the window, held excluded"})
    held = fields.Integer(metadata={"description": "points due in the window under active holds"})
    within_days = fields.Integer()
    buckets = fields.List(fields.Nested(ExpiringBucketSchema))


class HoldRequestSchema(StrictSchema):
    points = Points(required=True)
    ttl_seconds = fields.Integer(load_default=None, validate=validate.Range(min=10, max=86400))
    reference = Text(128, load_default=None)
    store_id = Text(64, load_default=None)


class CaptureRequestSchema(StrictSchema):
    points = fields.Integer(
        strict=True, load_default=None, validate=validate.Range(min=0, max=MAX_POINTS)
    )
    order_id = Text(128, load_default=None, metadata={"description": "the order paid"})


class HoldSchema(StrictSchema):
    id = fields.Integer()
    member_id = fields.Integer()
    points = fields.Integer(attribute="amount")
    captured = fields.Integer()
    status = fields.String(
        metadata={
            "description": "active, captured, released, expired, or voided: a refund took "
            "the held points back (hold again what is left)"
        }
    )
    order_id = fields.String(
        attribute="order_ref", allow_none=True, metadata={"description": "the order paid"}
    )
    returned = fields.Integer(
        metadata={"description": "captured points given back by the order's refunds"}
    )
    reference = fields.String(allow_none=True)
    store_id = fields.String(allow_none=True)
    expires_at = fields.DateTime()
    created_at = fields.DateTime()
    closed_at = fields.DateTime(allow_none=True)
    capture_transaction_id = fields.Integer(allow_none=True)


class AdjustmentRequestSchema(StrictSchema):
    points = fields.Integer(
        strict=True,
        required=True,
        validate=[
            validate.Range(min=-(10**12), max=10**12),
            validate.NoneOf([0], error="points must not be zero"),
        ],
        metadata={"description": "positive credits, negative debits"},
    )
    reason = Text(500, required=True)


class LiabilityBucketSchema(StrictSchema):
    expiry_month = fields.String(
        allow_none=True,
        metadata={
            "description": "YYYY-MM in the program's timezone: the month of the last day the "
            "points count (points expiring at the end of November are November's); null: never"
        },
    )
    points = fields.Integer()


class LiabilitySchema(StrictSchema):
    as_of = fields.DateTime()
    outstanding = fields.Integer(metadata={"description": "available + held points"})
    pending = fields.Integer()
    debt = fields.Integer()
    timezone = fields.String(
        metadata={"description": "the program's timezone (OMNILOYAL_PROGRAM_TIMEZONE)"}
    )
    by_expiry_month = fields.List(fields.Nested(LiabilityBucketSchema))


class ReportQuery(StrictSchema):
    format = fields.String(
        load_default=None,
        validate=validate.OneOf(["json", "csv"]),
        metadata={
            "description": "csv: the report as a CSV file (same as `Accept: text/csv`); "
            "default: JSON"
        },
    )


ACTIVITY_DAYS = 30  # the window of points-activity when none is given


class ActivityQuery(ReportQuery):
    since = Day(
        load_default=None,
        metadata={"description": f"first UTC day; default: {ACTIVITY_DAYS - 1} days before until"},
    )
    until = Day(
        load_default=None, metadata={"description": "last UTC day (inclusive); default: today"}
    )


class ActivityDaySchema(StrictSchema):
    day = fields.String()
    issued = fields.Integer()
    redeemed = fields.Integer()
    expired = fields.Integer()
    adjusted = fields.Integer()
    reversed = fields.Integer()


class ActivitySchema(StrictSchema):
    days = fields.List(fields.Nested(ActivityDaySchema))
