"""Campaign pages on the campaign engine (campaigns/lifecycle, estimates, previews,
results): the wizard (audience -> offer -> messages -> schedule -> control group ->
review with the estimate -> launch), pause / resume / cancel, and the results."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

import sqlalchemy as sa
from flask import Response, abort, flash, redirect, request, url_for
from flask_babel import gettext as _
from flask_login import current_user
from marshmallow import ValidationError

from loyalty.clock import utcnow
from loyalty.dashboard import charts
from loyalty.dashboard.access import needs
from loyalty.dashboard.blueprint import bp, render
from loyalty.dashboard.edge import Refused, change
from loyalty.dashboard.pages.offers import _errors
from loyalty.dashboard.roles import Permission, allows
from loyalty.db import db
from loyalty.errors import OmniloyalError

CHANNELS = ("push", "sms", "email")
ACTIONS = ("launch", "pause", "resume", "cancel")


def _int(raw: str | None) -> int | None:
    raw = (raw or "").strip()
    return int(raw) if raw.isdigit() and len(raw) < 12 else None


def campaign_from_form(form: Any) -> dict[str, Any]:
    """The wizard's fields as CampaignCreateSchema takes them (it validates them)."""
    order = [c for c in form.getlist("channels") if c in CHANNELS] or list(CHANNELS)
    template = form.get("template", "").strip() or "campaign_offer"
    offer: dict[str, Any] = {"kind": form.get("offer_kind", "none")}
    if offer["kind"] == "coupon":
        offer["offer_id"] = _int(form.get("offer_id"))
    elif offer["kind"] == "points":
        offer["points"] = _int(form.get("points"))
    elif offer["kind"] == "multiplier":
        offer["multiplier_pct"] = _int(form.get("multiplier_pct"))
        offer["days"] = _int(form.get("days"))
    schedule: dict[str, Any] = {"kind": form.get("schedule_kind", "now")}
    if form.get("schedule_at", "").strip():
        schedule["at"] = form.get("schedule_at").strip()
        if len(schedule["at"]) == 16:  # datetime-local: minutes, no zone
            schedule["at"] += ":00+00:00"
    return {
        "name": form.get("name", "").strip(),
        "description": form.get("description", "").strip() or None,
        "segment_id": _int(form.get("segment_id")),
        "offer": offer,
        "channel_order": order,
        "content": {
            "variants": [{"name": "A", "weight": 1, "templates": dict.fromkeys(order, template)}]
        },
        "schedule": schedule,
        "holdout_pct": _int(form.get("holdout_pct")) if form.get("holdout_pct") else 10,
        "attribution_days": _int(form.get("attribution_days")) or 7,
    }


# What a triggered send starts on (campaigns/triggers.py), and its re-entry rule: once per
# person for the once-in-a-lifetime events, once per cause (a year, a lapse) for the others.
SEND_TRIGGERS = {
    "member.enrolled": "never",
    "first_purchase": "never",
    "tier.changed": "always",
    "points.expiring": "always",
    "birthday": "always",
    "no_purchase": "always",
}


def triggered_journey_from_form(form: Any, segment: Any) -> dict[str, Any]:
    """The wizard's "send on a trigger": campaigns run on a schedule, journeys start on
    events, so the send becomes a journey (as JourneyCreateSchema takes it): the audience
    as a segment check, the offer (coupon or points), then the message."""
    campaign = campaign_from_form(form)
    trigger = form.get("trigger", "")
    if trigger not in SEND_TRIGGERS:
        raise ValidationError({"trigger": [_("Choose what starts the send.")]})
    offer = campaign["offer"]
    steps: list[dict[str, Any]] = []
    if segment is not None and segment.kind == "dynamic":
        steps.append({"type": "condition", "check": "segment", "rule": segment.rule,
                      "expect": True, "otherwise": "exit"})  # fmt: skip
    if offer["kind"] == "coupon":
        steps.append({"type": "coupon", "offer_id": offer.get("offer_id")})
    elif offer["kind"] == "points":
        steps.append({"type": "points", "points": offer.get("points")})
    elif offer["kind"] != "none":
        raise ValidationError({"offer_kind": [_("A triggered send gives a coupon or points.")]})
    order = campaign["channel_order"]
    steps.append({"type": "message", "template": form.get("template", "").strip()
                  or "campaign_offer", "channels": order})  # fmt: skip
    data: dict[str, Any] = {
        "name": campaign["name"],
        "trigger": trigger,
        "reentry": SEND_TRIGGERS[trigger],
        "steps": steps,
    }
    if trigger == "no_purchase":
        data["trigger_days"] = _int(form.get("trigger_days"))
    return data


