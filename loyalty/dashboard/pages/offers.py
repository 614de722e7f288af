"""Offers (create, new versions of their terms), code batches with CSV export, rewards."""

from __future__ import annotations

import re
import uuid
from typing import Any

import sqlalchemy as sa
from flask import (
    Response,
    abort,
    flash,
    jsonify,
    redirect,
    request,
    stream_with_context,
    url_for,
)
from flask_babel import gettext as _
from flask_login import current_user
from marshmallow import ValidationError

from loyalty.clock import utcnow
from loyalty.coupons.codes import MAX_BATCH
from loyalty.dashboard.access import needs
from loyalty.dashboard.blueprint import bp, render
from loyalty.dashboard.edge import Refused, change, record_event
from loyalty.dashboard.roles import Permission
from loyalty.db import db

KINDS = ("percent", "fixed_amount", "free_item", "bonus_points")
BATCHES_SHOWN = 50
REQUEST_KEY = re.compile(r"[0-9a-f]{32}")


def _terms_from_form(form: Any) -> dict[str, Any]:
    """The offer fields the form has, as OfferCreateSchema takes them."""
    data: dict[str, Any] = {}
    for name in ("name", "description", "free_sku", "currency"):
        value = form.get(name, "").strip()
        if value:
            data[name] = value
    for name in (
        "percent_bp", "amount_minor", "bonus_points", "min_spend_minor", "max_discount_minor",
        "valid_days_after_issue", "per_member_limit", "max_redemptions",
    ):  # fmt: skip
        value = form.get(name, "").strip()
        if value:
            data[name] = int(value) if value.lstrip("-").isdigit() else value
    return data


def _errors(error: ValidationError) -> str:
    messages = error.normalized_messages()
    return "; ".join(f"{field}: {' '.join(map(str, m))}" for field, m in messages.items())


@bp.route("/offers", methods=["GET", "POST"])
@needs(Permission.VIEW)
def offers() -> Any:
    from loyalty.coupons import offers as offer_ops
    from loyalty.coupons.schemas import OfferCreateSchema
    from loyalty.coupons.wallet import list_rewards
    from loyalty.dashboard.roles import allows

    if request.method == "POST":
        if not allows(current_user.role, Permission.OFFERS_WRITE):
            abort(403)
        raw = {"kind": request.form.get("kind", ""), **_terms_from_form(request.form)}
        try:
            data = OfferCreateSchema().load(raw)
            offer = change(
                "offers.create",
                lambda: offer_ops.create_offer(data, now=utcnow(), actor=current_user.actor),
                target_type="offer",
                after_target=lambda o: o.id,
            )
            flash(_("Offer created."), "ok")
            return redirect(url_for("dashboard.offer", offer_id=offer.id))
        except ValidationError as error:
            flash(_errors(error), "error")
        except Refused:
            pass
    return render(
        "offers.html",
        offers=offer_ops.list_offers(status=None, limit=200, after_id=None),
        rewards=list_rewards(only_available=False),
        kinds=KINDS,
    )


@bp.route("/offers/<int:offer_id>", methods=["GET", "POST"])
@needs(Permission.VIEW)
def offer(offer_id: int) -> Any:
    from loyalty.coupons import offers as offer_ops
    from loyalty.coupons.models import CouponBatch, CouponOffer, CouponOfferVersion
    from loyalty.coupons.schemas import OfferUpdateSchema
    from loyalty.dashboard.roles import allows

    if request.method == "POST" and not allows(current_user.role, Permission.OFFERS_WRITE):
        abort(403)
    found = db.session.get(CouponOffer, offer_id)
    if found is None:
        abort(404)
    if request.method == "POST":
        try:
            if request.form.get("action") == "batch":
                return _start_batch(offer_id)
            else:
                changes = OfferUpdateSchema().load(_terms_from_form(request.form))
                change(
                    "offers.update",
                    lambda: offer_ops.update_offer(
                        offer_id, changes, now=utcnow(), actor=current_user.actor
                    ),
                    target_type="offer",
                    target_id=offer_id,
                )
                flash(_("Offer saved."), "ok")
        except ValidationError as error:
            flash(_errors(error), "error")
        except (Refused, ValueError):
            pass
        return redirect(url_for("dashboard.offer", offer_id=offer_id))
    # The newest batches (journeys and campaigns issue one per member they give a code).
    batches = db.session.scalars(
        sa.select(CouponBatch)
        .where(CouponBatch.offer_id == offer_id)
        .order_by(CouponBatch.id.desc())
        .limit(BATCHES_SHOWN)
    ).all()
    running = [b.id for b in batches if b.status == "running"]
    versions = db.session.scalars(
        sa.select(CouponOfferVersion)
        .where(CouponOfferVersion.offer_id == offer_id)
        .order_by(CouponOfferVersion.version.desc())
    ).all()
    return render(
        "offer.html",
        offer=found,
        terms=offer_ops.current_terms(found),
        stats=offer_ops.offer_stats(offer_id),
        batches=batches,
        running=running,
        versions=versions,
        request_key=uuid.uuid4().hex,
        max_batch=MAX_BATCH,
    )


