"""Campaigns HTTP API: create, edit (versioned), launch, pause, resume, cancel; estimate,
preview, test send; results and the finance export. Marketers' keys write
(`campaigns:write`), analysts' keys read (`campaigns:read`)."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from flask import Response

from campaigns import estimates, lifecycle, previews, results
from campaigns.campaign_schemas import (
    ATTRIBUTION_RULE,
    CampaignActivitySchema,
    CampaignCreateSchema,
    CampaignEstimateSchema,
    CampaignListQuery,
    CampaignPreviewRequestSchema,
    CampaignPreviewResultSchema,
    CampaignResultsSchema,
    CampaignSchema,
    CampaignTestSendResultSchema,
    CampaignTestSendSchema,
    CampaignUpdateSchema,
    CampaignVersionSchema,
)
from campaigns.engine_models import Campaign, CampaignRun
from loyalty.api import Blueprint
from loyalty.auth import scopes
from loyalty.auth.context import current_caller, requires
from loyalty.clock import utcnow
from loyalty.db import db
from loyalty.http import write_endpoint
from loyalty.pagination import PageQuery, int_cursor, page, page_of, page_schema

blp = Blueprint("campaigns", __name__, description="Campaigns: offers and messages to segments")
API_KEY = [{"ApiKey": []}]


def campaign_view(campaign: Campaign) -> dict[str, Any]:
    return {
        "id": campaign.id,
        "name": campaign.name,
        "description": campaign.description,
        "status": campaign.status,
        "segment_id": campaign.segment_id,
        "offer": {
            "kind": campaign.offer_kind,
            "offer_id": campaign.offer_id,
            "points": campaign.bonus_points or None,
            "multiplier_pct": campaign.multiplier_pct if campaign.multiplier_days else None,
            "days": campaign.multiplier_days or None,
        },
        "channel_order": campaign.channel_order,
        "content": lifecycle.content_of(campaign.id, campaign.version),
        "version": campaign.version,
        "schedule": {
            "kind": campaign.schedule_kind,
            "at": campaign.schedule_at,
            "cron": lifecycle.recurrence(campaign),
            "timezone": campaign.schedule_timezone,
            "until": campaign.schedule_until,
        },
        "next_run_at": campaign.next_run_at,
        "holdout_pct": campaign.holdout_pct,
        "attribution_days": campaign.attribution_days,
        "attribution_rule": ATTRIBUTION_RULE,
        "runs_started": campaign.runs_started,
        "created_by": campaign.created_by,
        "created_at": campaign.created_at,
        "updated_at": campaign.updated_at,
        "launched_at": campaign.launched_at,
        "finished_at": campaign.finished_at,
    }


@blp.route("/campaigns")
@blp.doc(security=API_KEY)
@requires(scopes.CAMPAIGNS_READ)
@blp.arguments(CampaignListQuery, location="query")
@blp.response(200, page_schema(CampaignSchema))
def list_campaigns(query: dict[str, Any]) -> Any:
    """The campaigns, by id (optionally one status)."""
    rows = lifecycle.list_campaigns(
        after_id=int_cursor(query["cursor"]), limit=query["limit"] + 1, status=query["status"]
    )
    envelope = page(rows, query["limit"], key=lambda campaign: campaign.id)
    envelope["items"] = [campaign_view(c) for c in envelope["items"]]
    return envelope


@blp.route("/campaigns", methods=["POST"])
@blp.doc(security=API_KEY)
@requires(scopes.CAMPAIGNS_WRITE)
@write_endpoint()
@blp.arguments(CampaignCreateSchema)
@blp.response(201, CampaignSchema)
def create_campaign(data: dict[str, Any]) -> Any:
    """A draft campaign: audience (a segment), offer, content (variants with a template
    per channel), channel order, schedule, control group and attribution window."""
    campaign = lifecycle.create_campaign(data, now=utcnow(), actor=current_caller().actor)
    return campaign_view(campaign)


@blp.route("/campaigns/<int:campaign_id>")
@blp.doc(security=API_KEY)
@requires(scopes.CAMPAIGNS_READ)
@blp.response(200, CampaignSchema)
def get_campaign(campaign_id: int) -> Any:
    """One campaign, with its current content version and status."""
    return campaign_view(lifecycle.get_campaign(campaign_id))


@blp.route("/campaigns/<int:campaign_id>", methods=["PATCH"])
@blp.doc(security=API_KEY)
@requires(scopes.CAMPAIGNS_WRITE)
@write_endpoint()
@blp.arguments(CampaignUpdateSchema)
@blp.response(200, CampaignSchema)
def update_campaign(data: dict[str, Any], campaign_id: int) -> Any:
    """Edit a draft freely; a launched campaign changes its name, description and content
    only, the content as a new version (409 `campaign-state` otherwise)."""
    campaign = lifecycle.update_campaign(
        campaign_id, data, now=utcnow(), actor=current_caller().actor
    )
    return campaign_view(campaign)


@blp.route("/campaigns/<int:campaign_id>/versions")
@blp.doc(security=API_KEY)
@requires(scopes.CAMPAIGNS_READ)
@blp.arguments(PageQuery, location="query")
@blp.response(200, page_schema(CampaignVersionSchema))
def list_campaign_versions(query: dict[str, Any], campaign_id: int) -> Any:
    """Every content version, oldest first (recipients name the version they got)."""
    return page_of(
        [
            {
                "version": v.version,
                "content": v.content,
                "created_by": v.created_by,
                "created_at": v.created_at,
            }
            for v in lifecycle.versions(campaign_id)
        ],
        cursor=query["cursor"],
        limit=query["limit"],
        key=lambda item: item["version"],
    )


@blp.route("/campaigns/<int:campaign_id>/activity")
@blp.doc(security=API_KEY)
@requires(scopes.CAMPAIGNS_READ)
@blp.response(200, CampaignActivitySchema)
def get_campaign_activity(campaign_id: int) -> Any:
    """The lifecycle changes (who, when) and the runs (audience, control group)."""
    lifecycle.get_campaign(campaign_id)
    runs = db.session.scalars(
        sa.select(CampaignRun)
        .where(CampaignRun.campaign_id == campaign_id)
        .order_by(CampaignRun.id)
    ).all()
    return {"transitions": lifecycle.transitions(campaign_id), "runs": runs}


@blp.route("/campaigns/<int:campaign_id>/launch", methods=["POST"])
@blp.doc(security=API_KEY)
@requires(scopes.CAMPAIGNS_WRITE)
@write_endpoint(key_required=False)
@blp.response(200, CampaignSchema)
def launch_campaign(campaign_id: int) -> Any:
    """Draft -> scheduled: the first run starts at the schedule's time (now: within
    seconds) and snapshots the audience then. 409 `campaign-state` from another state."""
    return campaign_view(lifecycle.launch(campaign_id, now=utcnow(), actor=current_caller().actor))


@blp.route("/campaigns/<int:campaign_id>/pause", methods=["POST"])
@blp.doc(security=API_KEY)
@requires(scopes.CAMPAIGNS_WRITE)
@write_endpoint(key_required=False)
@blp.response(200, CampaignSchema)
def pause_campaign(campaign_id: int) -> Any:
    """Running or scheduled -> paused: no further recipient is reached (messages already
    queued go out); resume continues with the next one, never twice."""
    return campaign_view(lifecycle.pause(campaign_id, now=utcnow(), actor=current_caller().actor))


@blp.route("/campaigns/<int:campaign_id>/resume", methods=["POST"])
@blp.doc(security=API_KEY)
@requires(scopes.CAMPAIGNS_WRITE)
@write_endpoint(key_required=False)
@blp.response(200, CampaignSchema)
def resume_campaign(campaign_id: int) -> Any:
    """Paused -> running (a run was under way) or scheduled (waiting for its next run)."""
    return campaign_view(lifecycle.resume(campaign_id, now=utcnow(), actor=current_caller().actor))


@blp.route("/campaigns/<int:campaign_id>/cancel", methods=["POST"])
@blp.doc(security=API_KEY)
@requires(scopes.CAMPAIGNS_WRITE)
@write_endpoint(key_required=False)
@blp.response(200, CampaignSchema)
def cancel_campaign(campaign_id: int) -> Any:
    """Cancel for good (any state but completed): recipients not yet reached never are."""
    return campaign_view(lifecycle.cancel(campaign_id, now=utcnow(), actor=current_caller().actor))


@blp.route("/campaigns/<int:campaign_id>/estimate")
@blp.doc(security=API_KEY)
@requires(scopes.CAMPAIGNS_READ)
@blp.response(200, CampaignEstimateSchema)
def estimate_campaign(campaign_id: int) -> Any:
    """Before launch: audience, control group, expected messages per channel after consent,
    reachability and the frequency cap, the most the offer can cost (discount, points) and
    the provider cost at the configured per-message prices."""
    return estimates.estimate(lifecycle.get_campaign(campaign_id), now=utcnow())


@blp.route("/campaigns/<int:campaign_id>/preview", methods=["POST"])
@blp.doc(security=API_KEY)
@requires(scopes.CAMPAIGNS_READ)
@blp.arguments(CampaignPreviewRequestSchema)
@blp.response(200, CampaignPreviewResultSchema)
def preview_campaign(data: dict[str, Any], campaign_id: int) -> Any:
    """What one member would get: the channel chosen now (or why none), the variant, and
    the message rendered per channel in the member's locale. A read: nothing is saved."""
    return previews.preview(
        lifecycle.get_campaign(campaign_id),
        data["member_id"],
        now=utcnow(),
        variant=data["variant"],
        locale=data["locale"],
    )


