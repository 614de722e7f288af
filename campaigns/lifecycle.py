"""Campaigns: create, edit (versioned content), launch, pause, resume, cancel, schedules.

    draft --launch--> scheduled --(run due)--> running --(nothing pending)--> completed
                         ^   |                  |   ^                         (or scheduled
                         |   +--pause--+        |   |                          again when the
                         |             v        v   |                          schedule recurs)
                         +--resume-- paused <---+   +--resume--
    any state but completed --cancel--> cancelled

Every change is a conditional UPDATE on the current status (`WHERE status IN (...)`), so two
marketers (or a marketer and the scheduler) racing never both win, plus a
`campaign_transitions` row. Editing a campaign that was launched changes its content only
(variants and templates), as a new version; recipients record the version they got.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import sqlalchemy as sa
from croniter import croniter

from campaigns.engine_models import (
    Campaign,
    CampaignRecipient,
    CampaignRun,
    CampaignStatus,
    CampaignTransition,
    CampaignVersion,
    OfferKind,
    RecipientStatus,
    ScheduleKind,
)
from campaigns.models import Segment
from loyalty.db import constant, db
from loyalty.errors import Conflict, InvalidInput, NotFound
from notifications.providers.base import Channel

MAX_VARIANTS = 5
CONTENT_FIELDS = frozenset({"content"})
LABEL_FIELDS = frozenset({"name", "description"})


class CampaignStateConflict(Conflict):
    """The campaign is not in a state that allows this (e.g. pausing a draft, editing the
    audience of a launched campaign); `campaign_status` says which state it is in."""

    slug, title = "campaign-state", "Not allowed in the campaign state"


# --- validation -------------------------------------------------------------------------------


def check_content(content: Mapping[str, Any], channel_order: list[str]) -> dict[str, Any]:
    """Variants with weights and a template key per channel; every channel of the order
    needs a template in every variant, and each template must exist (for `en` at least)."""
    from notifications import templates

    variants = content.get("variants")
    if not isinstance(variants, list) or not 1 <= len(variants) <= MAX_VARIANTS:
        raise InvalidInput(f"1-{MAX_VARIANTS} variants", field="content.variants")
    names = set()
    cleaned = []
    for index, variant in enumerate(variants):
        where = f"content.variants[{index}]"
        if not isinstance(variant, Mapping):
            raise InvalidInput("a variant is an object", field=where)
        name = variant.get("name")
        weight = variant.get("weight", 1)
        mapping = variant.get("templates")
        if not isinstance(name, str) or not 1 <= len(name) <= 32 or name in names:
            raise InvalidInput("a unique name of 1-32 characters", field=f"{where}.name")
        if not isinstance(weight, int) or isinstance(weight, bool) or not 1 <= weight <= 100:
            raise InvalidInput("a whole number 1-100", field=f"{where}.weight")
        if not isinstance(mapping, Mapping):
            raise InvalidInput("templates per channel", field=f"{where}.templates")
        for channel in channel_order:
            key = mapping.get(channel)
            if not isinstance(key, str) or not key:
                raise InvalidInput(
                    f"a template for {channel} (in the channel order)",
                    field=f"{where}.templates.{channel}",
                )
            try:
                templates.resolve(key, Channel(channel), "en")
            except NotFound as error:
                raise InvalidInput(str(error), field=f"{where}.templates.{channel}") from None
        names.add(name)
        cleaned.append(
            {
                "name": name,
                "weight": weight,
                "templates": {c: mapping[c] for c in channel_order},
            }
        )
    return {"variants": cleaned}


def _check_channels(order: list[str]) -> list[str]:
    known = {c.value for c in Channel}
    if not order or len(set(order)) != len(order) or not set(order) <= known:
        raise InvalidInput(
            "distinct channels among sms, email, push, in order of preference",
            field="channel_order",
        )
    return list(order)


def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise InvalidInput(f"unknown time zone {name!r}", field="schedule.timezone") from None


def recurrence(campaign: Campaign) -> str | None:
    """The cron expression of a recurring schedule (None: a one-off)."""
    kind = ScheduleKind(campaign.schedule_kind)
    if kind is ScheduleKind.CRON:
        return campaign.schedule_cron
    if kind in (ScheduleKind.DAILY, ScheduleKind.WEEKLY):
        assert campaign.schedule_at is not None
        local = campaign.schedule_at.astimezone(_zone(campaign.schedule_timezone))
        if kind is ScheduleKind.DAILY:
            return f"{local.minute} {local.hour} * * *"
        return f"{local.minute} {local.hour} * * {local.isoweekday() % 7}"
    return None


def next_run(campaign: Campaign, after: datetime, *, first: bool) -> datetime | None:
    """When the campaign runs next after `after` (None: it doesn't)."""
    kind = ScheduleKind(campaign.schedule_kind)
    if kind is ScheduleKind.NOW:
        return after if first else None
    if kind is ScheduleKind.AT:
        return campaign.schedule_at if first else None
    expression = recurrence(campaign)
    assert expression is not None
    start = after
    if first and campaign.schedule_at is not None:
        if kind is not ScheduleKind.CRON:
            moment = max(campaign.schedule_at, after)
            return moment if _before_until(campaign, moment) else None
        start = max(after, campaign.schedule_at - timedelta(seconds=1))
    zone = _zone(campaign.schedule_timezone)
    moment = croniter(expression, start.astimezone(zone)).get_next(datetime)
    moment = moment.astimezone(after.tzinfo)
    return moment if _before_until(campaign, moment) else None


def _before_until(campaign: Campaign, moment: datetime) -> bool:
    return campaign.schedule_until is None or moment < campaign.schedule_until


def _apply_schedule(campaign: Campaign, schedule: Mapping[str, Any]) -> None:
    kind = ScheduleKind(schedule.get("kind", ScheduleKind.NOW.value))
    at, cron = schedule.get("at"), schedule.get("cron")
    timezone = schedule.get("timezone") or "UTC"
    _zone(timezone)
    if kind in (ScheduleKind.AT, ScheduleKind.DAILY, ScheduleKind.WEEKLY) and at is None:
        raise InvalidInput(f"a {kind.value} schedule needs `at`", field="schedule.at")
    if kind is ScheduleKind.CRON and (
        not isinstance(cron, str) or not croniter.is_valid(cron) or len(cron.split()) != 5
    ):
        raise InvalidInput("a 5-field cron expression", field="schedule.cron")
    campaign.schedule_kind = kind.value
    campaign.schedule_at = at
    campaign.schedule_cron = cron if kind is ScheduleKind.CRON else None
    campaign.schedule_timezone = timezone
    campaign.schedule_until = schedule.get("until")


def _apply_offer(campaign: Campaign, offer: Mapping[str, Any]) -> None:
    from loyalty.coupons.offers import get_offer

    kind = OfferKind(offer.get("kind", OfferKind.NONE.value))
    campaign.offer_kind = kind.value
    campaign.offer_id = None
    campaign.bonus_points = 0
    campaign.multiplier_pct = 100
    campaign.multiplier_days = 0
    if kind is OfferKind.COUPON:
        if offer.get("offer_id") is None:
            raise InvalidInput("a coupon offer names its offer_id", field="offer.offer_id")
        get_offer(offer["offer_id"])  # 404 for an unknown offer
        campaign.offer_id = offer["offer_id"]
    elif kind is OfferKind.POINTS:
        if not offer.get("points"):
            raise InvalidInput("bonus points above 0", field="offer.points")
        campaign.bonus_points = offer["points"]
    elif kind is OfferKind.MULTIPLIER:
        if not offer.get("multiplier_pct") or not offer.get("days"):
            raise InvalidInput(
                "a multiplier needs multiplier_pct (> 100) and days", field="offer.multiplier_pct"
            )
        campaign.multiplier_pct = offer["multiplier_pct"]
        campaign.multiplier_days = offer["days"]


# --- create, read, edit -----------------------------------------------------------------------


def create_campaign(data: Mapping[str, Any], *, now: datetime, actor: str) -> Campaign:
    if db.session.get(Segment, data["segment_id"]) is None:
        raise InvalidInput(f"no segment {data['segment_id']}", field="segment_id")
    order = _check_channels(data["channel_order"])
    campaign = Campaign(
        name=data["name"],
        description=data.get("description"),
        status=CampaignStatus.DRAFT.value,
        segment_id=data["segment_id"],
        channel_order=order,
        holdout_pct=data["holdout_pct"],
        attribution_days=data["attribution_days"],
        version=1,
        runs_started=0,
        created_by=actor,
        created_at=now,
        updated_at=now,
    )
    _apply_offer(campaign, data.get("offer") or {})
    _apply_schedule(campaign, data.get("schedule") or {})
    content = check_content(data["content"], order)
    db.session.add(campaign)
    db.session.flush()
    db.session.add(
        CampaignVersion(
            campaign_id=campaign.id, version=1, content=content, created_by=actor, created_at=now
        )
    )
    db.session.flush()
    return campaign


def get_campaign(campaign_id: int, *, lock: bool = False) -> Campaign:
    query = sa.select(Campaign).where(Campaign.id == campaign_id)
    if lock:
        query = query.with_for_update().execution_options(populate_existing=True)
    campaign = db.session.scalar(query)
    if campaign is None:
        raise NotFound(f"no campaign {campaign_id}")
    return campaign


def list_campaigns(*, after_id: int | None, limit: int, status: str | None) -> list[Campaign]:
    query = sa.select(Campaign).order_by(Campaign.id).limit(limit)
    if after_id is not None:
        query = query.where(Campaign.id > after_id)
    if status is not None:
        query = query.where(Campaign.status == status)
    return list(db.session.scalars(query))


def content_of(campaign_id: int, version: int) -> dict[str, Any]:
    row = db.session.get(CampaignVersion, (campaign_id, version))
    if row is None:
        raise NotFound(f"campaign {campaign_id} has no version {version}")
    return row.content


def versions(campaign_id: int) -> list[CampaignVersion]:
    get_campaign(campaign_id)
    return list(
        db.session.scalars(
            sa.select(CampaignVersion)
            .where(CampaignVersion.campaign_id == campaign_id)
            .order_by(CampaignVersion.version)
        )
    )


def update_campaign(
    campaign_id: int, changes: Mapping[str, Any], *, now: datetime, actor: str
) -> Campaign:
    """A draft changes freely; a launched campaign (scheduled, running, paused) only its
    name, description and content, the content as a new version; a finished one not."""
    campaign = get_campaign(campaign_id, lock=True)
    status = CampaignStatus(campaign.status)
    if status in (CampaignStatus.COMPLETED, CampaignStatus.CANCELLED):
        raise CampaignStateConflict(
            f"campaign {campaign_id} is {status}", campaign_status=status.value
        )
    if status is not CampaignStatus.DRAFT:
        frozen = set(changes) - CONTENT_FIELDS - LABEL_FIELDS
        if frozen:
            raise CampaignStateConflict(
                f"campaign {campaign_id} is {status}: only its name, description and content "
                f"change (not {', '.join(sorted(frozen))})",
                campaign_status=status.value,
            )
    for name in ("name", "description", "holdout_pct", "attribution_days"):
        if name in changes:
            setattr(campaign, name, changes[name])
    if "segment_id" in changes:
        if db.session.get(Segment, changes["segment_id"]) is None:
            raise InvalidInput(f"no segment {changes['segment_id']}", field="segment_id")
        campaign.segment_id = changes["segment_id"]
    if "channel_order" in changes:
        campaign.channel_order = _check_channels(changes["channel_order"])
    if "offer" in changes:
        _apply_offer(campaign, changes["offer"] or {})
    if "schedule" in changes:
        _apply_schedule(campaign, changes["schedule"] or {})
    if "content" in changes:
        content = check_content(changes["content"], campaign.channel_order)
        if status is CampaignStatus.DRAFT:
            db.session.get(CampaignVersion, (campaign.id, campaign.version)).content = content
        else:
            campaign.version += 1
            db.session.add(
                CampaignVersion(
                    campaign_id=campaign.id,
                    version=campaign.version,
                    content=content,
                    created_by=actor,
                    created_at=now,
                )
            )
    elif "channel_order" in changes:
        check_content(content_of(campaign.id, campaign.version), campaign.channel_order)
    campaign.updated_at = now
    db.session.flush()
    return campaign


# --- lifecycle --------------------------------------------------------------------------------


def _move(
    campaign_id: int,
    from_states: tuple[CampaignStatus, ...],
    to: CampaignStatus,
    *,
    now: datetime,
    actor: str,
    **values: Any,
) -> str | None:
    """Move the campaign to `to` if it is in one of `from_states`: a conditional UPDATE.
    Returns the state it left, or None (it was in none of them)."""
    table = Campaign.__table__
    before = db.session.scalar(sa.select(table.c.status).where(table.c.id == campaign_id))
    if before is None:
        raise NotFound(f"no campaign {campaign_id}")
    moved = db.session.execute(
        sa.update(table)
        .where(
            table.c.id == campaign_id,
            table.c.status == before,
            table.c.status.in_([s.value for s in from_states]),
        )
        .values(status=to.value, updated_at=now, **values)
    ).rowcount
    if moved != 1:
        return None
    db.session.execute(
        sa.insert(CampaignTransition.__table__).values(
            campaign_id=campaign_id, from_status=before, to_status=to.value, actor=actor, at=now
        )
    )
    db.session.expire_all()
    return before


def _refuse(campaign_id: int, action: str) -> CampaignStateConflict:
    status = get_campaign(campaign_id).status
    return CampaignStateConflict(
        f"campaign {campaign_id} is {status}: it can't be {action}", campaign_status=status
    )


def launch(campaign_id: int, *, now: datetime, actor: str) -> Campaign:
    """Draft -> scheduled, with its first run time (now, `at`, or the schedule's next)."""
    campaign = get_campaign(campaign_id)
    if campaign.status != CampaignStatus.DRAFT.value:
        raise _refuse(campaign_id, "launched")
    _check_launchable(campaign, now)
    first = next_run(campaign, now, first=True)
    if first is None:
        raise InvalidInput("the schedule has no run after now", field="schedule")
    if _move(
        campaign_id, (CampaignStatus.DRAFT,), CampaignStatus.SCHEDULED,
        now=now, actor=actor, next_run_at=first, launched_at=now,
    ) is None:  # fmt: skip
        raise _refuse(campaign_id, "launched")
    return get_campaign(campaign_id)


def _check_launchable(campaign: Campaign, now: datetime) -> None:
    from loyalty.coupons.models import OfferStatus
    from loyalty.coupons.offers import get_offer

    check_content(content_of(campaign.id, campaign.version), campaign.channel_order)
    if campaign.offer_kind == OfferKind.COUPON.value:
        assert campaign.offer_id is not None
        if get_offer(campaign.offer_id).status != OfferStatus.ACTIVE.value:
            raise InvalidInput(f"offer {campaign.offer_id} is not active", field="offer.offer_id")
    at = campaign.schedule_at
    if campaign.schedule_kind == ScheduleKind.AT.value and at and at < now - timedelta(minutes=1):
        raise InvalidInput("`at` lies in the past", field="schedule.at")


def pause(campaign_id: int, *, now: datetime, actor: str) -> Campaign:
    """Running (or scheduled) -> paused: no further recipient is fanned out; messages
    already handed to notifications go out. Resume continues with the next pending one."""
    if _move(
        campaign_id,
        (CampaignStatus.RUNNING, CampaignStatus.SCHEDULED),
        CampaignStatus.PAUSED,
        now=now,
        actor=actor,
    ) is None:  # fmt: skip
        raise _refuse(campaign_id, "paused")
    return get_campaign(campaign_id)


def _open_run(campaign_id: int) -> CampaignRun | None:
    return db.session.scalar(
        sa.select(CampaignRun).where(
            CampaignRun.campaign_id == campaign_id, CampaignRun.status == "running"
        )
    )


def resume(campaign_id: int, *, now: datetime, actor: str) -> Campaign:
    """Paused -> running (a run was under way) or scheduled (waiting for its next run)."""
    to = CampaignStatus.RUNNING if _open_run(campaign_id) else CampaignStatus.SCHEDULED
    if _move(campaign_id, (CampaignStatus.PAUSED,), to, now=now, actor=actor) is None:
        raise _refuse(campaign_id, "resumed")
    return get_campaign(campaign_id)


def cancel(campaign_id: int, *, now: datetime, actor: str) -> Campaign:
    """Any state but completed -> cancelled, for good: pending recipients are marked
    `cancelled` and never sent; messages already queued go out."""
    if _move(
        campaign_id,
        (
            CampaignStatus.DRAFT,
            CampaignStatus.SCHEDULED,
            CampaignStatus.RUNNING,
            CampaignStatus.PAUSED,
        ),
        CampaignStatus.CANCELLED,
        now=now,
        actor=actor,
        next_run_at=None,
        finished_at=now,
    ) is None:  # fmt: skip
        raise _refuse(campaign_id, "cancelled")
    recipients = CampaignRecipient.__table__
    runs = CampaignRun.__table__
    open_runs = db.session.scalars(
        sa.select(runs.c.id).where(runs.c.campaign_id == campaign_id, runs.c.status == "running")
    ).all()
    for run_id in open_runs:
        db.session.execute(
            sa.update(recipients)
            .where(
                recipients.c.run_id == run_id,
                recipients.c.status == constant(RecipientStatus.PENDING.value),
            )
            .values(status=RecipientStatus.CANCELLED.value, reason="campaign cancelled")
        )
    db.session.execute(
        sa.update(runs)
        .where(runs.c.campaign_id == campaign_id, runs.c.status == "running")
        .values(status="cancelled", finished_at=now)
    )
    return get_campaign(campaign_id)


def transitions(campaign_id: int) -> list[CampaignTransition]:
    return list(
        db.session.scalars(
            sa.select(CampaignTransition)
            .where(CampaignTransition.campaign_id == campaign_id)
            .order_by(CampaignTransition.id)
        )
    )
