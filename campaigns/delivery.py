"""The fan-out: start due runs (audience snapshot), then deliver pending recipients in chunks.

    start_due_runs(now)      scheduled campaigns whose next run is due -> running (conditional
                             UPDATE), a `campaign_runs` row, and the audience snapshotted
                             with ONE INSERT ... SELECT into `campaign_recipients` (people,
                             control group already marked `held_out`)
    deliver_chunk(cursor)    one chunk of one running run, its own transaction: up to
                             CHUNK pending recipients FOR UPDATE SKIP LOCKED (workers share
                             a run), then the campaign row FOR SHARE (a pause waits for the
                             chunk, then no later chunk starts), deliver_many(...); a run
                             with none left is finished under the row's exclusive lock
    deliver_many(...)        per chunk: resolve each member to the person now, pick the
                             channel (first in the campaign's order with a marketing opt-in
                             and a destination), the variant (weighted hash), issue codes in
                             bulk / credit points, queue the messages in bulk, and mark the
                             rows `queued` or `suppressed` (with the reason)

A recipient leaves `pending` only in the transaction that queued its message (and issued its
code), so a worker killed mid-chunk leaves the chunk pending for the next run of the job:
exactly once, with the message's dedupe key `campaign:<id>:<run>:<person>` as the backstop.
Quiet hours and frequency caps are the send pipeline's, at send time (the message records
the reason when it suppresses or defers).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from campaigns import lifecycle, segments
from campaigns.engine_models import (
    Campaign,
    CampaignRecipient,
    CampaignRun,
    CampaignStatus,
    OfferKind,
    RecipientStatus,
)
from campaigns.models import Segment
from loyalty.batches import BatchCursor
from loyalty.db import any_of, constant, db
from loyalty.members.models import Member, MemberStatus
from notifications import bulk
from notifications.consent import Purpose
from notifications.models import Message
from notifications.pipeline import Draft, create_messages
from notifications.providers.base import Channel

log = logging.getLogger(__name__)

CHUNK = 500
TEMPLATE_DEFAULT = "campaign_offer"
ACTOR = "campaigns"

# The control group: a deterministic hash of (campaign id, person id) into 10,000 buckets,
# written so PostgreSQL and SQLite compute it in the snapshot's INSERT ... SELECT and Python
# agrees (Fibonacci hashing: consecutive ids spread evenly over the buckets; every product
# stays below 2^63).
_MOD31 = 2**31
_MOD32 = 2**32
_GOLDEN = 2654435761
_CAMPAIGN_STRIDE = 7919
BUCKETS = 10_000


def holdout_bucket(campaign_id: int, person_id: int) -> int:
    mixed = ((person_id % _MOD31) + campaign_id * _CAMPAIGN_STRIDE) % _MOD31
    return (mixed * _GOLDEN % _MOD32) * BUCKETS // _MOD32


def is_held_out(campaign_id: int, person_id: int, holdout_pct: int) -> bool:
    return holdout_bucket(campaign_id, person_id) < holdout_pct * BUCKETS // 100


def _bucket_sql(campaign_id: int, person: Any) -> Any:
    mixed = (person % _MOD31 + campaign_id * _CAMPAIGN_STRIDE) % _MOD31
    return (mixed * _GOLDEN % _MOD32) * BUCKETS / _MOD32


def variant_for(campaign_id: int, person_id: int, variants: Sequence[dict[str, Any]]) -> str:
    """A/B assignment: the same person gets the same variant for the whole campaign,
    independent of the control group's hash, in proportion to the weights."""
    total = sum(v["weight"] for v in variants)
    mixed = ((person_id % _MOD31) + campaign_id * 104729) % _MOD31
    point = (mixed * 2246822519 % _MOD32) * total // _MOD32
    for variant in variants:
        point -= variant["weight"]
        if point < 0:
            return variant["name"]
    return variants[-1]["name"]


def dedupe_key(campaign_id: int, run_number: int, person_id: int) -> str:
    """One message per person per campaign step, whatever the channel."""
    return f"campaign:{campaign_id}:{run_number}:{person_id}"


# --- runs -----------------------------------------------------------------------------------


