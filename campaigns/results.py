"""What a campaign did: reach, deliveries, suppressions, redemptions, attributed orders,
cost, and the conversion of recipients against the control group.

**Attribution** (also in the API's `attribution_rule`): an order counts for the campaign
when it redeemed one of the campaign's codes (always), or, *last touch*, when the campaign's
message was the last marketing message sent to the person before the order, at most
`attribution_days` (default 7) earlier. Cancelled orders don't count; revenue is the order's
total less its refunds.

**Lift** (intention to treat): every treated recipient (messaged or suppressed, each with
their variant) against the control group, each converted when the person placed a counted
order within `attribution_days` of the run's start. The interval of the difference of the
two conversion rates is Newcombe's hybrid score interval (Wilson intervals of each rate,
method 10 of Newcombe 1998), 95 %. Incremental revenue = (revenue per treated person -
revenue per control person) x treated people.

Every query starts from `campaign_recipients` by campaign (`ix_campaign_recipients_campaign`)
or from the campaign's redemptions (`ix_coupon_redemptions_campaign_id`) and reaches orders
through `ix_orders_member_occurred`, messages through their primary key and later marketing
messages through `ix_messages_member_purpose_sent`.
"""

from __future__ import annotations

import csv
import io
import math
from collections import defaultdict
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from flask import current_app

from campaigns.campaign_schemas import ATTRIBUTION_RULE
from campaigns.engine_models import Campaign, CampaignRecipient, CampaignRun, RecipientStatus
from loyalty.coupons.models import CouponRedemption
from loyalty.db import constant, db, is_postgres
from loyalty.earning.models import Order
from loyalty.members.importer import report_cell
from loyalty.members.models import Member
from notifications.consent import ConsentChange, Purpose
from notifications.models import Message

Z95 = 1.959963984540054
ONLINE_CHANNELS = frozenset({"online", "app", "web"})
SENT_STATES = ("sent", "delivered")
IN_FLIGHT_STATES = ("queued", "deferred", "sending")
TOTAL = "__total__"


def plus_days(column: Any, days: int) -> Any:
    """`column + days` in SQL on both databases (SQLite keeps naive UTC text)."""
    if is_postgres():
        return column + sa.literal_column(f"interval '{int(days)} days'", type_=sa.Interval)
    return sa.func.datetime(column, f"+{int(days)} days")


# --- confidence interval ----------------------------------------------------------------------


