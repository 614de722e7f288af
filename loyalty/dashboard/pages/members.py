"""Support's pages: find a member, their profile, adjust points, merge, export, erase."""

from __future__ import annotations

import json
from typing import Any

import sqlalchemy as sa
from flask import Response, abort, flash, redirect, request, url_for
from flask_babel import gettext as _
from flask_login import current_user

from loyalty.clock import utcnow
from loyalty.dashboard.access import needs
from loyalty.dashboard.blueprint import bp, render
from loyalty.dashboard.edge import Refused, change, record_event
from loyalty.dashboard.roles import Permission
from loyalty.db import db
from loyalty.errors import OmniloyalError
from loyalty.members.models import IdentityKind, Member

MAX_ADJUSTMENT = 1_000_000
JOURNEYS_SHOWN = 10  # the newest entries; the journey's page has the counts


def find_members(text: str) -> list[Member]:
    """By member id, or any identity (email, phone, card, app user id), following merges:
    each candidate is one indexed look-up."""
    from loyalty.members.operations import find_member_by_identity

    text = text.strip()
    found: dict[int, Member] = {}
    if text.lstrip("#").isdigit() and len(text) < 19:
        member = db.session.get(Member, int(text.lstrip("#")))
        if member is not None:
            found[member.id] = member
    for kind in IdentityKind:
        try:
            member = find_member_by_identity(kind.value, text)
        except OmniloyalError:
            continue  # not a valid value of this kind (a phone that isn't one)
        if member is not None:
            found[member.id] = member
    return list(found.values())


@bp.route("/members")
@needs(Permission.VIEW)
def members() -> Any:
    query = request.args.get("q", "").strip()[:200]
    results = find_members(query) if query else []
    if len(results) == 1 and request.args.get("go") != "0":
        return redirect(url_for("dashboard.member", member_id=results[0].id))
    return render("members.html", query=query, results=results)


def _member_or_404(member_id: int) -> Member:
    member = db.session.get(Member, member_id)
    if member is None:
        abort(404)
    return member


def profile_data(member: Member) -> dict[str, Any]:
    from campaigns.journeys import member_journeys
    from loyalty.coupons.wallet import member_wallet
    from loyalty.earning.models import Order
    from loyalty.ledger import queries
    from loyalty.ledger.operations import member_balance
    from loyalty.members.resolution import history_member_ids
    from notifications.consent import Purpose, granted_channels
    from notifications.queries import message_page

    now = utcnow()
    ids = history_member_ids(member.id)
    data: dict[str, Any] = {
        "member": member,
        "ledger": queries.history(ids, cursor=request.args.get("ledger_cursor"), limit=20),
        "orders": list(
            db.session.scalars(
                sa.select(Order)
                .where(Order.member_id.in_(ids))
                .order_by(Order.occurred_at.desc())
                .limit(10)
            )
        ),
        "messages": message_page(member.id, cursor=None, limit=10)["items"],
        "journeys": member_journeys(member.id, limit=JOURNEYS_SHOWN),
        "wallet": [],
        "consents": {},
        "balance": None,
        "progress": None,
    }
    if member.status == "active":
        from loyalty.tiers.operations import tier_progress

        data["balance"] = member_balance(member.id)
        data["wallet"] = member_wallet(member.id, now=now)
        data["progress"] = tier_progress(member.id, now)
        data["consents"] = {p.value: granted_channels(member.id, p) for p in Purpose}
    return data


@bp.route("/members/<int:member_id>")
@needs(Permission.VIEW)
def member(member_id: int) -> Any:
    found = _member_or_404(member_id)
    if found.merged_into_id is not None:
        flash(_("Member %(id)s was merged into this one.", id=found.id), "ok")
        return redirect(url_for("dashboard.member", member_id=found.merged_into_id))
    return render("member.html", **profile_data(found))