def start_due_runs(now: datetime, *, limit: int = 10) -> list[int]:
    """Start every scheduled campaign whose next run is due: one run each, its audience
    snapshotted. Returns the new run ids. The caller commits."""
    table = Campaign.__table__
    due = db.session.scalars(
        sa.select(table.c.id)
        .where(
            table.c.status == constant(CampaignStatus.SCHEDULED.value),
            table.c.next_run_at <= now,
        )
        .order_by(table.c.next_run_at)
        .limit(limit)
    ).all()
    started = []
    for campaign_id in due:
        run = start_run(campaign_id, now=now)
        if run is not None:
            started.append(run.id)
    return started


def start_run(campaign_id: int, *, now: datetime) -> CampaignRun | None:
    """Scheduled -> running with a new run (None if another worker started it first)."""
    table = Campaign.__table__
    claimed = db.session.execute(
        sa.update(table)
        .where(
            table.c.id == campaign_id,
            table.c.status == constant(CampaignStatus.SCHEDULED.value),
            table.c.next_run_at <= now,
        )
        .values(
            status=CampaignStatus.RUNNING.value,
            runs_started=table.c.runs_started + 1,
            updated_at=now,
        )
        .returning(table.c.runs_started, table.c.next_run_at)
    ).first()
    if claimed is None:
        return None
    number, scheduled_for = claimed
    from campaigns.engine_models import CampaignTransition

    db.session.execute(
        sa.insert(CampaignTransition.__table__).values(
            campaign_id=campaign_id,
            from_status=CampaignStatus.SCHEDULED.value,
            to_status=CampaignStatus.RUNNING.value,
            actor=f"{ACTOR}:run {number}",
            at=now,
        )
    )
    db.session.expire_all()
    campaign = lifecycle.get_campaign(campaign_id)
    run = CampaignRun(
        campaign_id=campaign_id,
        number=number,
        status="running",
        scheduled_for=scheduled_for,
        started_at=now,
    )
    db.session.add(run)
    db.session.flush()
    run.audience, run.held_out = snapshot(campaign, run, now=now)
    db.session.flush()
    return run


def snapshot(campaign: Campaign, run: CampaignRun, *, now: datetime) -> tuple[int, int]:
    """The audience as it is now, one row per person, in one INSERT ... SELECT; the control
    group is marked `held_out` by the hash. Returns (people, held out)."""
    segment = db.session.get(Segment, campaign.segment_id)
    assert segment is not None
    people = segments.audience(segment, now).subquery()
    person = people.c.member_id
    threshold = campaign.holdout_pct * BUCKETS // 100
    status = sa.case(
        (_bucket_sql(campaign.id, person) < threshold, RecipientStatus.HELD_OUT.value),
        else_=RecipientStatus.PENDING.value,
    )
    recipients = CampaignRecipient.__table__
    db.session.execute(
        recipients.insert().from_select(
            ["run_id", "member_id", "campaign_id", "status"],
            sa.select(
                sa.literal(run.id, sa.BigInteger),
                person,
                sa.literal(campaign.id, sa.BigInteger),
                status,
            ).distinct(),
        )
    )
    counts = dict(
        db.session.execute(
            sa.select(recipients.c.status, sa.func.count())
            .where(recipients.c.run_id == run.id)
            .group_by(recipients.c.status)
        ).all()
    )
    return sum(counts.values()), counts.get(RecipientStatus.HELD_OUT.value, 0)


def finish_run(run: CampaignRun, campaign: Campaign, *, now: datetime) -> bool:
    """A running run with nothing pending is completed; the campaign goes back to
    scheduled (its next recurrence) or is completed. True if this call finished it."""
    recipients = CampaignRecipient.__table__
    runs = CampaignRun.__table__
    pending = sa.exists().where(
        recipients.c.run_id == run.id,
        recipients.c.status == constant(RecipientStatus.PENDING.value),
    )
    done = db.session.execute(
        sa.update(runs)
        .where(runs.c.id == run.id, runs.c.status == "running", ~pending)
        .values(status="completed", finished_at=now)
    ).rowcount
    if done != 1:
        return False
    after = max(now, run.scheduled_for)
    upcoming = lifecycle.next_run(campaign, after, first=False)
    if upcoming is not None:
        lifecycle._move(
            campaign.id, (CampaignStatus.RUNNING,), CampaignStatus.SCHEDULED,
            now=now, actor=f"{ACTOR}:run {run.number} done", next_run_at=upcoming,
        )  # fmt: skip
    else:
        lifecycle._move(
            campaign.id, (CampaignStatus.RUNNING,), CampaignStatus.COMPLETED,
            now=now, actor=f"{ACTOR}:run {run.number} done", next_run_at=None, finished_at=now,
        )  # fmt: skip
    return True


