"""Multi-step journeys: versions, entries (a member's progress) and the step engine.

A version's steps are a list run in order; an entry points at the step to run next and
when (`next_run_at`). Step types:

    {"type": "wait", "days": 3, "hours": 0, "minutes": 0}
    {"type": "condition", "check": "purchased_since_entry" | "redeemed_coupon" | "segment",
     "rule": {...segment rule...}, "expect": true, "otherwise": "exit" | <a later index>}
    {"type": "message", "template": "...", "channels": ["push", "sms", "email"]}
    {"type": "coupon", "offer_id": 1, "nearest_stores": 0}
    {"type": "points", "points": 100}
    {"type": "exit"}

A wait schedules the next step at the time the wait began (the entry's scheduled time,
never the time a late job ran) plus its duration, so a slow scheduler shifts nothing.
Each step runs exactly once per entry: the run row is unique on (entry, step) and is
inserted in the same transaction as the step's effects (a queued message, an issued code,
a ledger credit), under the member's lock.

The control group: like a campaign's, a deterministic share (`holdout_pct`, 10 % unless
set) of the people a journey's trigger brings in, by a hash of (journey, person). Their
entry is recorded `held_out` and runs no step (no message, code or points), and results
compare the conversion of the entries that went through the journey with theirs over
the journey's `attribution_days` from entering (intention to treat).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from campaigns import delivery_seam
from campaigns.journey_models import Journey, JourneyEntry, JourneyStepRun, JourneyVersion
from loyalty.batches import CHUNK_MEMBERS, BatchCursor
from loyalty.db import any_of, constant, db, upsert_insert
from loyalty.errors import Conflict, InvalidInput, NotFound, OmniloyalError
from loyalty.members.models import MemberStatus
from loyalty.members.resolution import (
    history_member_ids,
    history_members,
    lock_current_member,
    lock_current_members,
)

STEP_TYPES = ("wait", "condition", "message", "coupon", "points", "exit")
CHECKS = ("purchased_since_entry", "redeemed_coupon", "segment")
TRIGGERS = (
    "manual",  # entered by the API (or an O2O template's audience)
    "segment",  # the segment's audience, entered at activation
    "member.enrolled",
    "first_purchase",
    "tier.changed",
    "points.expiring",
    "birthday",
    "no_purchase",
)
CHANNELS = ("push", "sms", "email")
MAX_STEPS = 50
HOLDOUT_PCT = 10  # on by default, as for campaigns
ATTRIBUTION_DAYS = 7
HELD_OUT = "held_out"
ENTRY_STATUSES = ("active", "completed", "exited", HELD_OUT)

# The control group's hash: multiplicative hashing of (journey, person) into 10,000 buckets,
# like the campaigns' (campaigns.delivery.holdout_bucket) with another multiplier and
# stride, so a journey and a campaign that share an id hold out independent groups.
BUCKETS = 10_000
_MOD31, _MOD32, _MULTIPLIER, _JOURNEY_STRIDE = 2**31, 2**32, 3266489917, 15_485_863


def holdout_bucket(journey_id: int, person_id: int) -> int:
    mixed = ((person_id % _MOD31) + journey_id * _JOURNEY_STRIDE) % _MOD31
    return (mixed * _MULTIPLIER % _MOD32) * BUCKETS // _MOD32


def is_held_out(journey: Journey, person_id: int) -> bool:
    """Whether the person is in the journey's control group (the same answer every time)."""
    return holdout_bucket(journey.id, person_id) < journey.holdout_pct * BUCKETS // 100


# --- validation ---


