"""Segments: saved rules (dynamic) or fixed lists of people (static), and what campaigns
read from them.

- A dynamic segment keeps its rule and is evaluated whenever it is used (count, sample,
  export, a campaign's launch): `audience(segment, now)` is one SELECT of person ids.
- A static segment holds people (`segment_members`): a snapshot of a rule taken at a
  moment, or identities uploaded as CSV (with a report of the rows that matched nobody).
  Its ids are read through the merge rule, so a member merged since counts as the
  survivor, and people no longer active drop out.

A campaign snapshots its audience with `INSERT ... SELECT` from `audience(...)` in its own
transaction: one statement, no ids through Python.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from campaigns import compiler
from campaigns.models import MemberProfile, Segment, SegmentKind, SegmentMember
from loyalty.db import constant, db
from loyalty.errors import Conflict, InvalidInput, NotFound
from loyalty.members.identities import normalise
from loyalty.members.models import IdentityKind, Member, MemberIdentity, MemberStatus

SAMPLE_MAX = 100
UPLOAD_MAX_ROWS = 1_000_000
IDENTITY_COLUMNS = ("member_id", *(kind.value for kind in IdentityKind))

members = Member.__table__
segment_members = SegmentMember.__table__


# --- CRUD ------------------------------------------------------------------------------------


def create_segment(data: dict[str, Any], *, now: datetime, actor: str) -> Segment:
    """A dynamic segment needs a rule; a static one with a rule is snapshotted now, one
    without starts empty (upload a CSV)."""
    kind = data["kind"]
    rule = data.get("rule")
    if kind == SegmentKind.DYNAMIC and rule is None:
        raise InvalidInput("a dynamic segment needs a rule", field="rule")
    if rule is not None:
        compiler.check(rule)
    segment = Segment(
        name=data["name"],
        description=data.get("description"),
        kind=kind,
        rule=rule,
        version=1,
        created_by=actor,
        created_at=now,
        updated_at=now,
    )
    db.session.add(segment)
    db.session.flush()
    if kind == SegmentKind.STATIC and rule is not None:
        snapshot(segment, now=now)
    return segment


def get_segment(segment_id: int) -> Segment:
    segment = db.session.get(Segment, segment_id)
    if segment is None:
        raise NotFound(f"no segment {segment_id}")
    return segment


def list_segments(*, after_id: int | None, limit: int) -> list[Segment]:
    query = sa.select(Segment).order_by(Segment.id).limit(limit)
    if after_id is not None:
        query = query.where(Segment.id > after_id)
    return list(db.session.scalars(query))


def update_segment(segment_id: int, changes: dict[str, Any], *, now: datetime) -> Segment:
    """Rename, describe or change the rule (a new version). A static segment's people
    change only through `snapshot` or an upload, never as a side effect of an edit."""
    segment = _lock(segment_id)
    if "rule" in changes:
        rule = changes["rule"]
        if rule is None and segment.kind == SegmentKind.DYNAMIC:
            raise InvalidInput("a dynamic segment needs a rule", field="rule")
        if rule is not None:
            compiler.check(rule)
        if rule != segment.rule:
            segment.rule = rule
            segment.version += 1
    for name in ("name", "description"):
        if name in changes:
            setattr(segment, name, changes[name])
    segment.updated_at = now
    db.session.flush()
    return segment


def delete_segment(segment_id: int) -> None:
    """Delete a segment no campaign or journey names as its audience (409 otherwise:
    their runs, entries and results point at it)."""
    from campaigns.engine_models import Campaign
    from campaigns.journey_models import Journey

    segment = _lock(segment_id)
    campaign_ids = list(
        db.session.scalars(
            sa.select(Campaign.id).where(Campaign.segment_id == segment.id).order_by(Campaign.id)
        )
    )
    journey_ids = list(
        db.session.scalars(
            sa.select(Journey.id).where(Journey.segment_id == segment.id).order_by(Journey.id)
        )
    )
    if campaign_ids or journey_ids:
        raise Conflict(
            f"segment {segment.id} is the audience of campaigns {campaign_ids} and journeys "
            f"{journey_ids}; it can't be deleted",
            campaign_ids=campaign_ids,
            journey_ids=journey_ids,
        )
    db.session.execute(sa.delete(segment_members).where(segment_members.c.segment_id == segment.id))
    db.session.delete(segment)
    db.session.flush()


def _lock(segment_id: int) -> Segment:
    segment = db.session.scalar(
        sa.select(Segment).where(Segment.id == segment_id).with_for_update()
    )
    if segment is None:
        raise NotFound(f"no segment {segment_id}")
    return segment


# --- who is in it ----------------------------------------------------------------------------


def audience(segment: Segment, now: datetime) -> sa.Select[Any]:
    """SELECT member_id: the active people in the segment now (one query, no duplicates).
    Dynamic: the rule compiled; static: its ids resolved through the merge rule."""
    if segment.kind == SegmentKind.DYNAMIC:
        assert segment.rule is not None
        return compiler.compile_rule(segment.rule, now)
    return static_people(segment.id)


def static_people(segment_id: int) -> sa.Select[Any]:
    listed = members.alias("listed")
    person = sa.func.coalesce(listed.c.merged_into_id, listed.c.id)
    return sa.select(members.c.id.label("member_id")).where(
        members.c.status == constant(MemberStatus.ACTIVE.value),
        sa.exists().where(
            segment_members.c.segment_id == segment_id,
            listed.c.id == segment_members.c.member_id,
            person == members.c.id,
        ),
    )


def count(query: sa.Select[Any]) -> int:
    return db.session.scalar(sa.select(sa.func.count()).select_from(query.subquery())) or 0


def sample(query: sa.Select[Any], *, limit: int) -> list[dict[str, Any]]:
    """A few people of the audience with their headline aggregates (ids and figures only,
    no contact details), lowest ids first so the sample is stable while editing."""
    people = query.order_by(None).subquery()
    profile = MemberProfile.__table__
    rows = db.session.execute(
        sa.select(
            people.c.member_id,
            members.c.tier_id,
            members.c.region,
            profile.c.points_balance,
            profile.c.orders_lifetime,
            profile.c.spend_lifetime_minor,
            profile.c.last_order_at,
        )
        .select_from(
            people.join(members, members.c.id == people.c.member_id).outerjoin(
                profile, profile.c.person_id == people.c.member_id
            )
        )
        .order_by(people.c.member_id)
        .limit(min(limit, SAMPLE_MAX))
    ).all()
    return [
        {
            "member_id": row.member_id,
            "region": row.region,
            "points_balance": row.points_balance or 0,
            "orders_lifetime": row.orders_lifetime or 0,
            "spend_lifetime_minor": row.spend_lifetime_minor or 0,
            "last_order_at": row.last_order_at,
        }
        for row in rows
    ]


def export_rows(query: sa.Select[Any], *, chunk: int = 5000) -> Iterator[str]:
    """CSV text of the audience's member ids, in id order, read in keyset chunks (the
    query is re-run per chunk with `member_id > last`, so no cursor stays open)."""
    people = query.subquery()
    yield "member_id\r\n"
    after = 0
    while True:
        ids = list(
            db.session.scalars(
                sa.select(people.c.member_id)
                .where(people.c.member_id > after)
                .order_by(people.c.member_id)
                .limit(chunk)
            )
        )
        if not ids:
            return
        yield "".join(f"{member_id}\r\n" for member_id in ids)
        after = ids[-1]


# --- static segments -------------------------------------------------------------------------


def snapshot(segment: Segment, *, now: datetime) -> int:
    """Replace a static segment's people with its rule's audience now (one INSERT ...
    SELECT). Returns how many people it holds."""
    if segment.kind != SegmentKind.STATIC:
        raise Conflict("only a static segment takes a snapshot")
    if segment.rule is None:
        raise Conflict("this static segment has no rule to snapshot (it was uploaded)")
    people = compiler.compile_rule(segment.rule, now).subquery()
    db.session.execute(sa.delete(segment_members).where(segment_members.c.segment_id == segment.id))
    db.session.execute(
        sa.insert(segment_members).from_select(
            ["segment_id", "member_id"],
            sa.select(sa.literal(segment.id, sa.BigInteger()), people.c.member_id),
        )
    )
    segment.snapshot_at = now
    segment.updated_at = now
    db.session.flush()
    return count(static_people(segment.id))


@dataclass
class UploadReport:
    rows: int = 0
    matched: int = 0
    added: int = 0
    unmatched: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "rows": self.rows,
            "matched": self.matched,
            "added": self.added,
            "unmatched_count": len(self.unmatched),
            "unmatched": self.unmatched[:1000],
        }


def upload(
    segment_id: int,
    text: str,
    *,
    now: datetime,
    replace: bool,
    default_region: str | None = None,
) -> UploadReport:
    """Add the people a CSV names to a static segment (or replace its people).

    The header names one identity column: member_id, phone, email, card or app_user. Each
    row is matched to the person who holds that identity now (a merged member's id counts
    as its survivor); a row that matches nobody active is reported with its line number and
    reason, never silently dropped.
    """
    segment = _lock(segment_id)
    if segment.kind != SegmentKind.STATIC:
        raise Conflict("only a static segment takes an upload")
    reader = csv.reader(io.StringIO(text))
    header = [name.strip().lower() for name in next(reader, [])]
    column = next((name for name in header if name in IDENTITY_COLUMNS), None)
    if column is None:
        raise InvalidInput(f"the CSV header names one of {list(IDENTITY_COLUMNS)}", field="csv")
    position = header.index(column)
    report = UploadReport()
    wanted: dict[str, list[int]] = {}
    for line, row in enumerate(reader, start=2):
        if not row or all(not cell.strip() for cell in row):
            continue
        report.rows += 1
        if report.rows > UPLOAD_MAX_ROWS:
            raise InvalidInput(f"at most {UPLOAD_MAX_ROWS} rows per upload", field="csv")
        raw = row[position].strip() if position < len(row) else ""
        key, problem = _canonical(column, raw, default_region)
        if problem:
            report.unmatched.append({"line": line, "value": raw[:100], "reason": problem})
            continue
        wanted.setdefault(key, []).append(line)
    people = _people_for(column, list(wanted))
    if replace:
        db.session.execute(
            sa.delete(segment_members).where(segment_members.c.segment_id == segment.id)
        )
    found: set[int] = set()
    for key, line_numbers in wanted.items():
        person = people.get(key)
        if person is None:
            for line in line_numbers:
                report.unmatched.append(
                    {"line": line, "value": key[:100], "reason": "no active member"}
                )
            continue
        report.matched += len(line_numbers)
        found.add(person)
    report.unmatched.sort(key=lambda item: item["line"])
    existing = set(
        db.session.scalars(
            sa.select(segment_members.c.member_id).where(segment_members.c.segment_id == segment.id)
        )
    )
    new = sorted(found - existing)
    if new:
        db.session.execute(
            sa.insert(segment_members), [{"segment_id": segment.id, "member_id": m} for m in new]
        )
    report.added = len(new)
    segment.snapshot_at = now
    segment.updated_at = now
    db.session.flush()
    return report


def _canonical(column: str, raw: str, default_region: str | None) -> tuple[str, str | None]:
    if not raw:
        return "", "empty"
    if column == "member_id":
        return (raw, None) if raw.isdigit() and len(raw) <= 18 else ("", "not a member id")
    try:
        return normalise(column, raw, default_region=default_region), None
    except InvalidInput as error:
        return "", error.detail


def _people_for(column: str, keys: list[str]) -> dict[str, int]:
    """key -> the active person holding it now, in chunks of 5,000 keys."""
    result: dict[str, int] = {}
    owner = members.alias("owner")
    for start in range(0, len(keys), 5000):
        chunk = keys[start : start + 5000]
        if column == "member_id":
            source = sa.select(owner.c.id.label("key"), owner.c.id.label("member_id")).where(
                owner.c.id.in_([int(key) for key in chunk])
            )
        else:
            identities = MemberIdentity.__table__
            source = sa.select(
                identities.c.value.label("key"), identities.c.member_id.label("member_id")
            ).where(identities.c.kind == column, identities.c.value.in_(chunk))
        found = source.subquery()
        listed = members.alias("listed")
        rows = db.session.execute(
            sa.select(found.c.key, members.c.id)
            .select_from(
                found.join(listed, listed.c.id == found.c.member_id).join(
                    members,
                    members.c.id == sa.func.coalesce(listed.c.merged_into_id, listed.c.id),
                )
            )
            .where(members.c.status == constant(MemberStatus.ACTIVE.value))
        ).all()
        result.update({str(key): person for key, person in rows})
    return result


def merge_segment_memberships(merged_id: int, survivor_id: int, _now: datetime) -> dict[str, Any]:
    """Merge step: the merged member's static segment memberships name the survivor; a
    segment that lists both keeps one row."""
    table = segment_members
    both = sa.select(table.c.segment_id).where(table.c.member_id == survivor_id)
    dropped = db.session.execute(
        sa.delete(table).where(table.c.member_id == merged_id, table.c.segment_id.in_(both))
    ).rowcount
    moved = db.session.execute(
        sa.update(table).where(table.c.member_id == merged_id).values(member_id=survivor_id)
    ).rowcount
    return {"segment_memberships_moved": moved or 0, "duplicates_dropped": dropped or 0}