# --- fan-out ----------------------------------------------------------------------------------


def running_runs() -> list[tuple[int, int]]:
    """(run id, campaign id) of the open runs of running campaigns, oldest first."""
    runs, campaigns = CampaignRun.__table__, Campaign.__table__
    return [
        (run_id, campaign_id)
        for run_id, campaign_id in db.session.execute(
            sa.select(runs.c.id, runs.c.campaign_id)
            .join(campaigns, campaigns.c.id == runs.c.campaign_id)
            .where(
                runs.c.status == "running",
                campaigns.c.status == constant(CampaignStatus.RUNNING.value),
            )
            .order_by(runs.c.id)
        )
    ]


def deliver_chunk(cursor: BatchCursor, now: datetime, *, size: int = CHUNK) -> int:
    """Deliver one chunk of the first open run that has pending recipients free to claim;
    finish the runs that have none left. Returns the recipients handled (0: nothing to do
    now). One transaction (the caller commits)."""
    recipients = CampaignRecipient.__table__
    campaigns = Campaign.__table__
    for run_id, campaign_id in running_runs():
        if run_id in cursor.skip:
            continue
        claimed = db.session.scalars(
            sa.select(recipients.c.member_id)
            .where(
                recipients.c.run_id == run_id,
                recipients.c.status == constant(RecipientStatus.PENDING.value),
            )
            .order_by(recipients.c.member_id)
            .limit(size)
            .with_for_update(skip_locked=True)
        ).all()
        # The campaign row: shared while delivering (a pause waits for the chunk in flight,
        # then no later chunk starts), exclusive to finish the run (one finisher at a time,
        # after every chunk in flight committed).
        status = db.session.scalar(
            sa.select(campaigns.c.status)
            .where(campaigns.c.id == campaign_id)
            .with_for_update(read=bool(claimed))
        )
        if status != CampaignStatus.RUNNING.value:
            continue  # paused or cancelled since: this chunk does nothing for it
        campaign = lifecycle.get_campaign(campaign_id)
        run = db.session.get(CampaignRun, run_id)
        assert run is not None
        if not claimed:
            finish_run(run, campaign, now=now)
            cursor.skip.add(run_id)
            continue
        outcome = deliver_many(campaign, run, list(claimed), now=now)
        cursor.handled += len(claimed)
        return outcome.queued + outcome.suppressed
    return 0


@dataclass
class ChunkOutcome:
    queued: int = 0
    suppressed: int = 0


def _people(member_ids: Sequence[int]) -> dict[int, tuple[int, bool]]:
    """member id -> (the person now, whether that person is active)."""
    members = Member.__table__
    person = members.alias("person")
    rows = db.session.execute(
        sa.select(members.c.id, person.c.id, person.c.status)
        .select_from(
            members.join(
                person, person.c.id == sa.func.coalesce(members.c.merged_into_id, members.c.id)
            )
        )
        .where(any_of(members.c.id, member_ids))
    ).all()
    return {
        member_id: (person_id, status == MemberStatus.ACTIVE.value)
        for member_id, person_id, status in rows
    }


def _choose(
    order: Sequence[str], granted: set[Channel], reachable: set[Channel]
) -> tuple[Channel | None, str | None]:
    consented = [Channel(c) for c in order if Channel(c) in granted]
    if not consented:
        return None, f"no marketing consent on {', '.join(order)}"
    for channel in consented:
        if channel in reachable:
            return channel, None
    return None, f"no destination on a consented channel ({', '.join(c.value for c in consented)})"


