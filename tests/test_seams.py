"""The seams between domains: every table that names a member has a merge step, an erase
step and an export section registered, or says here why it needs none.

A new table with a member column (a foreign key to members, or a column named like
member_id / person_id) fails `test_every_member_table_has_its_merge_erase_and_export_seams`
until it is added to SEAMS: with the names of its registered steps, or a `Reason`.
"""

from __future__ import annotations

import ast
import warnings
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa

from loyalty.app import create_app
from loyalty.db import db
from loyalty.members import merge, privacy


@dataclass(frozen=True)
class Reason:
    """Why a table needs no step of this kind (the core handles it, or there's nothing)."""

    why: str


@dataclass(frozen=True)
class Seam:
    merge: str | Reason  # a registered merge step's qualified name, or why none
    erase: str | Reason  # a registered erase step's name, or why none
    export: str | Reason  # a registered export section's name, or why none


CORE_MERGE = Reason("loyalty.members.merge itself (identities, ledger, status, audit row)")
CORE_EXPORT = Reason("loyalty.members.privacy.export_member itself")
CORE_ERASE = Reason("loyalty.members.privacy.erase_member itself (profile, identities)")
STAYS = Reason("rows stay under the id they were written with; readers use the merge rule")
LEDGER = Reason("append-only ledger data: ids and amounts, no personal data")
IDS_ONLY = Reason("ids and amounts only; the person's data is exported from its source tables")
EARNING = "loyalty.earning.operations.merge_orders_and_activities"
COUPONS = "loyalty.coupons.wallet.merge_member_coupons"
TARGETING = "campaigns.privacy.merge_member_targeting"
JOURNEYS = "campaigns.journey_privacy.merge_journeys"

SEAMS: dict[str, Seam] = {
    "members": Seam(CORE_MERGE, CORE_ERASE, CORE_EXPORT),
    "member_identities": Seam(CORE_MERGE, CORE_ERASE, CORE_EXPORT),
    "member_merges": Seam(CORE_MERGE, "member_merges", CORE_EXPORT),
    "member_imports": Seam(
        Reason("qualifying points are read through history_members (tiers)"),
        Reason("the retailer's import record: batch, external id, amounts"),
        Reason("its opening balance is in the export as a ledger transaction"),
    ),
    "idempotency_keys": Seam(
        Reason("records keep the id; erasure blanks by the person's ids"),
        "idempotency",
        Reason("replays of answers already given, not a record about the person"),
    ),
    "ledger_accounts": Seam(CORE_MERGE, LEDGER, CORE_EXPORT),
    "ledger_transactions": Seam(STAYS, LEDGER, CORE_EXPORT),
    "point_lots": Seam(CORE_MERGE, LEDGER, CORE_EXPORT),
    "point_holds": Seam(STAYS, LEDGER, CORE_EXPORT),
    "points_expiry_notices": Seam(
        CORE_MERGE, LEDGER, Reason("derived from the lots, which are exported")
    ),
    "ledger_notes": Seam(STAYS, "ledger_notes", "ledger_notes"),
    "outbox_events": Seam(STAYS, "outbox", IDS_ONLY),
    "outbox_deliveries": Seam(STAYS, "outbox", IDS_ONLY),
    "used_member_qr_tokens": Seam(
        Reason("one-use digests that expire within minutes"),
        Reason("a digest only, purged after expiry"),
        Reason("a digest only, purged after expiry"),
    ),
    "activity_events": Seam(EARNING, "earning", "orders"),
    "orders": Seam(EARNING, "earning", "orders"),
    "coupon_codes": Seam(COUPONS, "coupons", "coupons"),
    "coupon_member_uses": Seam(
        COUPONS, Reason("per-offer use counters, no personal data"), "coupons"
    ),
    "coupon_redemptions": Seam(STAYS, "coupons", "coupons"),
    "member_consents": Seam(
        "notifications.consent.merge_consents", "notifications", "notifications"
    ),
    "consent_changes": Seam(
        "notifications.consent.merge_consents", "notifications", "notifications"
    ),
    "messages": Seam(STAYS, "notifications", "notifications"),
    "push_subscriptions": Seam(
        "notifications.push.merge_subscriptions", "push_subscriptions", "push_subscriptions"
    ),
    "member_profiles": Seam(TARGETING, "campaigns", "targeting"),
    "member_category_purchases": Seam(TARGETING, "campaigns", "targeting"),
    "member_tags": Seam(TARGETING, "campaigns", "targeting"),
    "segment_members": Seam(
        "campaigns.segments.merge_segment_memberships", "campaigns", "targeting"
    ),
    "campaign_recipients": Seam(
        "campaigns.engine_privacy.merge_member_campaigns", "campaign_engine", "campaigns"
    ),
    "journey_entries": Seam(JOURNEYS, "journeys", "journeys"),
    "event_reservations": Seam(JOURNEYS, "journeys", "journeys"),
    "referral_codes": Seam(
        Reason("the merged member's code stays valid and credits through the merge rule"),
        "journeys",
        "journeys",
    ),
    "referral_marks": Seam(
        Reason("keyed hashes of identities, compared for either id of a person"),
        "journeys",
        Reason("keyed hashes only, no readable personal data"),
    ),
    "referrals": Seam(STAYS, Reason("ids and points only"), "journeys"),
}


