"""Segments built with a form: conditions as rows (attribute, operator, value), a live
count and sample while editing, and the RFM grid at a glance."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from flask import flash, redirect, request, url_for
from flask_babel import gettext as _
from flask_login import current_user

from loyalty.clock import utcnow
from loyalty.dashboard.access import needs
from loyalty.dashboard.blueprint import bp, render
from loyalty.dashboard.edge import Refused, change
from loyalty.dashboard.roles import Permission
from loyalty.db import db
from loyalty.errors import InvalidInput, OmniloyalError

MAX_ROWS = 8
LIST_OPERATORS = {"in", "not_in", "contains_any", "contains_all", "contains_none"}


def _number(raw: str) -> int | float:
    try:
        return int(raw)
    except ValueError:
        return float(raw)


def _value(attribute: Any, operator: str, raw: str) -> Any:
    from campaigns.attributes import AttributeType

    raw = raw.strip()
    if operator in ("is_null", "is_not_null"):
        return None
    kind = attribute.type
    if kind == AttributeType.BOOLEAN:
        return raw.lower() in ("true", "yes", "1", "on")
    if operator in LIST_OPERATORS:
        items = [item.strip() for item in raw.split(",") if item.strip()]
        return [_number(i) for i in items] if kind == AttributeType.NUMBER else items
    if operator == "between":
        low, _sep, high = raw.replace(",", "-", 1).partition("-")
        return [_number(low), _number(high)]
    if operator in ("within_last_days", "more_than_days_ago"):
        return int(raw)
    if kind == AttributeType.NUMBER:
        return _number(raw)
    return raw


def rule_from_form(form: Any) -> dict[str, Any]:
    """The rule tree the form describes; InvalidInput naming the row at fault."""
    from campaigns import attributes

    conditions = []
    for n in range(MAX_ROWS):
        name = form.get(f"field_{n}", "").strip()
        if not name:
            continue
        attribute = attributes.get(name)
        operator = form.get(f"op_{n}", "").strip()
        if attribute is None:
            raise InvalidInput(_("Row %(n)s: unknown attribute.", n=n + 1), field=f"field_{n}")
        condition: dict[str, Any] = {"field": name, "op": operator}
        try:
            value = _value(attribute, operator, form.get(f"value_{n}", ""))
        except ValueError:
            raise InvalidInput(
                _("Row %(n)s: the value is not valid for this attribute.", n=n + 1),
                field=f"value_{n}",
            ) from None
        if value is not None:
            condition["value"] = value
        days = form.get(f"days_{n}", "").strip()
        if days.isdigit() and "within_days" in attribute.options:
            condition["within_days"] = int(days)
        if form.get(f"negate_{n}") == "on":
            conditions.append({"not": condition})
        else:
            conditions.append(condition)
    if not conditions:
        raise InvalidInput(_("Add at least one condition."), field="field_0")
    combinator = "or" if form.get("match") == "any" else "and"
    return {combinator: conditions}


def rows_from_rule(rule: dict[str, Any] | None) -> tuple[str, list[dict[str, Any]]]:
    """The form's rows for a stored rule made by this form (other shapes: shown as JSON)."""
    if not rule:
        return "all", []
    match = "any" if "or" in rule else "all"
    rows = []
    for node in rule.get("or") or rule.get("and") or []:
        negate = "not" in node
        leaf = node["not"] if negate else node
        if "field" not in leaf:
            continue
        value = leaf.get("value")
        if isinstance(value, list):
            value = ("-" if leaf.get("op") == "between" else ", ").join(map(str, value))
        rows.append(
            {
                "field": leaf["field"],
                "op": leaf.get("op"),
                "value": ""
                if value is None
                else str(value).lower()
                if isinstance(value, bool)
                else str(value),
                "days": leaf.get("within_days", ""),
                "negate": negate,
            }
        )
    return match, rows


def _preview(rule: dict[str, Any]) -> dict[str, Any]:
    from campaigns import segments
    from campaigns.compiler import compile_rule

    query = compile_rule(rule, utcnow())
    return {"count": segments.count(query), "sample": segments.sample(query, limit=10)}