def _create_triggered(form: Any) -> Any:
    from campaigns import journeys, segments
    from campaigns.journey_schemas import JourneyCreateSchema
    from loyalty.errors import NotFound

    segment = None
    segment_id = _int(form.get("segment_id"))
    if segment_id is not None:
        try:
            segment = segments.get_segment(segment_id)
        except NotFound:
            raise ValidationError({"segment_id": [_("No such segment.")]}) from None
        if segment.kind != "dynamic":
            raise ValidationError(
                {"segment_id": [_("A triggered send needs a segment built from rules.")]}
            )
    data = JourneyCreateSchema().load(triggered_journey_from_form(form, segment))
    created = change(
        "journeys.create",
        lambda: journeys.create_journey(data, now=utcnow(), actor=current_user.actor),
        target_type="journey",
        after_target=lambda j: j.id,
    )
    flash(_("Saved as a draft journey: members enter when the trigger happens, once it is "
            "activated."), "ok")  # fmt: skip
    return redirect(url_for("dashboard.journey", journey_id=created.id))


def _choices() -> dict[str, Any]:
    from campaigns import segments as segment_ops
    from loyalty.coupons import offers as offer_ops

    return {
        "segments": segment_ops.list_segments(after_id=None, limit=200),
        "offers": offer_ops.list_offers(status="active", limit=200, after_id=None),
        "channels": CHANNELS,
        "triggers": SEND_TRIGGERS,
    }


@bp.route("/campaigns")
@needs(Permission.VIEW)
def campaigns() -> Any:
    from campaigns import lifecycle

    return render(
        "campaigns.html", campaigns=lifecycle.list_campaigns(after_id=None, limit=200, status=None)
    )


@bp.route("/campaigns/new", methods=["GET", "POST"])
@needs(Permission.VIEW)
def campaign_new() -> Any:
    from campaigns import lifecycle
    from campaigns.campaign_schemas import CampaignCreateSchema

    if request.method == "POST":
        if not allows(current_user.role, Permission.CAMPAIGNS_WRITE):
            abort(403)
        try:
            if request.form.get("send_kind") == "trigger":
                return _create_triggered(request.form)
            data = CampaignCreateSchema().load(campaign_from_form(request.form))
            created = change(
                "campaigns.create",
                lambda: lifecycle.create_campaign(data, now=utcnow(), actor=current_user.actor),
                target_type="campaign",
                after_target=lambda c: c.id,
            )
            flash(_("Draft saved: review it, preview and test it, then launch."), "ok")
            return redirect(url_for("dashboard.campaign", campaign_id=created.id))
        except ValidationError as error:
            flash(_errors(error), "error")
        except Refused:
            pass
    return render("campaign_new.html", form=request.form, **_choices())


def _campaign_or_404(campaign_id: int) -> Any:
    from campaigns.engine_models import Campaign

    found = db.session.get(Campaign, campaign_id)
    if found is None:
        abort(404)
    return found


@bp.route("/campaigns/<int:campaign_id>", methods=["GET", "POST"])
@needs(Permission.VIEW)
def campaign(campaign_id: int) -> Any:
    """The review step: estimate, preview per channel and locale, test send, launch."""
    from campaigns import estimates, previews
    from campaigns.campaign_api import campaign_view

    if request.method == "POST":
        return _test_send(campaign_id)
    found = _campaign_or_404(campaign_id)
    estimate = preview = error = None
    try:
        estimate = estimates.estimate(found, now=utcnow())
    except OmniloyalError as problem:
        error = problem.detail
    member_id = _int(request.args.get("member_id"))
    if member_id is not None:
        try:
            preview = previews.preview(
                found, member_id, now=utcnow(), locale=request.args.get("locale") or None
            )
        except OmniloyalError as problem:
            error = problem.detail
    return render(
        "campaign.html",
        campaign=campaign_view(found),
        estimate=estimate,
        preview=preview,
        error=error,
        member_id=member_id or "",
        locale=request.args.get("locale", ""),
    )


def _test_send(campaign_id: int) -> Any:
    from campaigns import lifecycle, previews

    if not allows(current_user.role, Permission.CAMPAIGNS_WRITE):
        abort(403)
    _campaign_or_404(campaign_id)
    member_id = _int(request.form.get("member_id"))
    channel = request.form.get("channel", "")
    to = request.form.get("to", "").strip()[:2000]
    if member_id is None or channel not in CHANNELS or not to:
        flash(_("Give a member to render with, a channel and an address."), "error")
        return redirect(url_for("dashboard.campaign", campaign_id=campaign_id))
    try:
        change(
            "campaigns.test_send",
            lambda: previews.test_send(
                lifecycle.get_campaign(campaign_id),
                member_id=member_id,
                channel=channel,
                to=to,
                variant=None,
                now=utcnow(),
                actor=current_user.actor,
            ),
            target_type="campaign",
            target_id=campaign_id,
            details=lambda sent: {"channel": channel, "message_id": sent["message_id"]},
        )
        flash(_("Test message queued."), "ok")
    except Refused:
        pass
    return redirect(url_for("dashboard.campaign", campaign_id=campaign_id))