@blp.route("/campaigns/<int:campaign_id>/test-send", methods=["POST"])
@blp.doc(security=API_KEY)
@requires(scopes.CAMPAIGNS_WRITE)
@write_endpoint()
@blp.arguments(CampaignTestSendSchema)
@blp.response(202, CampaignTestSendResultSchema)
def test_send_campaign(data: dict[str, Any], campaign_id: int) -> Any:
    """Queue the campaign's message to a given address or number, rendered with a real
    member's data (not part of the member's history; no code is issued)."""
    return previews.test_send(
        lifecycle.get_campaign(campaign_id),
        member_id=data["member_id"],
        channel=data["channel"],
        to=data["to"],
        variant=data["variant"],
        now=utcnow(),
        actor=current_caller().actor,
    )


@blp.route("/campaigns/<int:campaign_id>/results")
@blp.doc(security=API_KEY)
@requires(scopes.CAMPAIGNS_READ)
@blp.response(200, CampaignResultsSchema)
def campaign_results(campaign_id: int) -> Any:
    """Reach, deliveries, suppressions by reason, redemptions (online / in store, by store),
    attributed orders and revenue, points, discount, cost, and the conversion of recipients
    against the control group with a 95 % interval; per variant too. The attribution rule
    is in `attribution_rule`."""
    return results.results(lifecycle.get_campaign(campaign_id), now=utcnow())


@blp.route("/campaigns/<int:campaign_id>/finance.csv")
@blp.doc(
    security=API_KEY,
    responses={"200": {"description": "text/csv: the campaign's figures for finance"}},
)
@requires(scopes.CAMPAIGNS_READ)
def export_campaign_finance(campaign_id: int) -> Any:
    """The finance export: per variant and in total, codes issued and redeemed, discount
    given, points issued, messages and provider cost, attributed orders and revenue."""
    campaign = lifecycle.get_campaign(campaign_id)
    return Response(
        results.finance_csv(campaign, now=utcnow()),
        mimetype="text/csv",
        headers={"Content-Disposition": f'attachment; filename="campaign-{campaign_id}.csv"'},
    )