def wilson(successes: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval of a proportion."""
    if n == 0:
        return 0.0, 1.0
    p = successes / n
    denominator = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    return max(0.0, centre - half), min(1.0, centre + half)


def newcombe(x1: int, n1: int, x2: int, n2: int, z: float = Z95) -> tuple[float, float] | None:
    """Newcombe's hybrid score interval for p1 - p2 (None: a group is empty)."""
    if n1 == 0 or n2 == 0:
        return None
    p1, p2 = x1 / n1, x2 / n2
    l1, u1 = wilson(x1, n1, z)
    l2, u2 = wilson(x2, n2, z)
    d = p1 - p2
    low = d - math.sqrt((p1 - l1) ** 2 + (u2 - p2) ** 2)
    high = d + math.sqrt((u1 - p1) ** 2 + (p2 - l2) ** 2)
    return low, high


# --- figures ----------------------------------------------------------------------------------


def _blank() -> dict[str, Any]:
    return {
        "targeted": 0, "held_out": 0, "pending": 0, "sent": 0, "delivered": 0, "failed": 0,
        "in_flight": 0, "suppressed": 0, "suppressed_by_reason": defaultdict(int),
        "opted_out": 0, "coupons_issued": 0, "coupons_redeemed": 0,
        "redemptions": {"online": 0, "in_store": 0, "by_store": defaultdict(int)},
        "orders": 0, "revenue_minor": 0, "points_issued": 0, "discount_minor": 0,
        "cost_minor": 0, "_treated": 0, "_converted": 0, "_treated_revenue": 0,
    }  # fmt: skip


def _recipient_figures(campaign: Campaign, figures: dict[str, dict[str, Any]]) -> None:
    recipients, messages = CampaignRecipient.__table__, Message.__table__
    prices = current_app.extensions["omniloyal.settings"].campaign_message_prices
    rows = db.session.execute(
        sa.select(
            recipients.c.variant,
            recipients.c.status,
            recipients.c.reason,
            messages.c.channel,
            messages.c.state,
            messages.c.reason,
            sa.func.count(),
            sa.func.count(recipients.c.code_id),
            sa.func.count(recipients.c.points_transaction_id),
        )
        .select_from(recipients.outerjoin(messages, messages.c.id == recipients.c.message_id))
        .where(recipients.c.campaign_id == campaign.id)
        .group_by(
            recipients.c.variant,
            recipients.c.status,
            recipients.c.reason,
            messages.c.channel,
            messages.c.state,
            messages.c.reason,
        )
    ).all()
    for variant, status, reason, channel, state, message_reason, count, codes, points in rows:
        for key in (TOTAL, variant):
            if key is None:
                continue
            f = figures[key]
            f["targeted"] += count
            f["coupons_issued"] += codes
            f["points_issued"] += points * campaign.bonus_points
            if status == RecipientStatus.HELD_OUT.value:
                f["held_out"] += count
                continue
            if status == RecipientStatus.PENDING.value:
                f["pending"] += count
                continue
            if status == RecipientStatus.CANCELLED.value:
                continue
            f["_treated"] += count
            if status == RecipientStatus.SUPPRESSED.value:
                f["suppressed"] += count
                f["suppressed_by_reason"][reason or "suppressed"] += count
            elif state in SENT_STATES:
                f["sent"] += count
                f["delivered"] += count if state == "delivered" else 0
                f["cost_minor"] += count * prices.get(channel, 0)
            elif state == "failed":
                f["failed"] += count
            elif state == "suppressed":
                f["suppressed"] += count
                f["suppressed_by_reason"][message_reason or "suppressed"] += count
            else:
                f["in_flight"] += count


def _opted_out(campaign: Campaign, figures: dict[str, dict[str, Any]]) -> None:
    recipients, changes = CampaignRecipient.__table__, ConsentChange.__table__
    revoked = sa.exists().where(
        changes.c.member_id == recipients.c.member_id,
        changes.c.purpose == Purpose.MARKETING.value,
        changes.c.granted.is_(False),
        changes.c.at >= recipients.c.processed_at,
    )
    rows = db.session.execute(
        sa.select(recipients.c.variant, sa.func.count())
        .where(
            recipients.c.campaign_id == campaign.id,
            recipients.c.status == constant(RecipientStatus.QUEUED.value),
            revoked,
        )
        .group_by(recipients.c.variant)
    ).all()
    for variant, count in rows:
        figures[TOTAL]["opted_out"] += count
        if variant is not None:
            figures[variant]["opted_out"] += count


def _redemptions(campaign: Campaign, figures: dict[str, dict[str, Any]]) -> None:
    redemptions, recipients = CouponRedemption.__table__, CampaignRecipient.__table__
    rows = db.session.execute(
        sa.select(
            recipients.c.variant,
            redemptions.c.channel,
            redemptions.c.store_id,
            sa.func.count(),
            sa.func.coalesce(sa.func.sum(redemptions.c.discount_minor), 0),
        )
        .select_from(
            redemptions.outerjoin(
                recipients,
                sa.and_(
                    recipients.c.campaign_id == campaign.id,
                    recipients.c.code_id == redemptions.c.code_id,
                ),
            )
        )
        .where(
            redemptions.c.campaign_id == campaign.id,
            redemptions.c.status == constant("redeemed"),
        )
        .group_by(recipients.c.variant, redemptions.c.channel, redemptions.c.store_id)
    ).all()
    for variant, channel, store_id, count, discount in rows:
        for key in (TOTAL, variant):
            if key is None:
                continue
            f = figures[key]
            f["coupons_redeemed"] += count
            f["discount_minor"] += int(discount)
            side = "online" if channel in ONLINE_CHANNELS else "in_store"
            f["redemptions"][side] += count
            if store_id is not None:
                f["redemptions"]["by_store"][store_id] += count


def _attributed_orders(campaign: Campaign) -> dict[int, tuple[str | None, int]]:
    """order id -> (variant, revenue) of the orders the rule attributes to the campaign."""
    recipients, messages = CampaignRecipient.__table__, Message.__table__
    orders, members = Order.__table__, Member.__table__
    later = messages.alias("later")
    days = campaign.attribution_days
    found: dict[int, tuple[str | None, int]] = {}
    for via_merge in (False, True):
        if via_merge:
            source = (
                recipients.join(messages, messages.c.id == recipients.c.message_id)
                .join(members, members.c.merged_into_id == recipients.c.member_id)
                .join(orders, orders.c.member_id == members.c.id)
            )
        else:
            source = recipients.join(messages, messages.c.id == recipients.c.message_id).join(
                orders, orders.c.member_id == recipients.c.member_id
            )
        query = (
            sa.select(
                orders.c.id, recipients.c.variant, orders.c.total_minor - orders.c.refunded_minor
            )
            .select_from(source)
            .where(
                recipients.c.campaign_id == campaign.id,
                recipients.c.status == constant(RecipientStatus.QUEUED.value),
                messages.c.sent_at.is_not(None),
                orders.c.occurred_at >= messages.c.sent_at,
                orders.c.occurred_at < plus_days(messages.c.sent_at, days),
                orders.c.status != "cancelled",
                ~sa.exists().where(
                    later.c.member_id == messages.c.member_id,
                    later.c.purpose == Purpose.MARKETING.value,
                    later.c.sent_at > messages.c.sent_at,
                    later.c.sent_at <= orders.c.occurred_at,
                ),
            )
        )
        for order_id, variant, revenue in db.session.execute(query):
            found[order_id] = (variant, int(revenue))
    redemptions = CouponRedemption.__table__
    coupon_orders = db.session.execute(
        sa.select(orders.c.id, recipients.c.variant, orders.c.total_minor - orders.c.refunded_minor)
        .select_from(
            redemptions.join(orders, orders.c.id == redemptions.c.order_id).outerjoin(
                recipients,
                sa.and_(
                    recipients.c.campaign_id == campaign.id,
                    recipients.c.code_id == redemptions.c.code_id,
                ),
            )
        )
        .where(
            redemptions.c.campaign_id == campaign.id,
            redemptions.c.status == constant("redeemed"),
            orders.c.status != "cancelled",
        )
    ).all()
    for order_id, variant, revenue in coupon_orders:
        found[order_id] = (variant, int(revenue))
    return found


def _conversions(campaign: Campaign) -> dict[tuple[str | None, bool], tuple[int, int]]:
    """(variant, held out) -> (people converted, their revenue) within the window from
    their run's start, for treated and control recipients alike."""
    recipients, runs = CampaignRecipient.__table__, CampaignRun.__table__
    orders, members = Order.__table__, Member.__table__
    days = campaign.attribution_days
    held = recipients.c.status == constant(RecipientStatus.HELD_OUT.value)
    counted = sa.and_(
        orders.c.occurred_at >= runs.c.started_at,
        orders.c.occurred_at < plus_days(runs.c.started_at, days),
        orders.c.status != "cancelled",
    )
    measured = recipients.c.status.in_([constant(s) for s in ("held_out", "queued", "suppressed")])
    parts = []
    for via_merge in (False, True):
        base = recipients.join(runs, runs.c.id == recipients.c.run_id)
        if via_merge:
            base = base.join(members, members.c.merged_into_id == recipients.c.member_id).join(
                orders, orders.c.member_id == members.c.id
            )
        else:
            base = base.join(orders, orders.c.member_id == recipients.c.member_id)
        parts.append(
            sa.select(
                recipients.c.run_id.label("run_id"),
                recipients.c.member_id.label("member_id"),
                recipients.c.variant.label("variant"),
                sa.case((held, 1), else_=0).label("held"),
                (orders.c.total_minor - orders.c.refunded_minor).label("revenue"),
            )
            .select_from(base)
            .where(recipients.c.campaign_id == campaign.id, measured, counted)
        )
    every = sa.union_all(*parts).subquery()
    per_person = (
        sa.select(
            every.c.variant,
            every.c.held,
            sa.func.sum(every.c.revenue).label("revenue"),
        )
        .group_by(every.c.run_id, every.c.member_id, every.c.variant, every.c.held)
        .subquery()
    )
    rows = db.session.execute(
        sa.select(
            per_person.c.variant,
            per_person.c.held,
            sa.func.count(),
            sa.func.coalesce(sa.func.sum(per_person.c.revenue), 0),
        ).group_by(per_person.c.variant, per_person.c.held)
    ).all()
    return {(variant, bool(h)): (int(n), int(revenue)) for variant, h, n, revenue in rows}


def conversion_against_control(
    treated: int, converted: int, revenue: int, control: int, control_converted: int,
    control_revenue: int,
) -> dict[str, Any]:  # fmt: skip
    rate = converted / treated if treated else 0.0
    control_rate = control_converted / control if control else 0.0
    interval = newcombe(converted, treated, control_converted, control)
    per_treated = revenue / treated if treated else 0.0
    per_control = control_revenue / control if control else 0.0
    return {
        "recipients": treated,
        "recipients_converted": converted,
        "recipients_rate": rate,
        "control": control,
        "control_converted": control_converted,
        "control_rate": control_rate,
        "lift": rate - control_rate,
        "confidence": 0.95,
        "interval": {"low": interval[0], "high": interval[1]} if interval else None,
        "recipients_revenue_minor": revenue,
        "control_revenue_minor": control_revenue,
        "incremental_revenue_minor": round((per_treated - per_control) * treated) if control else 0,
    }


def results(campaign: Campaign, *, now: datetime) -> dict[str, Any]:
    figures: dict[str, dict[str, Any]] = defaultdict(_blank)
    figures[TOTAL]
    _recipient_figures(campaign, figures)
    _opted_out(campaign, figures)
    _redemptions(campaign, figures)
    for variant, revenue in _attributed_orders(campaign).values():
        for key in (TOTAL, variant):
            if key is not None:
                figures[key]["orders"] += 1
                figures[key]["revenue_minor"] += revenue
    conversions = _conversions(campaign)
    control_converted, control_revenue = conversions.get((None, True), (0, 0))
    control = figures[TOTAL]["held_out"]
    for key, f in figures.items():
        if key == TOTAL:
            converted = sum(n for (v, h), (n, _) in conversions.items() if not h)
            revenue = sum(r for (v, h), (_, r) in conversions.items() if not h)
        else:
            converted, revenue = conversions.get((key, False), (0, 0))
        f["conversion"] = conversion_against_control(
            f["_treated"], converted, revenue, control, control_converted, control_revenue
        )
    total = _public(figures.pop(TOTAL))
    return {
        "campaign_id": campaign.id,
        "evaluated_at": now,
        "attribution_days": campaign.attribution_days,
        "attribution_rule": ATTRIBUTION_RULE,
        **total,
        "variants": [{"variant": name, **_public(f)} for name, f in sorted(figures.items())],
    }


def _public(f: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in f.items() if not k.startswith("_")}
    out["suppressed_by_reason"] = [
        {"reason": reason, "count": count}
        for reason, count in sorted(f["suppressed_by_reason"].items(), key=lambda i: -i[1])
    ]
    out["redemptions"] = {
        "online": f["redemptions"]["online"],
        "in_store": f["redemptions"]["in_store"],
        "by_store": dict(f["redemptions"]["by_store"]),
    }
    return out


FINANCE_COLUMNS = (
    "campaign_id", "campaign", "variant", "targeted", "held_out", "sent", "delivered",
    "failed", "suppressed", "cost_minor", "coupons_issued", "coupons_redeemed",
    "redeemed_online", "redeemed_in_store", "discount_minor", "points_issued", "orders",
    "revenue_minor", "incremental_revenue_minor", "attribution_days",
)  # fmt: skip


def finance_csv(campaign: Campaign, *, now: datetime) -> str:
    """One line per variant and a total line: what the campaign cost and brought. Names
    that a spreadsheet would run as a formula get a leading apostrophe (CSV injection)."""
    figures = results(campaign, now=now)
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(FINANCE_COLUMNS)
    for name, f in [*((v["variant"], v) for v in figures["variants"]), ("total", figures)]:
        writer.writerow(
            [
                campaign.id, report_cell(campaign.name), report_cell(name), f["targeted"],
                f["held_out"], f["sent"], f["delivered"], f["failed"], f["suppressed"],
                f["cost_minor"],
                f["coupons_issued"], f["coupons_redeemed"], f["redemptions"]["online"],
                f["redemptions"]["in_store"], f["discount_minor"], f["points_issued"],
                f["orders"], f["revenue_minor"],
                f["conversion"]["incremental_revenue_minor"], campaign.attribution_days,
            ]
        )  # fmt: skip
    return out.getvalue()