@bp.route("/campaigns/<int:campaign_id>/<action>", methods=["POST"])
@needs(Permission.CAMPAIGNS_LAUNCH)
def campaign_action(campaign_id: int, action: str) -> Any:
    from campaigns import lifecycle

    if action not in ACTIONS:
        abort(404)
    _campaign_or_404(campaign_id)
    operation = getattr(lifecycle, action)
    try:
        change(
            f"campaigns.{action}",
            lambda: operation(campaign_id, now=utcnow(), actor=current_user.actor),
            target_type="campaign",
            target_id=campaign_id,
            details=lambda c: {"status": c.status},
        )
        flash(_("Campaign: %(status)s.", status=_(action)), "ok")
    except Refused:
        pass
    return redirect(url_for("dashboard.campaign", campaign_id=campaign_id))


def redemptions_by_day(campaign_id: int, since: date, until: date) -> dict[str, Any]:
    """The campaign's redeemed coupons per day, online vs in store, and per store (one
    grouped read through the redemptions' campaign_id index)."""
    from loyalty.coupons.models import CouponRedemption as R
    from loyalty.db import utc_day

    day = utc_day(R.redeemed_at)
    rows = db.session.execute(
        sa.select(day, R.channel, R.store_id, sa.func.count())
        .where(R.campaign_id == campaign_id, R.status == "redeemed")
        .group_by(day, R.channel, R.store_id)
    ).all()
    days = [since + timedelta(days=n) for n in range((until - since).days + 1)]
    index = {d.isoformat(): i for i, d in enumerate(days)}
    online, store = [0] * len(days), [0] * len(days)
    by_store: dict[str, int] = {}
    for key, channel, store_id, n in rows:
        if channel in ("online", "app"):
            if key in index:
                online[index[key]] += n
        else:
            if key in index:
                store[index[key]] += n
            by_store[store_id or "?"] = by_store.get(store_id or "?", 0) + n
    return {"days": [d.isoformat() for d in days], "online": online, "store": store,
            "by_store": by_store}  # fmt: skip


@bp.route("/campaigns/<int:campaign_id>/results")
@needs(Permission.VIEW)
def campaign_results(campaign_id: int) -> Any:
    from campaigns import results

    found = _campaign_or_404(campaign_id)
    figures = results.results(found, now=utcnow())
    start = (found.launched_at or found.created_at or utcnow()).date()
    until = max(start, utcnow().date())
    start = max(start, until - timedelta(days=60))
    series = redemptions_by_day(campaign_id, start, until)
    funnel = [
        (_("targeted"), figures["targeted"]),
        (_("sent"), figures["sent"]),
        (_("delivered"), figures["delivered"]),
        (_("coupons redeemed"), figures["coupons_redeemed"]),
        (_("orders"), figures["orders"]),
    ]
    labels = [d[5:] for d in series["days"]]
    return render(
        "campaign_results.html",
        campaign=found,
        figures=figures,
        series=series,
        funnel_chart=charts.hbars(_("Funnel"), funnel),
        funnel=funnel,
        over_time_chart=charts.lines(
            _("Redemptions per day"),
            labels,
            [
                charts.Series(_("online"), series["online"]),
                charts.Series(_("in store"), series["store"]),
            ],
        ),
        store_chart=charts.hbars(_("Redemptions by store"), sorted(series["by_store"].items())),
        lift_chart=charts.interval(_("Lift vs control"), figures["conversion"]),
    )


@bp.route("/campaigns/<int:campaign_id>/finance.csv")
@needs(Permission.FINANCE)
def campaign_finance(campaign_id: int) -> Any:
    from campaigns import results

    found = _campaign_or_404(campaign_id)
    return Response(
        results.finance_csv(found, now=utcnow()),
        mimetype="text/csv",
        headers={"Content-Disposition": f'attachment; filename="campaign-{campaign_id}.csv"'},
    )


def running_campaigns() -> list[dict[str, Any]]:
    from campaigns import lifecycle

    found = []
    for status in ("running", "scheduled", "paused"):
        for c in lifecycle.list_campaigns(after_id=None, limit=20, status=status):
            found.append(
                {
                    "name": c.name,
                    "status": c.status,
                    "url": url_for("dashboard.campaign", campaign_id=c.id),
                }
            )
    return found
