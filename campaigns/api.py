"""Segments HTTP API: attributes, segments CRUD, live count, sample, CSV export, static
snapshots and uploads. Marketers' and analysts' keys: `segments:read`, `segments:write`."""

from __future__ import annotations

from typing import Any

from flask import Response, stream_with_context

from campaigns import attributes, segments
from campaigns.compiler import check, people_query
from campaigns.schemas import (
    AttributeSchema,
    CountSchema,
    PreviewResultSchema,
    SampleQuery,
    SampleSchema,
    SegmentCreateSchema,
    SegmentPreviewSchema,
    SegmentSchema,
    SegmentUpdateSchema,
    SnapshotSchema,
    UploadReportSchema,
    UploadSchema,
)
from loyalty.api import Blueprint
from loyalty.auth import scopes
from loyalty.auth.context import current_caller, requires
from loyalty.clock import utcnow
from loyalty.http import write_endpoint
from loyalty.pagination import PageQuery, int_cursor, page, page_of, page_schema

blp = Blueprint("segments", __name__, description="Segments: target members by rules")
API_KEY = [{"ApiKey": []}]


@blp.route("/segments/attributes")
@blp.doc(security=API_KEY)
@requires(scopes.SEGMENTS_READ)
@blp.arguments(PageQuery, location="query")
@blp.response(200, page_schema(AttributeSchema))
def list_attributes(query: dict[str, Any]) -> Any:
    """Every attribute a rule can test: its type, operators, options and known values,
    by name."""
    return page_of(
        [attribute.as_dict() for attribute in attributes.all_attributes()],
        cursor=query["cursor"],
        limit=query["limit"],
        key=lambda attribute: attribute["name"],
    )


@blp.route("/segments/preview", methods=["POST"])
@blp.doc(security=API_KEY)
@requires(scopes.SEGMENTS_READ)
@blp.arguments(SegmentPreviewSchema)
@blp.response(200, PreviewResultSchema)
def preview_segment(data: dict[str, Any]) -> Any:
    """Count and sample a rule while it is edited (nothing saved). A read: no
    Idempotency-Key."""
    check(data["rule"])
    now = utcnow()
    query = people_query(data["rule"], now)
    sample = segments.sample(query, limit=data["sample_size"]) if data["sample_size"] else []
    return {"count": segments.count(query), "evaluated_at": now, "sample": sample}


@blp.route("/segments")
@blp.doc(security=API_KEY)
@requires(scopes.SEGMENTS_READ)
@blp.arguments(PageQuery, location="query")
@blp.response(200, page_schema(SegmentSchema))
def list_segments(query: dict[str, Any]) -> Any:
    """The saved segments, by id."""
    rows = segments.list_segments(after_id=int_cursor(query["cursor"]), limit=query["limit"] + 1)
    return page(rows, query["limit"], key=lambda segment: segment.id)


@blp.route("/segments", methods=["POST"])
@blp.doc(security=API_KEY)
@requires(scopes.SEGMENTS_WRITE)
@write_endpoint()
@blp.arguments(SegmentCreateSchema)
@blp.response(201, SegmentSchema)
def create_segment(data: dict[str, Any]) -> Any:
    """A dynamic segment (evaluated when used) or a static one (a snapshot of the rule
    now, or empty until a CSV is uploaded)."""
    return segments.create_segment(data, now=utcnow(), actor=current_caller().actor)


@blp.route("/segments/<int:segment_id>")
@blp.doc(security=API_KEY)
@requires(scopes.SEGMENTS_READ)
@blp.response(200, SegmentSchema)
def get_segment(segment_id: int) -> Any:
    """One segment: its rule, kind and version."""
    return segments.get_segment(segment_id)


@blp.route("/segments/<int:segment_id>", methods=["PATCH"])
@blp.doc(security=API_KEY)
@requires(scopes.SEGMENTS_WRITE)
@write_endpoint()
@blp.arguments(SegmentUpdateSchema)
@blp.response(200, SegmentSchema)
def update_segment(data: dict[str, Any], segment_id: int) -> Any:
    """Rename or change the rule (the version goes up when the rule changes)."""
    return segments.update_segment(segment_id, data, now=utcnow())