def _start_batch(offer_id: int) -> Any:
    """Start a background batch (loyalty.coupons.jobs.generate_code_batch). The form's
    request key makes a double submit find the batch the first one started."""
    from loyalty.coupons import jobs
    from loyalty.coupons import offers as offer_ops

    raw = request.form.get("count", "").strip()
    count = int(raw) if raw.isdigit() and len(raw) < 12 else 0
    key = request.form.get("request_key", "").strip()
    if not 1 <= count <= MAX_BATCH:
        flash(_("Between 1 and %(n)s codes per batch.", n=MAX_BATCH), "error")
        return redirect(url_for("dashboard.offer", offer_id=offer_id))
    if not REQUEST_KEY.fullmatch(key):
        flash(_("The form expired: generate again."), "error")
        return redirect(url_for("dashboard.offer", offer_id=offer_id))
    if offer_ops.batch_by_request_key(f"dashboard:{key}") is not None:
        flash(_("This batch was already started."), "ok")
        return redirect(url_for("dashboard.offer", offer_id=offer_id))
    prefix = request.form.get("prefix", "").strip()[:16] or None
    started: dict[str, Any] = {}

    def start() -> Any:
        batch, created = offer_ops.start_code_batch(
            offer_id,
            count,
            now=utcnow(),
            actor=current_user.actor,
            request_key=f"dashboard:{key}",
            prefix=prefix,
        )
        started.update(batch_id=batch.id, created=created)  # read before the commit
        return batch

    try:
        change(
            "offers.codes.generate",
            start,
            target_type="offer",
            target_id=offer_id,
            details=lambda batch: {"batch_id": batch.id, "requested": count},
        )
    except Refused:
        return redirect(url_for("dashboard.offer", offer_id=offer_id))
    if started["created"]:
        # After the commit, so the job finds the batch. A lost enqueue is picked up again
        # by resume_code_batches.
        jobs.generate_code_batch.enqueue(started["batch_id"])
        flash(_("Generating the codes: the progress shows below."), "ok")
    else:
        flash(_("This batch was already started."), "ok")
    return redirect(url_for("dashboard.offer", offer_id=offer_id))


@bp.route("/offers/batches/progress")
@needs(Permission.VIEW)
def batch_progress() -> Any:
    """The progress of some batches, for the offer page's script: {id: {...}}."""
    from loyalty.coupons.models import CouponBatch

    ids = [int(i) for i in request.args.getlist("id") if i.isdigit() and len(i) < 19][:20]
    rows = db.session.scalars(sa.select(CouponBatch).where(CouponBatch.id.in_(ids))).all()
    return jsonify(
        {
            str(b.id): {
                "status": b.status,
                "requested": b.requested,
                "generated": b.created_count,
                "error": b.error,
            }
            for b in rows
        }
    )


@bp.route("/offers/batches/<int:batch_id>.csv")
@needs(Permission.OFFERS_WRITE)
def batch_csv(batch_id: int) -> Any:
    from loyalty.coupons import offers as offer_ops

    batch = offer_ops.get_batch(batch_id)
    if batch.status == "running":
        flash(_("The batch is still being generated."), "error")
        return redirect(url_for("dashboard.offer", offer_id=batch.offer_id))
    record_event("offers.codes.export", actor=current_user.actor, target_type="coupon_batch",
                 target_id=batch_id)  # fmt: skip
    return Response(
        stream_with_context(offer_ops.export_batch_csv(batch_id)),
        mimetype="text/csv",
        headers={"Content-Disposition": f'attachment; filename="coupon-batch-{batch_id}.csv"'},
    )