def member_columns(table: sa.Table) -> list[str]:
    return [
        column.name
        for column in table.columns
        if any(fk.column.table.name == "members" for fk in column.foreign_keys)
        or column.name.endswith("member_id")
        or column.name in {"person_id", "survivor_id", "merged_id"}
    ]


def member_tables() -> dict[str, list[str]]:
    return {t.name: cols for t in db.metadata.sorted_tables if (cols := member_columns(t))}


def test_every_member_table_has_its_merge_erase_and_export_seams(app):
    tables = member_tables()
    assert "messages" in tables and "segment_members" in tables  # every domain is loaded
    missing = sorted(set(tables) - set(SEAMS))
    assert not missing, (
        f"tables naming a member without a stated merge/erase/export seam: {missing}; "
        "register the steps (loyalty.members.merge.register_merge_step, "
        "privacy.register_erase_step, privacy.register_export_section) and add them to SEAMS"
    )
    assert not set(SEAMS) - set(tables), "SEAMS names tables that no longer exist"
    registered = {
        "merge": set(merge.merge_steps()),
        "erase": set(privacy.erase_steps()),
        "export": set(privacy.export_sections()),
    }
    problems = [
        f"{table}: {kind} {name!r} is not registered"
        for table, seam in SEAMS.items()
        for kind, name in (("merge", seam.merge), ("erase", seam.erase), ("export", seam.export))
        if isinstance(name, str) and name not in registered[kind]
    ]
    assert not problems, problems


def test_the_guardrail_notices_a_new_member_table(app):
    table = sa.Table(
        "loyalty_wishlists",
        sa.MetaData(),
        sa.Column("id", sa.BigInteger, primary_key=True),
        sa.Column("owner_member_id", sa.BigInteger),
    )
    assert member_columns(table) == ["owner_member_id"]
    assert table.name not in SEAMS


def test_building_the_openapi_document_warns_about_nothing(database_url):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        spec_app = create_app(
            {
                "database_url": "sqlite://",
                "secret_key": "seams-spec-only-secret-key-0123456789abcdef",
                "run_embedded_worker": False,
            }
        )
        document = spec_app.test_client().get("/openapi.json").json
    messages = [
        str(w.message)
        for w in caught
        if "apispec" in w.filename or "schema" in str(w.message).lower()
    ]
    assert messages == []
    schemas = document["components"]["schemas"]
    for name in ("PushSubscription", "WebhookSubscription", "TemplatePreview", "SegmentPreview"):
        assert name in schemas


RESOLUTION_NAMES = {
    "get_member", "current_member", "current_member_id", "person_of",
    "same_person_ids", "history_member_ids", "history_members", "lock_current_member",
    "lock_current_members",
}  # fmt: skip


def test_merges_are_resolved_only_through_the_resolution_module():
    """Callers import the merge rule from loyalty/members/resolution.py; no other module
    defines or re-exports a way to find the person behind an id."""
    from loyalty.members import resolution

    root = Path(__file__).resolve().parent.parent
    found = []
    for path in sorted(root.glob("*/**/*.py")):
        if ".venv" in path.parts or path.name == "resolution.py":
            continue
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef | ast.Assign) and node.col_offset == 0:
                names = (
                    [node.name]
                    if isinstance(node, ast.FunctionDef)
                    else [t.id for t in node.targets if isinstance(t, ast.Name)]
                )
                found += [f"{path.relative_to(root)}: defines {n}" for n in names
                          if n in RESOLUTION_NAMES and "tests" not in path.parts
                          and not _is_view(node)]  # fmt: skip
            if isinstance(node, ast.ImportFrom) and node.module != resolution.__name__:
                found += [f"{path.relative_to(root)}: imports {a.name} from {node.module}"
                          for a in node.names if a.name in RESOLUTION_NAMES
                          and (node.module or "").startswith(("loyalty.", "notifications.",
                                                              "campaigns."))]  # fmt: skip
    assert found == []
    from loyalty.members import operations

    assert not hasattr(operations, "resolve")


def _is_view(node: ast.AST) -> bool:
    """A route handler named like a resolution helper (`members.api.get_member`)."""
    return bool(getattr(node, "decorator_list", None))