@blp.route("/segments/<int:segment_id>", methods=["DELETE"])
@blp.doc(security=API_KEY)
@requires(scopes.SEGMENTS_WRITE)
@write_endpoint()
@blp.response(204)
def delete_segment(segment_id: int) -> None:
    """Delete a segment (a static one's people with it). A segment a campaign or journey
    names as its audience is kept: 409 naming them."""
    segments.delete_segment(segment_id)


@blp.route("/segments/<int:segment_id>/count")
@blp.doc(security=API_KEY)
@requires(scopes.SEGMENTS_READ)
@blp.response(200, CountSchema)
def count_segment(segment_id: int) -> Any:
    """How many active people are in the segment now (one query)."""
    now = utcnow()
    query = segments.audience(segments.get_segment(segment_id), now)
    return {"count": segments.count(query), "evaluated_at": now}


@blp.route("/segments/<int:segment_id>/sample")
@blp.doc(security=API_KEY)
@requires(scopes.SEGMENTS_READ)
@blp.arguments(SampleQuery, location="query")
@blp.response(200, SampleSchema)
def sample_segment(query: dict[str, Any], segment_id: int) -> Any:
    """A few people of the segment, lowest ids first (ids and aggregates, no contact
    details). A sample, not a list: every member is in the CSV export."""
    audience = segments.audience(segments.get_segment(segment_id), utcnow())
    return {"members": segments.sample(audience, limit=query["size"])}


@blp.route("/segments/<int:segment_id>/export.csv")
@blp.doc(security=API_KEY, responses={"200": {"description": "text/csv: member_id per line"}})
@requires(scopes.SEGMENTS_READ)
def export_segment(segment_id: int) -> Any:
    """Every member id of the segment now, as CSV (streamed in id-ordered chunks)."""
    audience = segments.audience(segments.get_segment(segment_id), utcnow())
    return Response(
        stream_with_context(segments.export_rows(audience)),
        mimetype="text/csv",
        headers={"Content-Disposition": f'attachment; filename="segment-{segment_id}.csv"'},
    )


@blp.route("/segments/<int:segment_id>/snapshot", methods=["POST"])
@blp.doc(security=API_KEY)
@requires(scopes.SEGMENTS_WRITE)
@write_endpoint()
@blp.response(200, SnapshotSchema)
def snapshot_segment(segment_id: int) -> Any:
    """Retake a static segment's snapshot of its rule (its people become those matching
    now)."""
    now = utcnow()
    segment = segments.get_segment(segment_id)
    return {"count": segments.snapshot(segment, now=now), "snapshot_at": now}


@blp.route("/segments/<int:segment_id>/upload", methods=["POST"])
@blp.doc(security=API_KEY)
@requires(scopes.SEGMENTS_WRITE)
@write_endpoint()
@blp.arguments(UploadSchema)
@blp.response(200, UploadReportSchema)
def upload_segment(data: dict[str, Any], segment_id: int) -> Any:
    """Add (or, with `replace`, set) a static segment's people from CSV identities; the
    answer reports every row that matched no active member."""
    report = segments.upload(
        segment_id,
        data["csv"],
        now=utcnow(),
        replace=data["replace"],
        default_region=data["default_region"],
    )
    return report.as_dict()


def _register_member_hooks() -> None:
    from campaigns.privacy import (
        erase_member_targeting,
        export_member_targeting,
        merge_member_targeting,
    )
    from campaigns.segments import merge_segment_memberships
    from loyalty.members import merge, privacy

    merge.register_merge_step(merge_segment_memberships)
    merge.register_merge_step(merge_member_targeting, after=True)
    privacy.register_erase_step("campaigns", erase_member_targeting)
    privacy.register_export_section("targeting", export_member_targeting)


_register_member_hooks()