def rfm_grid() -> list[list[int]]:
    """People per (recency, frequency) quintile, 5 best: one grouped read of the profiles."""
    from campaigns.models import MemberProfile as P

    grid = [[0] * 5 for _ in range(5)]
    for r, f, n in db.session.execute(
        sa.select(P.rfm_recency, P.rfm_frequency, sa.func.count())
        .where(P.rfm_recency.is_not(None), P.rfm_frequency.is_not(None))
        .group_by(P.rfm_recency, P.rfm_frequency)
    ).all():
        if 1 <= r <= 5 and 1 <= f <= 5:
            grid[5 - r][f - 1] = n
    return grid


def _attributes() -> list[dict[str, Any]]:
    from campaigns import attributes

    return [a.as_dict() for a in attributes.all_attributes()]


@bp.route("/segments")
@needs(Permission.VIEW)
def segments() -> Any:
    from campaigns import segments as segment_ops

    return render(
        "segments.html",
        segments=segment_ops.list_segments(after_id=None, limit=200),
        rfm=rfm_grid(),
    )


@bp.route("/segments/preview", methods=["POST"])
@needs(Permission.VIEW)
def segment_preview() -> Any:
    """The live count and sample (an HTML fragment the page's script swaps in)."""
    try:
        preview = _preview(rule_from_form(request.form))
        return render("_segment_preview.html", **preview)
    except OmniloyalError as error:
        return render("_segment_preview.html", error=error.detail), 422


@bp.route("/segments/new", methods=["GET", "POST"])
@bp.route("/segments/<int:segment_id>", methods=["GET", "POST"])
@needs(Permission.VIEW)
def segment(segment_id: int | None = None) -> Any:
    from campaigns import segments as segment_ops

    if request.method == "POST" and not _may_write():
        return render("error.html", status=403), 403
    existing = segment_ops.get_segment(segment_id) if segment_id is not None else None
    match, rows = rows_from_rule(existing.rule if existing else None)
    preview = error = None
    if request.method == "POST":
        try:
            rule = rule_from_form(request.form)
            name = request.form.get("name", "").strip()[:200]
            if not name:
                raise InvalidInput(_("Give the segment a name."), field="name")
            data = {
                "name": name,
                "description": request.form.get("description", "").strip()[:1000] or None,
                "kind": "dynamic",
                "rule": rule,
            }
            if existing is None:
                created = change(
                    "segments.create",
                    lambda: segment_ops.create_segment(
                        data, now=utcnow(), actor=current_user.actor
                    ),
                    target_type="segment",
                    after_target=lambda s: s.id,
                )
                flash(_("Segment saved."), "ok")
                return redirect(url_for("dashboard.segment", segment_id=created.id))
            changes = {k: data[k] for k in ("name", "description", "rule")}
            change(
                "segments.update",
                lambda: segment_ops.update_segment(existing.id, changes, now=utcnow()),
                target_type="segment",
                target_id=existing.id,
            )
            flash(_("Segment saved."), "ok")
            return redirect(url_for("dashboard.segment", segment_id=existing.id))
        except InvalidInput as problem:
            error = problem.detail
            match, rows = request.form.get("match", "all"), _rows_of(request.form)
        except Refused:
            match, rows = request.form.get("match", "all"), _rows_of(request.form)
    elif existing is not None and existing.rule:
        try:
            preview = _preview(existing.rule)
        except OmniloyalError as problem:
            error = problem.detail
    return render(
        "segment.html",
        segment=existing,
        match=match,
        rows=rows + [{}] * max(1, 3 - len(rows)),
        attributes=_attributes(),
        preview=preview,
        error=error,
    )


def _may_write() -> bool:
    from loyalty.dashboard.roles import allows

    return allows(current_user.role, Permission.SEGMENTS_WRITE)


def _rows_of(form: Any) -> list[dict[str, Any]]:
    return [
        {
            "field": form.get(f"field_{n}", ""),
            "op": form.get(f"op_{n}", ""),
            "value": form.get(f"value_{n}", ""),
            "days": form.get(f"days_{n}", ""),
            "negate": form.get(f"negate_{n}") == "on",
        }
        for n in range(MAX_ROWS)
        if form.get(f"field_{n}")
    ]