def check_steps(steps: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The steps as stored, or a 422 naming every step at fault (`steps.2.otherwise`)."""
    errors: list[dict[str, str]] = []

    def fail(path: str, message: str) -> None:
        errors.append({"field": f"steps.{path}", "message": message})

    if not steps:
        raise InvalidInput("a journey has at least one step", field="steps")
    if len(steps) > MAX_STEPS:
        raise InvalidInput(f"at most {MAX_STEPS} steps", field="steps")
    for index, step in enumerate(steps):
        kind = step.get("type")
        if kind not in STEP_TYPES:
            fail(f"{index}.type", f"one of {', '.join(STEP_TYPES)}")
            continue
        if kind == "wait":
            total = sum(int(step.get(k) or 0) for k in ("days", "hours", "minutes"))
            if total <= 0 or any(int(step.get(k) or 0) < 0 for k in ("days", "hours", "minutes")):
                fail(f"{index}", "a wait lasts a positive number of days, hours or minutes")
        elif kind == "condition":
            if step.get("check") not in CHECKS:
                fail(f"{index}.check", f"one of {', '.join(CHECKS)}")
            if step.get("check") == "segment":
                _check_rule(step.get("rule"), index, fail)
            otherwise = step.get("otherwise", "exit")
            if otherwise != "exit" and not (
                isinstance(otherwise, int) and index < otherwise < len(steps)
            ):
                fail(f"{index}.otherwise", "'exit' or the index of a later step")
        elif kind == "message":
            if not step.get("template"):
                fail(f"{index}.template", "a template key is required")
            channels = step.get("channels") or []
            if not channels or any(c not in CHANNELS for c in channels):
                fail(f"{index}.channels", f"an order of {', '.join(CHANNELS)}")
        elif kind == "coupon":
            if not isinstance(step.get("offer_id"), int):
                fail(f"{index}.offer_id", "an offer id is required")
        elif kind == "points":
            points = step.get("points")
            if not isinstance(points, int) or isinstance(points, bool) or points <= 0:
                fail(f"{index}.points", "a positive whole number of points")
    if errors:
        raise InvalidInput("the journey's steps are not valid", errors=errors)
    return [dict(step) for step in steps]


def _check_rule(rule: Any, index: int, fail: Any) -> None:
    from campaigns.compiler import check

    try:
        check(rule)
    except InvalidInput as error:
        fail(f"{index}.rule", error.detail)


def _check_trigger(data: Mapping[str, Any]) -> None:
    if data["trigger"] == "no_purchase" and not data.get("trigger_days"):
        raise InvalidInput("no_purchase needs trigger_days", field="trigger_days")
    if data["trigger"] == "segment" and not data.get("segment_id"):
        raise InvalidInput("a segment trigger needs segment_id", field="segment_id")
    if data.get("reentry") == "after_days" and not data.get("reentry_days"):
        raise InvalidInput("after_days needs reentry_days", field="reentry_days")


# --- journeys and versions ---


def create_journey(data: Mapping[str, Any], *, now: datetime, actor: str) -> Journey:
    """A draft journey with its version 1."""
    _check_trigger(data)
    steps = check_steps(data["steps"])
    journey = Journey(
        name=data["name"],
        kind=data.get("kind", "journey"),
        status="draft",
        version=1,
        trigger=data["trigger"],
        trigger_days=data.get("trigger_days"),
        segment_id=data.get("segment_id"),
        reentry=data.get("reentry", "never"),
        reentry_days=data.get("reentry_days"),
        holdout_pct=data.get("holdout_pct", HOLDOUT_PCT),
        attribution_days=data.get("attribution_days", ATTRIBUTION_DAYS),
        created_by=actor,
        created_at=now,
        updated_at=now,
    )
    db.session.add(journey)
    db.session.flush()
    db.session.add(JourneyVersion(journey_id=journey.id, version=1, steps=steps, created_at=now))
    db.session.flush()
    return journey


def get_journey(journey_id: int, *, lock: bool = False) -> Journey:
    query = sa.select(Journey).where(Journey.id == journey_id)
    if lock:
        query = query.with_for_update()
    journey = db.session.scalar(query)
    if journey is None:
        raise NotFound(f"no journey {journey_id}")
    return journey


def list_journeys(*, after_id: int | None, limit: int) -> list[Journey]:
    return list(
        db.session.scalars(
            sa.select(Journey).where(Journey.id > (after_id or 0)).order_by(Journey.id).limit(limit)
        )
    )


def steps_of(journey_id: int, version: int) -> list[dict[str, Any]]:
    row = db.session.scalar(
        sa.select(JourneyVersion.steps).where(
            JourneyVersion.journey_id == journey_id, JourneyVersion.version == version
        )
    )
    if row is None:
        raise NotFound(f"no version {version} of journey {journey_id}")
    return list(row)


def versions(journey_id: int) -> list[JourneyVersion]:
    get_journey(journey_id)
    return list(
        db.session.scalars(
            sa.select(JourneyVersion)
            .where(JourneyVersion.journey_id == journey_id)
            .order_by(JourneyVersion.version)
        )
    )


def new_version(journey_id: int, steps: Sequence[Mapping[str, Any]], *, now: datetime) -> Journey:
    """Edit the steps: a new version new entries follow; members in flight stay on theirs."""
    checked = check_steps(steps)
    journey = get_journey(journey_id, lock=True)
    if journey.status == "archived":
        raise Conflict("an archived journey can't change")
    journey.version += 1
    journey.updated_at = now
    db.session.add(
        JourneyVersion(
            journey_id=journey.id, version=journey.version, steps=checked, created_at=now
        )
    )
    db.session.flush()
    return journey


def set_status(journey_id: int, status: str, *, now: datetime) -> Journey:
    """Activate (from draft or paused) or pause (from active). Paused: nobody enters and no
    step runs; entries wait where they are and go on, due steps first, on activation."""
    journey = get_journey(journey_id, lock=True)
    allowed = {"active": ("draft", "paused", "active"), "paused": ("active", "paused")}
    if journey.status not in allowed[status]:
        raise Conflict(f"a {journey.status} journey can't become {status}")
    journey.status = status
    journey.updated_at = now
    db.session.flush()
    return journey


# --- entering ---


def _reentry_allows(journey: Journey, last: datetime | None, active: bool, now: datetime) -> bool:
    if journey.reentry == "always" or last is None:
        return True
    if journey.reentry == "never":
        return False
    return not active and last <= now - timedelta(days=journey.reentry_days or 0)


def may_enter(journey: Journey, person_ids: Sequence[int], now: datetime) -> bool:
    """The re-entry rule: never (one entry ever), after N days (since the last entry), or
    always (any number, one per cause). Called under the person's lock."""
    if journey.reentry == "always":
        return True
    last = db.session.scalar(
        sa.select(sa.func.max(JourneyEntry.entered_at)).where(
            JourneyEntry.member_id.in_(person_ids), JourneyEntry.journey_id == journey.id
        )
    )
    if last is None or journey.reentry == "never":
        return _reentry_allows(journey, last, False, now)
    active = db.session.scalar(
        sa.select(JourneyEntry.id)
        .where(
            JourneyEntry.member_id.in_(person_ids),
            JourneyEntry.journey_id == journey.id,
            JourneyEntry.status == constant("active"),
        )
        .limit(1)
    )
    return _reentry_allows(journey, last, active is not None, now)


def enter(
    journey: Journey, member_id: int, *, cause_key: str, now: datetime, locked: bool = False
) -> JourneyEntry | None:
    """Put the member (the person the id belongs to now) at the journey's first step, if
    the journey is active, the member active and the re-entry rule allows; None otherwise
    or when this cause already entered them. Locks the member first (lock order step 2).
    A person of the control group gets an entry `held_out` instead, which runs nothing."""
    if journey.status != "active":
        return None
    member = lock_current_member(member_id) if not locked else None
    person_id = member.id if member is not None else member_id
    if member is not None and member.status != MemberStatus.ACTIVE.value:
        return None
    if not may_enter(journey, history_member_ids(person_id), now):
        return None
    held = is_held_out(journey, person_id)
    table = JourneyEntry.__table__
    entry_id = db.session.execute(
        upsert_insert(table)
        .values(
            journey_id=journey.id,
            version=journey.version,
            member_id=person_id,
            cause_key=cause_key,
            status=HELD_OUT if held else "active",
            step_index=0,
            next_run_at=None if held else now,
            entered_at=now,
            updated_at=now,
            state={},
        )
        .on_conflict_do_nothing(index_elements=["journey_id", "cause_key"])
        .returning(table.c.id)
    ).scalar()
    return db.session.get(JourneyEntry, entry_id) if entry_id is not None else None


def enter_many(
    journey: Journey, member_ids: Sequence[int], *, cause: str, now: datetime
) -> list[int]:
    """Enter many members at once, as `enter` does one (an announcement to a segment's
    audience, the API): the members locked in one statement (ascending id: the lock
    order), the re-entry rule read for all their people in one, the entries (the control
    group's `held_out` ones included) inserted in one. The cause key of each is
    `<cause>:<the id given>`; one entry per person per call. Returns the new entry ids."""
    if journey.status != "active" or not member_ids:
        return []
    members = lock_current_members(member_ids)
    people: dict[int, int] = {}  # person -> the first id given for them
    for member_id in sorted(members):
        member = members[member_id]
        if member.status == MemberStatus.ACTIVE.value:
            people.setdefault(member.id, member_id)
    if not people:
        return []
    last: dict[int, tuple[datetime | None, bool]] = {}
    if journey.reentry != "always":
        entries, history = JourneyEntry.__table__, history_members(sorted(people))
        for person_id, entered_at, active in db.session.execute(
            sa.select(
                history.c.person_id,
                sa.func.max(entries.c.entered_at),
                sa.func.max(sa.case((entries.c.status == constant("active"), 1), else_=0)),
            )
            .select_from(entries.join(history, history.c.member_id == entries.c.member_id))
            .where(entries.c.journey_id == journey.id)
            .group_by(history.c.person_id)
        ):
            last[person_id] = (entered_at, bool(active))
    rows = []
    for person_id, given in sorted(people.items()):
        entered_at, active = last.get(person_id, (None, False))
        if not _reentry_allows(journey, entered_at, active, now):
            continue
        held = is_held_out(journey, person_id)
        rows.append(
            {
                "journey_id": journey.id,
                "version": journey.version,
                "member_id": person_id,
                "cause_key": f"{cause}:{given}",
                "status": HELD_OUT if held else "active",
                "step_index": 0,
                "next_run_at": None if held else now,
                "entered_at": now,
                "updated_at": now,
                "state": {},
            }
        )
    if not rows:
        return []
    table = JourneyEntry.__table__
    return list(
        db.session.scalars(
            upsert_insert(table)
            .values(rows)
            .on_conflict_do_nothing(index_elements=["journey_id", "cause_key"])
            .returning(table.c.id)
        )
    )


def enter_manually(
    journey_id: int, member_ids: Sequence[int], *, cause: str, now: datetime
) -> list[int]:
    """Enter members by id (one cause key per member); the new entry ids."""
    journey = get_journey(journey_id)
    if journey.status != "active":
        raise Conflict("only an active journey takes members")
    return enter_many(journey, member_ids, cause=cause, now=now)


# --- the engine ---


def due_entries_query(now: datetime, limit: int) -> sa.Select[Any]:
    """Due entries of active journeys, oldest first: a range of ix_journey_entries_due."""
    return (
        sa.select(JourneyEntry.id, JourneyEntry.member_id)
        .join(Journey, Journey.id == JourneyEntry.journey_id)
        .where(
            JourneyEntry.status == constant("active"),
            JourneyEntry.next_run_at <= now,
            Journey.status == constant("active"),
        )
        .order_by(JourneyEntry.next_run_at)
        .limit(limit)
    )


class _Chunk:
    """What one chunk of the engine shares, so a chunk costs a fixed number of statements
    whatever its size: its people's consents and destinations (read once), the steps of
    each version, the step runs already recorded; its messages and step runs are written
    together by `finish()` (one INSERT each), in the chunk's transaction."""

    def __init__(self, entries: Sequence[JourneyEntry], now: datetime) -> None:
        self.now = now
        self.deliveries = delivery_seam.Deliveries({e.member_id for e in entries}, now)
        self._steps: dict[tuple[int, int], list[dict[str, Any]]] = {}
        ids = [entry.id for entry in entries]
        self.recorded: dict[tuple[int, int], int | None] = {}
        if ids:
            for entry_id, step_index, next_step in db.session.execute(
                sa.select(
                    JourneyStepRun.entry_id, JourneyStepRun.step_index, JourneyStepRun.next_step
                ).where(any_of(JourneyStepRun.entry_id, ids))
            ):
                self.recorded[(entry_id, step_index)] = next_step
        self.runs: list[dict[str, Any]] = []

    def steps(self, journey_id: int, version: int) -> list[dict[str, Any]]:
        key = (journey_id, version)
        if key not in self._steps:
            self._steps[key] = steps_of(journey_id, version)
        return self._steps[key]

    def record(self, run: dict[str, Any]) -> None:
        self.recorded[(run["entry_id"], run["step_index"])] = run["next_step"]
        self.runs.append(run)

    def finish(self) -> None:
        """Queue the chunk's messages, then insert its step runs with their outcomes."""
        queued = self.deliveries.queue()
        rows = []
        for run in self.runs:
            if run["step_type"] == "message":
                outcome, details = delivery_seam.settle(run["details"], queued)
                run = {**run, "outcome": outcome, "details": details}
            rows.append(run)
        self.runs = []
        if rows:
            db.session.execute(sa.insert(JourneyStepRun.__table__), rows)
        db.session.flush()


def advance_due_chunk(cursor: BatchCursor, now: datetime, *, limit: int = CHUNK_MEMBERS) -> int:
    """Run the due steps of up to `limit` entries; returns the steps run. The chunk's
    members are locked in one statement (ascending id), then their due entries in another;
    messages and step runs are written together at the end of the chunk."""
    rows = [
        row
        for row in db.session.execute(due_entries_query(now, limit + len(cursor.skip))).all()
        if row.id not in cursor.skip
    ][:limit]
    if not rows:
        return 0
    cursor.handled += len(rows)
    members = lock_current_members({row.member_id for row in rows})
    entries = db.session.scalars(
        sa.select(JourneyEntry)
        .where(any_of(JourneyEntry.id, [row.id for row in rows]))
        .order_by(JourneyEntry.id)
        .with_for_update()
        .execution_options(populate_existing=True)
    ).all()
    due = []
    for entry in entries:
        if entry.status != "active" or entry.next_run_at is None or entry.next_run_at > now:
            continue
        member = members.get(entry.member_id)
        if member is None:  # a merge moved it since the due read: the next run takes it
            cursor.skip.add(entry.id)
            continue
        if member.status != MemberStatus.ACTIVE.value:
            _end(entry, "exited", f"member {member.status}", now)
            continue
        entry.member_id = member.id  # a merge moved the person: runs act on the survivor
        due.append(entry)
    chunk = _Chunk(due, now)
    ran: dict[int, int] = dict.fromkeys((entry.id for entry in due), 0)
    # In rounds, one step of every due entry per round, so the round's coupon steps are
    # issued together (one batch per offer and store set) while each entry's steps still
    # run in their order (a message after a coupon step carries the code).
    pending = sorted(due, key=lambda e: (e.member_id, e.id))
    while pending:
        later, coupons = [], []
        for entry in pending:
            steps = chunk.steps(entry.journey_id, entry.version)
            index = entry.step_index
            if (
                index < len(steps)
                and steps[index]["type"] == "coupon"
                and (entry.id, index) not in chunk.recorded
            ):
                coupons.append(entry)
                continue
            ran[entry.id] += _step(entry, steps, now, chunk)
            if _is_due(entry, now):
                later.append(entry)
        for entry, result in _issue_coupons(coupons, chunk, now):
            steps = chunk.steps(entry.journey_id, entry.version)
            ran[entry.id] += _step(entry, steps, now, chunk, result=result)
            if _is_due(entry, now):
                later.append(entry)
        pending = sorted(later, key=lambda e: (e.member_id, e.id))
    chunk.finish()
    for entry in due:
        if ran[entry.id] == 0 and entry.status == "active":
            cursor.skip.add(entry.id)
    return sum(ran.values())


def advance_entry(entry: JourneyEntry, now: datetime, *, chunk: _Chunk | None = None) -> int:
    """Run the entry's steps that are due at `now`, in order. The caller holds the member's
    lock and the entry's. Returns how many steps ran. Without a chunk, the entry is a chunk
    of its own (written before returning)."""
    own = chunk is None
    chunk = chunk if chunk is not None else _Chunk([entry], now)
    steps = chunk.steps(entry.journey_id, entry.version)
    ran = 0
    while _is_due(entry, now):
        ran += _step(entry, steps, now, chunk)
    if own:
        chunk.finish()
    return ran


def _is_due(entry: JourneyEntry, now: datetime) -> bool:
    return entry.status == "active" and entry.next_run_at is not None and entry.next_run_at <= now


StepResult = tuple[str, int | None, datetime, dict[str, Any]]


def _step(
    entry: JourneyEntry,
    steps: Sequence[Mapping[str, Any]],
    now: datetime,
    chunk: _Chunk,
    *,
    result: StepResult | None = None,
) -> int:
    """Run the entry's current step (or record `result`, computed for it in bulk) and move
    the entry on: to the next step and its time, or out. Returns the steps run (0 or 1)."""
    if entry.step_index >= len(steps):
        _end(entry, "completed", None, now)
        return 0
    scheduled = entry.next_run_at
    assert scheduled is not None
    index = entry.step_index
    next_step, next_at = _run_once(entry, index, steps[index], scheduled, now, chunk, result)
    if next_step is None or next_step >= len(steps):
        reason = "condition not met" if next_step is None else None
        step_type = steps[index]["type"]
        if step_type == "exit":
            reason = "exit step"
        _end(entry, "completed" if next_step is not None else "exited", reason, now)
        if step_type == "exit":
            entry.status = "completed"
        return 1
    entry.step_index = next_step
    entry.next_run_at = next_at
    entry.updated_at = now
    return 1


def _end(entry: JourneyEntry, status: str, reason: str | None, now: datetime) -> None:
    entry.status = status
    entry.exit_reason = reason
    entry.next_run_at = None
    entry.updated_at = now


# Steps that write in other domains and may fail with a domain error: run in a savepoint.
_MAY_FAIL = ("condition", "coupon", "points")


def _run_once(
    entry: JourneyEntry,
    index: int,
    step: Mapping[str, Any],
    scheduled: datetime,
    now: datetime,
    chunk: _Chunk,
    result: StepResult | None = None,
) -> tuple[int | None, datetime]:
    """Run the step once (its run row is the proof); a step that already ran gives back the
    recorded outcome instead of acting again. `result`: the step ran in bulk already."""
    if (entry.id, index) in chunk.recorded:
        return chunk.recorded[(entry.id, index)], scheduled
    if result is not None:
        outcome, next_step, next_at, details = result
    elif step["type"] in _MAY_FAIL:
        savepoint = db.session.begin_nested()
        try:
            outcome, next_step, next_at, details = _act(entry, index, step, scheduled, now, chunk)
            savepoint.commit()
        except OmniloyalError as error:  # a closed offer, a member gone: recorded, no loop
            savepoint.rollback()
            outcome, next_step, next_at = "failed", index + 1, scheduled
            details = {"error": error.detail}
    else:
        outcome, next_step, next_at, details = _act(entry, index, step, scheduled, now, chunk)
    chunk.record(
        {
            "entry_id": entry.id,
            "step_index": index,
            "step_type": step["type"],
            "outcome": outcome,
            "next_step": next_step,
            "details": details,
            "ran_at": now,
        }
    )
    return next_step, next_at


def _act(
    entry: JourneyEntry,
    index: int,
    step: Mapping[str, Any],
    scheduled: datetime,
    now: datetime,
    chunk: _Chunk,
) -> tuple[str, int | None, datetime, dict[str, Any]]:
    kind = step["type"]
    if kind == "wait":
        duration = timedelta(
            days=step.get("days") or 0,
            hours=step.get("hours") or 0,
            minutes=step.get("minutes") or 0,
        )
        return (
            "waited",
            index + 1,
            scheduled + duration,
            {"until": (scheduled + duration).isoformat()},
        )
    if kind == "exit":
        return "exited", None, scheduled, {}
    if kind == "condition":
        holds = condition_holds(entry, step, now)
        if holds == bool(step.get("expect", True)):
            return "passed", index + 1, scheduled, {"held": holds}
        otherwise = step.get("otherwise", "exit")
        return (
            "otherwise",
            None if otherwise == "exit" else int(otherwise),
            scheduled,
            {"held": holds},
        )
    if kind == "message":
        details = chunk.deliveries.add(
            entry.member_id,
            template=step["template"],
            channels=step["channels"],
            dedupe_key=f"journey:{entry.id}:{index}",
            variables=_message_variables(entry, step),
        )
        return details["outcome"], index + 1, scheduled, details
    if kind == "coupon":
        code_id = _issue_coupon(entry, index, step, now)
        return "issued", index + 1, scheduled, {"code_id": code_id}
    if kind == "points":
        from loyalty.ledger import operations as ledger

        tx = ledger.earn_points(
            entry.member_id,
            int(step["points"]),
            ledger.Cause("journey", f"{entry.id}:{index}"),
            now=now,
            actor=f"journey:{entry.journey_id}",
            member_locked=True,
        )
        entry.state = {**(entry.state or {}), "points": int(step["points"])}  # for a message
        return "credited", index + 1, scheduled, {"transaction_id": tx.id}
    raise InvalidInput(f"unknown step type {kind}")


def _message_variables(entry: JourneyEntry, step: Mapping[str, Any]) -> dict[str, Any]:
    variables: dict[str, Any] = {"journey_id": entry.journey_id}
    if "event_id" in step:
        variables["event_id"] = step["event_id"]
    for key in ("coupon_code", "event_id", "points"):
        if key in entry.state:
            variables[key] = entry.state[key]
    if "coupon_code" in entry.state:  # as campaign messages see it (campaign_offer)
        variables["coupon"] = {"code": entry.state["coupon_code"]}
    return variables


def _issue_coupon(entry: JourneyEntry, index: int, step: Mapping[str, Any], now: datetime) -> int:
    """One entry's coupon step (an entry advanced on its own)."""
    from campaigns.o2o import nearest_stores
    from loyalty.coupons import wallet

    store_ids = None
    if step.get("nearest_stores"):
        store_ids = nearest_stores(entry.member_id, int(step["nearest_stores"]))
    (code,) = wallet.issue_to_members(
        int(step["offer_id"]),
        [entry.member_id],
        now=now,
        actor=f"journey:{entry.journey_id}",
        source_type="journey",
        source_ref=f"journey:{entry.journey_id}:step:{index}",
        store_ids=store_ids,
    )
    _remember_code(entry, code.id, code.code)
    return code.id


def _remember_code(entry: JourneyEntry, code_id: int, code: str) -> None:
    state = dict(entry.state or {})
    state["coupon_code_ids"] = [*state.get("coupon_code_ids", []), code_id]
    state["coupon_code"] = code
    entry.state = state


def _issue_coupons(
    entries: Sequence[JourneyEntry], chunk: _Chunk, now: datetime
) -> list[tuple[JourneyEntry, StepResult]]:
    """The coupon steps of a round, issued together: one `issue_to_members` (one batch, one
    lock of the offer) per journey step, store set and distinct people, in a savepoint; a
    domain error fails that group's steps (recorded, the entries go on)."""
    from campaigns.o2o import nearest_stores
    from loyalty.coupons import wallet

    results: list[tuple[JourneyEntry, StepResult]] = []
    groups: dict[tuple[int, int, int, tuple[str, ...] | None], list[list[JourneyEntry]]] = {}
    for entry in entries:
        index = entry.step_index
        step = chunk.steps(entry.journey_id, entry.version)[index]
        assert entry.next_run_at is not None
        stores: tuple[str, ...] | None = None
        if step.get("nearest_stores"):
            try:
                stores = tuple(nearest_stores(entry.member_id, int(step["nearest_stores"])))
            except OmniloyalError as error:
                failed = ("failed", index + 1, entry.next_run_at, {"error": error.detail})
                results.append((entry, failed))
                continue
        key = (entry.journey_id, index, int(step["offer_id"]), stores)
        batches = groups.setdefault(key, [[]])
        if any(e.member_id == entry.member_id for e in batches[-1]):
            batches.append([])  # one code per person per call: a second entry, a second call
        batches[-1].append(entry)
    for (journey_id, index, offer_id, stores), batches in groups.items():
        for batch in batches:
            savepoint = db.session.begin_nested()
            try:
                codes = wallet.issue_to_members(
                    offer_id,
                    [entry.member_id for entry in batch],
                    now=now,
                    actor=f"journey:{journey_id}",
                    source_type="journey",
                    source_ref=f"journey:{journey_id}:step:{index}",
                    store_ids=list(stores) if stores is not None else None,
                )
                savepoint.commit()
            except OmniloyalError as error:
                savepoint.rollback()
                for entry in batch:
                    assert entry.next_run_at is not None
                    failed = ("failed", index + 1, entry.next_run_at, {"error": error.detail})
                    results.append((entry, failed))
                continue
            by_member = {code.member_id: code for code in codes}
            for entry in batch:
                code = by_member[entry.member_id]
                _remember_code(entry, code.id, code.code)
                assert entry.next_run_at is not None
                results.append(
                    (entry, ("issued", index + 1, entry.next_run_at, {"code_id": code.id}))
                )
    return results


def condition_holds(entry: JourneyEntry, step: Mapping[str, Any], now: datetime) -> bool:
    check = step["check"]
    person_ids = history_member_ids(entry.member_id)
    if check == "purchased_since_entry":
        from loyalty.earning.models import Order, OrderStatus

        return (
            db.session.scalar(
                sa.select(Order.id)
                .where(
                    Order.member_id.in_(person_ids),
                    Order.occurred_at >= entry.entered_at,
                    Order.status != constant(OrderStatus.CANCELLED.value),
                )
                .limit(1)
            )
            is not None
        )
    if check == "redeemed_coupon":
        from loyalty.coupons.models import CouponRedemption

        code_ids = (entry.state or {}).get("coupon_code_ids") or []
        if not code_ids:
            return False
        return (
            db.session.scalar(
                sa.select(CouponRedemption.id)
                .where(
                    CouponRedemption.code_id.in_(code_ids),
                    CouponRedemption.status == constant("redeemed"),
                )
                .limit(1)
            )
            is not None
        )
    from campaigns.compiler import people_query

    people = people_query(step["rule"], now).subquery()
    return (
        db.session.scalar(
            sa.select(people.c.member_id).where(people.c.member_id == entry.member_id)
        )
        is not None
    )


# --- reading ---


def progress(journey_id: int, member_id: int) -> list[dict[str, Any]]:
    """The person's entries in the journey (every id merged into them), with their runs."""
    get_journey(journey_id)
    ids = history_member_ids(member_id)
    entries = list(
        db.session.scalars(
            sa.select(JourneyEntry)
            .where(JourneyEntry.member_id.in_(ids), JourneyEntry.journey_id == journey_id)
            .order_by(JourneyEntry.id)
        )
    )
    runs: dict[int, list[JourneyStepRun]] = {}
    if entries:
        for run in db.session.scalars(
            sa.select(JourneyStepRun)
            .where(JourneyStepRun.entry_id.in_([e.id for e in entries]))
            .order_by(JourneyStepRun.entry_id, JourneyStepRun.step_index)
        ):
            runs.setdefault(run.entry_id, []).append(run)
    return [
        {
            "id": entry.id,
            "member_id": entry.member_id,
            "version": entry.version,
            "status": entry.status,
            "step_index": entry.step_index,
            "next_run_at": entry.next_run_at,
            "entered_at": entry.entered_at,
            "exit_reason": entry.exit_reason,
            "history": [
                {
                    "step_index": run.step_index,
                    "type": run.step_type,
                    "outcome": run.outcome,
                    "ran_at": run.ran_at,
                }
                for run in runs.get(entry.id, [])
            ],
        }
        for entry in entries
    ]


def results(journey_id: int) -> dict[str, Any]:
    """Counts: entries by status and version, each step's outcomes, and the conversion of
    the entries that went through the journey against the control group's."""
    journey = get_journey(journey_id)
    by_status = db.session.execute(
        sa.select(JourneyEntry.version, JourneyEntry.status, sa.func.count())
        .where(JourneyEntry.journey_id == journey_id)
        .group_by(JourneyEntry.version, JourneyEntry.status)
    ).all()
    by_step = db.session.execute(
        sa.select(JourneyStepRun.step_index, JourneyStepRun.outcome, sa.func.count())
        .join(JourneyEntry, JourneyEntry.id == JourneyStepRun.entry_id)
        .where(JourneyEntry.journey_id == journey_id)
        .group_by(JourneyStepRun.step_index, JourneyStepRun.outcome)
        .order_by(JourneyStepRun.step_index)
    ).all()
    entries: dict[str, int] = dict.fromkeys(ENTRY_STATUSES, 0)
    for _, status, count in by_status:
        entries[status] += count
    return {
        "journey_id": journey_id,
        "entered": sum(entries.values()),
        "held_out": entries[HELD_OUT],
        "holdout_pct": journey.holdout_pct,
        "attribution_days": journey.attribution_days,
        "attribution_rule": ATTRIBUTION_RULE,
        "conversion": conversion(journey),
        "entries": entries,
        "by_version": [
            {"version": version, "status": status, "count": count}
            for version, status, count in by_status
        ],
        "steps": [
            {"step_index": index, "outcome": outcome, "count": count}
            for index, outcome, count in by_step
        ],
    }


ATTRIBUTION_RULE = (
    "An entry converts when its person (merged ids included) places an order, not cancelled,"
    " within attribution_days of entering, net of refunds; entries held out in the control"
    " group are measured the same way from when they were held out. Every entry that went"
    " through the journey counts, messaged or not (intention to treat)."
)


def conversion(journey: Journey) -> dict[str, Any]:
    """Entries through the journey against the control group's, in one read: per entry,
    its person's orders within the window; then per group the entries, those converted
    and their revenue. The figures and interval are the campaigns' (comparable)."""
    from campaigns.results import conversion_against_control, plus_days
    from loyalty.earning.models import Order

    entries, orders = JourneyEntry.__table__, Order.__table__
    held = sa.case((entries.c.status == constant(HELD_OUT), 1), else_=0).label("held")
    per_entry = (
        sa.select(
            held,
            sa.func.count(orders.c.id).label("orders"),
            sa.func.coalesce(sa.func.sum(orders.c.total_minor - orders.c.refunded_minor), 0).label(
                "revenue"
            ),
        )
        .select_from(
            entries.outerjoin(
                orders,
                sa.and_(
                    orders.c.member_id == entries.c.member_id,
                    orders.c.occurred_at >= entries.c.entered_at,
                    orders.c.occurred_at
                    < plus_days(entries.c.entered_at, journey.attribution_days),
                    orders.c.status != "cancelled",
                ),
            )
        )
        .where(entries.c.journey_id == journey.id)
        .group_by(entries.c.id, entries.c.status)
        .subquery()
    )
    rows = db.session.execute(
        sa.select(
            per_entry.c.held,
            sa.func.count(),
            sa.func.coalesce(sa.func.sum(sa.case((per_entry.c.orders > 0, 1), else_=0)), 0),
            sa.func.coalesce(sa.func.sum(per_entry.c.revenue), 0),
        ).group_by(per_entry.c.held)
    ).all()
    groups = {bool(h): (int(n), int(converted), int(revenue)) for h, n, converted, revenue in rows}
    treated = groups.get(False, (0, 0, 0))
    control = groups.get(True, (0, 0, 0))
    return conversion_against_control(*treated, *control)


def member_journeys(member_id: int, *, limit: int = 20) -> list[dict[str, Any]]:
    """The person's newest journey entries (every id merged into them included), with the
    journey's name and the step the entry is at: a bounded read of ix_journey_entries_member
    (one index range per id of the person)."""
    rows = db.session.execute(member_entries_query(history_member_ids(member_id), limit)).all()
    steps: dict[tuple[int, int], list[dict[str, Any]]] = {}
    found = []
    for entry, name in rows:
        key = (entry.journey_id, entry.version)
        if key not in steps:
            steps[key] = steps_of(*key)
        at = steps[key][entry.step_index] if entry.step_index < len(steps[key]) else None
        found.append(
            {
                "entry_id": entry.id,
                "journey_id": entry.journey_id,
                "journey": name,
                "version": entry.version,
                "status": entry.status,
                "step_index": entry.step_index,
                "steps": len(steps[key]),
                "step": at,
                "entered_at": entry.entered_at,
                "next_run_at": entry.next_run_at,
                "exit_reason": entry.exit_reason,
            }
        )
    return found


def member_entries_query(person_ids: Sequence[int], limit: int) -> sa.Select[Any]:
    return (
        sa.select(JourneyEntry, Journey.name)
        .join(Journey, Journey.id == JourneyEntry.journey_id)
        .where(JourneyEntry.member_id.in_(list(person_ids)))
        .order_by(JourneyEntry.entered_at.desc(), JourneyEntry.id.desc())
        .limit(limit)
    )


def entries_per_step_query(journey_ids: Sequence[int]) -> sa.Select[Any]:
    return (
        sa.select(
            JourneyEntry.journey_id, JourneyEntry.status, JourneyEntry.step_index, sa.func.count()
        )
        .where(JourneyEntry.journey_id.in_(list(journey_ids)))
        .group_by(JourneyEntry.journey_id, JourneyEntry.status, JourneyEntry.step_index)
    )


def entries_per_step(journey_ids: Sequence[int]) -> dict[int, dict[str, Any]]:
    """Per journey: entries by status, and the active ones by the step they wait at (an
    index-only read of ix_journey_entries_step)."""
    counts: dict[int, dict[str, Any]] = {
        journey_id: {**dict.fromkeys(ENTRY_STATUSES, 0), "at_step": {}}
        for journey_id in journey_ids
    }
    if not journey_ids:
        return counts
    rows = db.session.execute(entries_per_step_query(journey_ids)).all()
    for journey_id, status, step_index, count in rows:
        counts[journey_id][status] += count
        if status == "active":
            at = counts[journey_id]["at_step"]
            at[step_index] = at.get(step_index, 0) + count
    return counts
