"""Ledger HTTP API: the member's own points, POS holds, adjustments, finance reports."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from flask import current_app
from marshmallow import fields

from loyalty.api import Blueprint
from loyalty.auth import scopes
from loyalty.auth.context import current_caller, ensure_store, requires, requires_member
from loyalty.auth.tokens import mint_member_qr
from loyalty.clock import utcnow
from loyalty.db import db
from loyalty.errors import NotFound
from loyalty.http import replayed, write_endpoint
from loyalty.ledger import export, operations, queries
from loyalty.ledger.models import PointHold
from loyalty.ledger.notes import attach_notes, erase_notes, export_notes
from loyalty.ledger.schemas import (
    ACTIVITY_DAYS,
    ActivityQuery,
    ActivitySchema,
    AdjustmentRequestSchema,
    BalanceSchema,
    CaptureRequestSchema,
    ExpiringQuery,
    ExpiringSchema,
    HistoryPageSchema,
    HistoryQuery,
    HoldRequestSchema,
    HoldSchema,
    LiabilitySchema,
    ReportQuery,
    TransactionSchema,
)
from loyalty.members.resolution import get_member, history_member_ids
from loyalty.schemas import StrictSchema
from loyalty.stores.operations import require_store
from loyalty.timezones import local

blp = Blueprint("points", __name__, description="Points: balances, history, holds, reports")


class QrSchema(StrictSchema):
    token = fields.String()
    expires_at = fields.DateTime()


def _settings() -> Any:
    return current_app.extensions["omniloyal.settings"]


def _with_local_time(transactions: list[Any], timezone: str) -> list[Any]:
    for tx in transactions:
        tx.local_time = local(tx.created_at, timezone).isoformat()
    return transactions


def _history_page(member: Any, query: dict[str, Any]) -> dict[str, Any]:
    """A page of the person's history: `member` (merges already followed) and every id
    merged into it."""
    page = queries.history(
        history_member_ids(member.id),
        cursor=query["cursor"],
        limit=query["limit"],
        kinds=query["kind"],
        since=query["since"],
        until=query["until"],
    )
    attach_notes(page.items)
    return {"items": _with_local_time(page.items, member.timezone), "next_cursor": page.next_cursor}


# --- member app -----------------------------------------------------------------------------


@blp.route("/me/balance")
@blp.doc(security=[{"MemberToken": []}])
@requires_member
@blp.response(200, BalanceSchema)
def my_balance() -> Any:
    """The member's balance, available, pending and held points (the app's home screen).

    A token minted before a merge reads the survivor's (like every /me route)."""
    return operations.member_balance(
        current_caller().member_id, standalone=True, follow_merges=True
    )


@blp.route("/me/history")
@blp.doc(security=[{"MemberToken": []}])
@requires_member
@blp.arguments(HistoryQuery, location="query")
@blp.response(200, HistoryPageSchema)
def my_history(query: dict[str, Any]) -> Any:
    """The member's points history, newest first, with cursor pagination."""
    member = get_member(current_caller().member_id)
    return _history_page(member, query)


@blp.route("/me/expiring")
@blp.doc(security=[{"MemberToken": []}])
@requires_member
@blp.arguments(ExpiringQuery, location="query")
@blp.response(200, ExpiringSchema)
def my_expiring(query: dict[str, Any]) -> Any:
    """Points that expire in the next N days, by expiry date in the member's timezone."""
    member = get_member(current_caller().member_id)
    return queries.expiring_points(
        member.id, now=utcnow(), days=query["days"], timezone=member.timezone
    )


@blp.route("/me/qr", methods=["POST"])
@blp.doc(security=[{"MemberToken": []}])
@requires_member
@blp.response(201, QrSchema)
def my_qr() -> Any:
    """A fresh member QR token for the till; it expires within minutes."""
    member = get_member(current_caller().member_id)
    minted = mint_member_qr(member.id, now=utcnow())
    return {"token": minted.token, "expires_at": minted.expires_at}


# --- POS and web shop: paying with points ---------------------------------------------------


@blp.route("/members/<member:member_id>/holds", methods=["POST"])
@blp.doc(security=[{"ApiKey": []}])
@requires(scopes.POINTS_WRITE)
@write_endpoint()
@blp.arguments(HoldRequestSchema)
@blp.response(201, HoldSchema)
def create_hold(data: dict[str, Any], member_id: int) -> Any:
    """Reserve points to pay part of a basket; capture or release them later."""
    caller = current_caller()
    store_id = data["store_id"] or caller.store_id
    ensure_store(caller, store_id)
    require_store(store_id)  # an unknown store is a 422, not a foreign-key error
    member = get_member(member_id)
    return operations.hold_points(
        member.id,
        data["points"],
        now=utcnow(),
        ttl_seconds=data["ttl_seconds"] or _settings().hold_ttl_seconds,
        reference=data["reference"],
        client_id=caller.client_id,
        store_id=store_id,
    )


def _own_hold(hold_id: int) -> PointHold:
    """A hold the caller created (or its store's); others' holds look like missing ones."""
    caller = current_caller()
    hold = db.session.get(PointHold, hold_id)
    mine = hold is not None and (
        hold.client_id == caller.client_id
        or (caller.store_id is not None and hold.store_id == caller.store_id)
    )
    if not mine:
        raise NotFound(f"no hold {hold_id}")
    return hold  # type: ignore[return-value]


@blp.route("/holds/<int:hold_id>")
@blp.doc(security=[{"ApiKey": []}])
@requires(scopes.POINTS_WRITE)
@blp.response(200, HoldSchema)
def get_hold(hold_id: int) -> Any:
    """Get a points hold: its status (active, captured, released, expired) and amounts."""
    return _own_hold(hold_id)