def deliver_many(
    campaign: Campaign, run: CampaignRun, member_ids: Sequence[int], *, now: datetime
) -> ChunkOutcome:
    """Fan out to these pending recipients of the run (claimed by the caller): codes or
    points, one marketing message each on their channel, rows marked. The caller's
    transaction; the delivery functions journeys reuse."""
    people = _people(member_ids)
    persons = sorted({p for p, active in people.values() if active})
    granted = bulk.marketing_consents(persons)
    reach = bulk.reachable(persons, now)
    content = lifecycle.content_of(campaign.id, campaign.version)
    variants = content["variants"]
    taken = _already_messaged(campaign.id, run.number, persons)
    decisions: dict[int, dict[str, Any]] = {}
    to_message: dict[int, tuple[int, Channel, str]] = {}  # person -> (member id, channel, variant)
    for member_id in sorted(member_ids):
        person, active = people.get(member_id, (member_id, False))
        # Every treated row gets its variant, messaged or not: per-variant conversion is
        # measured on everyone assigned (intention to treat), against the control group.
        variant = variant_for(campaign.id, person, variants)
        if not active:
            decisions[member_id] = _suppressed(
                "member not active (blocked, erased or unknown)", variant
            )
            continue
        if person in taken or person in to_message:
            decisions[member_id] = _suppressed(f"same person as member {person} (merged)", variant)
            continue
        channel, why = _choose(campaign.channel_order, granted[person], reach[person])
        if channel is None:
            decisions[member_id] = _suppressed(why, variant)
            continue
        to_message[person] = (member_id, channel, variant)
    unavailable = _offer_unavailable(campaign, now)
    if unavailable is not None:  # no message promising a code that can't be redeemed
        for member_id, _channel, variant in to_message.values():
            decisions[member_id] = _suppressed(unavailable, variant)
        to_message = {}
    extras = _issue_offer(campaign, run, sorted(to_message), now=now)
    templates = {v["name"]: v["templates"] for v in variants}
    new = []
    for person, (_member_id, channel, variant) in to_message.items():
        variables = {"campaign_id": campaign.id, "run": run.number, "variant": variant}
        variables.update(extras.get(person, {}).get("variables", {}))
        new.append(
            Draft(
                member_id=person,
                channel=channel,
                template=templates[variant][channel.value],
                dedupe_key=dedupe_key(campaign.id, run.number, person),
                purpose=Purpose.MARKETING,
                variables=variables,
            )
        )
    queued = create_messages(new, now)
    for person, (member_id, channel, variant) in to_message.items():
        message_id = queued.get(dedupe_key(campaign.id, run.number, person))
        if message_id is None:  # a concurrent chunk for a merged twin won the key
            decisions[member_id] = _suppressed(f"same person as member {person} (merged)", variant)
            continue
        decisions[member_id] = {
            "status": RecipientStatus.QUEUED.value,
            "reason": None,
            "channel": channel.value,
            "variant": variant,
            "message_id": message_id,
            "code_id": extras.get(person, {}).get("code_id"),
            "points_transaction_id": extras.get(person, {}).get("points_transaction_id"),
        }
    _record(run.id, campaign.version, decisions, now)
    queued_count = sum(1 for d in decisions.values() if d["status"] == "queued")
    return ChunkOutcome(queued=queued_count, suppressed=len(decisions) - queued_count)


def _suppressed(reason: str | None, variant: str) -> dict[str, Any]:
    return {
        "status": RecipientStatus.SUPPRESSED.value,
        "reason": reason,
        "channel": None,
        "variant": variant,
        "message_id": None,
        "code_id": None,
        "points_transaction_id": None,
    }


def _already_messaged(campaign_id: int, run_number: int, persons: Sequence[int]) -> set[int]:
    """Persons who already have this step's message (a merged twin got it earlier)."""
    if not persons:
        return set()
    keys = {dedupe_key(campaign_id, run_number, p): p for p in persons}
    found = db.session.scalars(
        sa.select(Message.dedupe_key).where(any_of(Message.dedupe_key, keys))
    ).all()
    return {keys[key] for key in found}


def _offer_unavailable(campaign: Campaign, now: datetime) -> str | None:
    """Why the campaign's coupon offer can't be issued now (paused, ended, or past its
    validity since the launch), or None. Its recipients are then suppressed with that
    reason rather than sent a code that can't be redeemed."""
    if campaign.offer_kind != OfferKind.COUPON.value or campaign.offer_id is None:
        return None
    from loyalty.coupons.models import OfferStatus
    from loyalty.coupons.offers import current_terms, get_offer

    offer = get_offer(campaign.offer_id)
    if offer.status != OfferStatus.ACTIVE.value:
        return f"offer {offer.id} is {offer.status}"
    valid_until = current_terms(offer).valid_until
    if valid_until is not None and valid_until <= now:
        return f"offer {offer.id} expired"
    return None