@bp.route("/members/<int:member_id>/adjust", methods=["POST"])
@needs(Permission.POINTS_ADJUST)
def adjust(member_id: int) -> Any:
    from loyalty.ledger.operations import adjust_points

    _member_or_404(member_id)
    reason = request.form.get("reason", "").strip()[:500]
    raw = request.form.get("points", "").strip()
    if not raw.lstrip("-").isdigit() or not reason or abs(int(raw)) > MAX_ADJUSTMENT:
        flash(_("Give a whole number of points (not zero) and a reason."), "error")
        return redirect(url_for("dashboard.member", member_id=member_id))
    points = int(raw)
    now = utcnow()
    try:
        change(
            "points.adjust",
            lambda: adjust_points(
                member_id,
                points,
                reason=reason,
                actor=current_user.actor,
                now=now,
                reference=f"{current_user.actor}@{now.isoformat()}",
            ),
            target_type="member",
            target_id=member_id,
            reason=reason,
            details=lambda tx: {"ledger_transaction_id": tx.id, "delta": points},
        )
        flash(_("%(points)s points adjusted.", points=points), "ok")
    except Refused:
        pass
    return redirect(url_for("dashboard.member", member_id=member_id))


def merge_preview(survivor: Member, duplicate: Member) -> dict[str, Any]:
    """What the merge would give, read-only: identities together, points added, the higher
    tier kept (as loyalty.members.merge does it)."""
    from loyalty.dashboard.snapshots import member as describe

    first, second = describe(str(survivor.id)) or {}, describe(str(duplicate.id)) or {}
    return {
        "survivor": first,
        "duplicate": second,
        "identities": [(i.kind, i.value) for i in (*survivor.identities, *duplicate.identities)],
        "points": (first.get("points") or 0) + (second.get("points") or 0),
    }


@bp.route("/members/<int:member_id>/merge", methods=["GET", "POST"])
@needs(Permission.MEMBERS_MERGE)
def merge(member_id: int) -> Any:
    from loyalty.members.merge import merge_members

    survivor = _member_or_404(member_id)
    raw = (request.values.get("duplicate_id") or "").strip()
    duplicate = db.session.get(Member, int(raw)) if raw.isdigit() and len(raw) < 19 else None
    if request.method == "GET" or duplicate is None:
        preview = merge_preview(survivor, duplicate) if duplicate is not None else None
        if raw and duplicate is None:
            flash(_("No member %(id)s.", id=raw), "error")
        return render("merge.html", member=survivor, duplicate=duplicate, preview=preview)
    reason = request.form.get("reason", "").strip()[:500]
    if request.form.get("confirm") != "yes" or not reason:
        flash(_("Tick the confirmation and give a reason."), "error")
        return redirect(url_for("dashboard.merge", member_id=member_id, duplicate_id=raw))
    try:
        change(
            "members.merge",
            lambda: merge_members(
                survivor.id, duplicate.id, reason=reason, now=utcnow(), actor=current_user.actor
            ),
            target_type="member",
            target_id=survivor.id,
            reason=reason,
            details=lambda audit_row: {"merged_id": audit_row.merged_id},
        )
        flash(_("Merged."), "ok")
    except Refused:
        return redirect(url_for("dashboard.merge", member_id=member_id, duplicate_id=raw))
    return redirect(url_for("dashboard.member", member_id=member_id))


@bp.route("/members/<int:member_id>/export", methods=["POST"])
@needs(Permission.MEMBERS_PRIVACY)
def export(member_id: int) -> Any:
    from loyalty.members.privacy import export_member

    _member_or_404(member_id)
    data = export_member(member_id, now=utcnow())
    record_event("members.export", actor=current_user.actor, target_type="member",
                 target_id=member_id)  # fmt: skip
    return Response(
        json.dumps(data, indent=2, default=str),
        mimetype="application/json",
        headers={"Content-Disposition": f'attachment; filename="member-{member_id}.json"'},
    )


@bp.route("/members/<int:member_id>/erase", methods=["POST"])
@needs(Permission.MEMBERS_PRIVACY)
def erase(member_id: int) -> Any:
    from loyalty.members.privacy import erase_member

    _member_or_404(member_id)
    reason = request.form.get("reason", "").strip()[:500]
    if request.form.get("confirm_id", "").strip() != str(member_id) or not reason:
        flash(_("Type the member id to confirm, and give a reason."), "error")
        return redirect(url_for("dashboard.member", member_id=member_id))
    try:
        change(
            "members.erase",
            lambda: erase_member(member_id, now=utcnow(), actor=current_user.actor),
            target_type="member",
            target_id=member_id,
            reason=reason,  # the privacy request's reference
            details=lambda summary: {"erased": True},
        )
        flash(_("Personal data erased."), "ok")
    except Refused:
        pass
    return redirect(url_for("dashboard.member", member_id=member_id))