@blp.route("/holds/<int:hold_id>/capture", methods=["POST"])
@blp.doc(security=[{"ApiKey": []}])
@requires(scopes.POINTS_WRITE)
@write_endpoint()
@blp.arguments(CaptureRequestSchema)
@blp.response(200, HoldSchema)
def capture_hold(data: dict[str, Any], hold_id: int) -> Any:
    """Spend all (default) or part of the held points; the rest becomes available again.

    With `order_id`, the points pay for that order: refunding or cancelling it gives them
    back. An order already cancelled or fully refunded can't be paid (409).
    """
    from loyalty.earning.operations import check_order_payable

    hold = _own_hold(hold_id)
    order_ref = data["order_id"]
    earlier = operations.captured_alike(hold.id, data["points"], order_ref)
    if earlier is not None:  # a repeat of the capture: the first answer, no second burn
        return replayed(earlier, 200)
    cause = operations.Cause("hold", order_ref or f"hold:{hold.id}")
    hold, _tx = operations.capture_hold(
        hold.id,
        data["points"],
        cause,
        now=utcnow(),
        actor=current_caller().actor,
        order_ref=order_ref,
    )
    if order_ref is not None:  # after capture_hold locked the member: see _return_paid_points
        check_order_payable(order_ref, client_id=hold.client_id, store_id=hold.store_id)
    return hold


@blp.route("/holds/<int:hold_id>/release", methods=["POST"])
@blp.doc(security=[{"ApiKey": []}])
@requires(scopes.POINTS_WRITE)
@write_endpoint()
@blp.response(200, HoldSchema)
def release_hold(hold_id: int) -> Any:
    """Give the held points back (a no-op for a released or expired hold)."""
    hold = _own_hold(hold_id)
    return operations.release_hold(hold.id, now=utcnow())


@blp.route("/members/<member:member_id>/balance")
@blp.doc(security=[{"ApiKey": []}])
@requires(scopes.MEMBERS_READ)
@blp.response(200, BalanceSchema)
def member_balance(member_id: int) -> Any:
    """A member's balance, for the POS after identifying them."""
    return operations.member_balance(get_member(member_id).id)


# --- support and finance --------------------------------------------------------------------


@blp.route("/members/<member:member_id>/adjustments", methods=["POST"])
@blp.doc(security=[{"ApiKey": []}])
@requires(scopes.ADMIN)
@write_endpoint()
@blp.arguments(AdjustmentRequestSchema)
@blp.response(201, TransactionSchema)
def adjust(data: dict[str, Any], member_id: int) -> Any:
    """Credit or debit points by hand, with a reason; recorded with the actor."""
    member = get_member(member_id)
    now = utcnow()
    tx = operations.adjust_points(
        member.id,
        data["points"],
        reason=data["reason"],
        actor=current_caller().actor,
        now=now,
        reference=f"{current_caller().actor}@{now.isoformat()}",
    )
    return _with_local_time([tx], member.timezone)[0]


@blp.route("/members/<member:member_id>/ledger")
@blp.doc(security=[{"ApiKey": []}])
@requires(scopes.ADMIN)
@blp.arguments(HistoryQuery, location="query")
@blp.response(200, HistoryPageSchema)
def member_ledger(query: dict[str, Any], member_id: int) -> Any:
    """Support's view of a member's ledger: the person's, like every route naming a member
    (a merged id shows its survivor's, which includes the merged member's own history)."""
    return _history_page(get_member(member_id), query)


# Every report also comes as CSV, for a spreadsheet: `Accept: text/csv` or `?format=csv`.
def _csv_doc(example: str) -> dict[str, Any]:
    return {
        "responses": {
            200: {"content": {"text/csv": {"schema": {"type": "string"}, "example": example}}}
        }
    }


@blp.route("/reports/liability")
@blp.doc(security=[{"ApiKey": []}], **_csv_doc(export.LIABILITY_EXAMPLE))
@requires(scopes.FINANCE_READ)
@blp.arguments(ReportQuery, location="query")
@blp.response(200, LiabilitySchema)
def liability_report(query: dict[str, Any]) -> Any:
    """Outstanding points by expiry month, plus pending points and recorded debt.

    Months are the program's (OMNILOYAL_PROGRAM_TIMEZONE). As CSV (`Accept: text/csv` or
    `?format=csv`): one row per expiry month (`never` for points that don't expire); the
    totals are in the JSON form."""
    report = queries.liability(utcnow(), _settings().program_timezone)
    if export.wants_csv(query["format"]):
        return export.liability_csv(report)
    return report


@blp.route("/reports/points-activity")
@blp.doc(security=[{"ApiKey": []}], **_csv_doc(export.ACTIVITY_EXAMPLE))
@requires(scopes.FINANCE_READ)
@blp.arguments(ActivityQuery, location="query")
@blp.response(200, ActivitySchema)
def activity_report(query: dict[str, Any]) -> Any:
    """Points issued, redeemed, expired, adjusted and reversed per UTC day.

    Without `since`/`until`: the last 30 days up to today. At most 366 days per report.
    As CSV (`Accept: text/csv` or `?format=csv`): one row per day."""
    until = query["until"] or utcnow().date()
    since = query["since"] or until - timedelta(days=ACTIVITY_DAYS - 1)
    days = queries.activity(since, until)
    if export.wants_csv(query["format"]):
        return export.activity_csv(days, since, until)
    return {"days": days}


def _register_member_hooks() -> None:
    """Adjustment notes appear in the member's data export and are blanked by erasure."""
    from loyalty.members import privacy

    privacy.register_export_section("ledger_notes", export_notes)
    privacy.register_erase_step("ledger_notes", erase_notes)


_register_member_hooks()