def _issue_offer(
    campaign: Campaign, run: CampaignRun, persons: list[int], *, now: datetime
) -> dict[int, dict[str, Any]]:
    """What each person gets with the message: a code (issued in bulk, no per-code outbox
    event), bonus points (one ledger credit each, members locked in id order), or the
    multiplier's window."""
    kind = OfferKind(campaign.offer_kind)
    if not persons or kind is OfferKind.NONE:
        return {}
    if kind is OfferKind.COUPON:
        from loyalty.coupons.wallet import issue_to_members

        assert campaign.offer_id is not None
        codes = issue_to_members(
            campaign.offer_id,
            persons,
            now=now,
            actor=f"{ACTOR}:{campaign.id}",
            source_type="campaign",
            source_ref=f"campaign:{campaign.id}:{run.number}",
            campaign_id=campaign.id,
            emit_events=False,
        )
        return {
            code.member_id: {
                "code_id": code.id,
                "variables": {"coupon_id": code.id, "offer_id": campaign.offer_id},
            }
            for code in codes
            if code.member_id is not None
        }
    if kind is OfferKind.POINTS:
        from loyalty.ledger.operations import Cause, earn_points

        given = {}
        for person in persons:  # ascending: the lock order of batch chunks
            tx = earn_points(
                person,
                campaign.bonus_points,
                Cause("campaign", f"{campaign.id}:{run.number}:{person}"),
                now=now,
                actor=f"{ACTOR}:{campaign.id}",
                details={"campaign_id": campaign.id, "run": run.number},
            )
            given[person] = {
                "points_transaction_id": tx.id,
                "variables": {"points": campaign.bonus_points},
            }
        return given
    until = now + timedelta(days=campaign.multiplier_days)
    variables = {"multiplier_pct": campaign.multiplier_pct, "multiplier_until": until.isoformat()}
    return {person: {"variables": variables} for person in persons}


def _record(run_id: int, version: int, decisions: dict[int, dict[str, Any]], now: datetime) -> None:
    """Every claimed row leaves `pending` (conditional on it, so only once)."""
    if not decisions:
        return
    table = CampaignRecipient.__table__
    statement = (
        sa.update(table)
        .where(
            table.c.run_id == run_id,
            table.c.member_id == sa.bindparam("b_member"),
            # inline, not literal_execute (executemany): the partial index's predicate
            table.c.status == sa.literal_column("'pending'"),
        )
        .values(
            status=sa.bindparam("b_status"),
            reason=sa.bindparam("b_reason"),
            channel=sa.bindparam("b_channel"),
            variant=sa.bindparam("b_variant"),
            message_id=sa.bindparam("b_message"),
            code_id=sa.bindparam("b_code"),
            points_transaction_id=sa.bindparam("b_points"),
            version=version,
            processed_at=now,
        )
    )
    db.session.connection().execute(
        statement,
        [
            {
                "b_member": member_id,
                "b_status": d["status"],
                "b_reason": (d["reason"] or None) and d["reason"][:300],
                "b_channel": d["channel"],
                "b_variant": d["variant"],
                "b_message": d["message_id"],
                "b_code": d["code_id"],
                "b_points": d["points_transaction_id"],
            }
            for member_id, d in decisions.items()
        ],
    )


def deliver_until_done(now_fn: Any, *, budget_seconds: float | None = None) -> int:
    """Start due runs, then deliver chunk after chunk until nothing is left (the job's and
    the CLI's body). Commits per chunk."""
    from loyalty.batches import run_chunks
    from loyalty.transactions import commit_retrying

    commit_retrying(lambda: start_due_runs(now_fn()), what="start campaign runs")
    cursor = BatchCursor()
    result = run_chunks(
        lambda c: deliver_chunk(c, now_fn()),
        what="deliver-campaigns",
        budget_seconds=budget_seconds,
        cursor=cursor,
    )
    return result.total
