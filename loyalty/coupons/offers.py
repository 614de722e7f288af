"""Offers and their codes: create and version offers, generate, import and export codes.

Terms are versioned: changing any term writes a new immutable `CouponOfferVersion` and
moves the offer to it; redemptions keep naming the version they were redeemed under.
Caps (total redemptions, budget, per-member limit) are enforced from the offer row; once
an offer has codes, a cap can be raised or lowered but not added or removed, because the
counters behind it are only kept for capped offers.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from loyalty.coupons.codes import CodeFormat, insert_codes, is_well_formed, normalise
from loyalty.coupons.discounts import OfferKind, OfferTerms, Stacking
from loyalty.coupons.models import (
    CodeKind,
    CodeStatus,
    CouponBatch,
    CouponCode,
    CouponOffer,
    CouponOfferVersion,
    CouponRedemption,
    OfferStatus,
    RedemptionStatus,
)
from loyalty.db import constant, db, upsert_insert
from loyalty.errors import Conflict, InvalidInput, NotFound

CAP_FIELDS = ("max_redemptions", "budget_minor", "per_member_limit")
OFFER_FIELDS = ("name", "description", "status", "campaign_id")
TERM_FIELDS = tuple(name for name in OfferTerms.__dataclass_fields__ if name not in CAP_FIELDS)
MAX_TOPUP_ROUNDS = 5


# --- offers ---------------------------------------------------------------------------------


def _terms(data: Mapping[str, Any], caps: Mapping[str, Any]) -> OfferTerms:
    values = {name: data[name] for name in TERM_FIELDS if name in data and data[name] is not None}
    for name in (
        "eligible_skus",
        "excluded_skus",
        "eligible_categories",
        "excluded_categories",
        "channels",
        "store_ids",
        "regions",
    ):
        if name in values:
            values[name] = frozenset(values[name])
    values["kind"] = OfferKind(values["kind"])
    values["stacking"] = Stacking(values.get("stacking", Stacking.EXCLUSIVE))
    terms = OfferTerms(**values, **{name: caps.get(name) for name in CAP_FIELDS})
    _check_terms(terms)
    return terms


def _check_terms(terms: OfferTerms) -> None:
    """Cross-field rules the schema can't see (it checks each kind's own fields)."""
    needs = {
        OfferKind.PERCENT: "percent_bp",
        OfferKind.FIXED_AMOUNT: "amount_minor",
        OfferKind.FREE_ITEM: "free_sku",
        OfferKind.BONUS_POINTS: "bonus_points",
        OfferKind.POINTS_MULTIPLIER: "points_multiplier_pct",
    }[terms.kind]
    if getattr(terms, needs) is None:
        raise InvalidInput(f"a {terms.kind} offer needs {needs}", field=needs)
    money = terms.amount_minor or terms.max_discount_minor or terms.min_spend_minor
    if (money or terms.budget_minor) and terms.currency is None:
        raise InvalidInput("money amounts need a currency", field="currency")
    if terms.valid_from and terms.valid_until and terms.valid_from >= terms.valid_until:
        raise InvalidInput("valid_from must be before valid_until", field="valid_until")


def create_offer(data: Mapping[str, Any], *, now: datetime, actor: str) -> CouponOffer:
    """A new offer with version 1 of its terms (`data` as loaded by OfferCreateSchema)."""
    caps = {name: data.get(name) for name in CAP_FIELDS}
    terms = _terms(data, caps)
    offer = CouponOffer(
        name=data["name"],
        description=data.get("description"),
        status=data.get("status") or OfferStatus.ACTIVE.value,
        version=1,
        campaign_id=data.get("campaign_id"),
        extra=data.get("metadata"),
        redemptions_count=0,
        discount_spent_minor=0,
        has_codes=False,
        created_at=now,
        updated_at=now,
        created_by=actor,
        **caps,
    )
    db.session.add(offer)
    db.session.flush()
    db.session.add(
        CouponOfferVersion(
            offer_id=offer.id, version=1, terms=terms.to_json(), created_at=now, created_by=actor
        )
    )
    db.session.flush()
    return offer


def get_offer(offer_id: int, *, lock: bool = False, share: bool = False) -> CouponOffer:
    """The offer; `lock`: FOR NO KEY UPDATE (its caps, budget, terms or status change),
    `share`: FOR SHARE (it must not change meanwhile, others may read it the same way)."""
    query = sa.select(CouponOffer).where(CouponOffer.id == offer_id)
    if lock:
        query = query.with_for_update(key_share=True)  # FOR NO KEY UPDATE
    elif share:
        query = query.with_for_update(read=True)  # FOR SHARE
    if lock or share:
        query = query.execution_options(populate_existing=True)
    offer = db.session.scalar(query)
    if offer is None:
        raise NotFound(f"no offer {offer_id}")
    return offer


def present_terms(terms: Mapping[str, Any]) -> dict[str, Any]:
    """Terms as the API shows them, in the units they were sent in: a percent offer has
    `percent` beside `percent_bp` (15 and 1500), and fields of other kinds (a percent
    offer's `free_quantity`) are left out."""
    shown = dict(terms)
    if shown.get("kind") != OfferKind.FREE_ITEM.value:
        shown.pop("free_quantity", None)
        shown.pop("free_sku", None)
    if shown.get("kind") == OfferKind.PERCENT.value and shown.get("percent_bp") is not None:
        bp = shown["percent_bp"]
        shown["percent"] = bp // 100 if bp % 100 == 0 else bp / 100
    else:
        shown.pop("percent_bp", None)
    return shown


def current_terms(offer: CouponOffer) -> OfferTerms:
    return OfferTerms.from_json(version_row(offer.id, offer.version).terms)


def version_row(offer_id: int, version: int) -> CouponOfferVersion:
    row = db.session.scalar(
        sa.select(CouponOfferVersion).where(
            CouponOfferVersion.offer_id == offer_id, CouponOfferVersion.version == version
        )
    )
    if row is None:
        raise NotFound(f"offer {offer_id} has no version {version}")
    return row


def update_offer(
    offer_id: int, changes: Mapping[str, Any], *, now: datetime, actor: str
) -> CouponOffer:
    """Change an offer. Name, description, status: in place. Any term: a new version.
    Caps: in place (the counters are exact), within the rules in the module docstring."""
    offer = get_offer(offer_id, lock=True)
    for name in OFFER_FIELDS:
        if name in changes:
            setattr(offer, name, changes[name])
    if "metadata" in changes:  # the integrator's data: in place, never a new version
        offer.extra = changes["metadata"]
    caps = {name: changes.get(name, getattr(offer, name)) for name in CAP_FIELDS}
    _change_caps(offer, caps)
    term_changes = {k: v for k, v in changes.items() if k in TERM_FIELDS}
    caps_changed = any(caps[n] != getattr(offer, n) for n in CAP_FIELDS)
    for name, value in caps.items():
        setattr(offer, name, value)
    old = current_terms(offer)
    if term_changes or caps_changed:
        merged = {**old.to_json(), **term_changes}
        terms = _terms(merged, caps)
        if terms != old:
            offer.version += 1
            db.session.add(
                CouponOfferVersion(
                    offer_id=offer.id,
                    version=offer.version,
                    terms=terms.to_json(),
                    created_at=now,
                    created_by=actor,
                )
            )
    offer.updated_at = now
    db.session.flush()
    return offer


def _change_caps(offer: CouponOffer, caps: Mapping[str, Any]) -> None:
    if offer.has_codes:
        toggles_totals = (
            caps["max_redemptions"] is not None or caps["budget_minor"] is not None
        ) != offer.tracks_totals
        toggles_member = (caps["per_member_limit"] is None) != (offer.per_member_limit is None)
        if toggles_totals or toggles_member:
            raise Conflict(
                "this offer has codes: its caps can change but not be added or removed; "
                "create a new offer instead",
                reason="offer_has_codes",
            )
    if caps["max_redemptions"] is not None and caps["max_redemptions"] < offer.redemptions_count:
        raise Conflict(
            f"{offer.redemptions_count} uses are already taken", reason="below_current_count"
        )
    if caps["budget_minor"] is not None and caps["budget_minor"] < offer.discount_spent_minor:
        raise Conflict(
            f"{offer.discount_spent_minor} of the budget is already spent",
            reason="below_current_spend",
        )


def list_offers(*, status: str | None, limit: int, after_id: int | None) -> list[CouponOffer]:
    """Offers by id, `limit` after `after_id` (keyset)."""
    query = sa.select(CouponOffer).order_by(CouponOffer.id).limit(limit)
    if status is not None:
        query = query.where(CouponOffer.status == status)
    if after_id is not None:
        query = query.where(CouponOffer.id > after_id)
    return list(db.session.scalars(query))


def offer_stats(offer_id: int) -> dict[str, Any]:
    """Redemptions and discount per status and channel (from the redemption rows)."""
    r = CouponRedemption
    rows = db.session.execute(
        sa.select(
            r.status, r.channel, sa.func.count(), sa.func.coalesce(sa.func.sum(r.discount_minor), 0)
        )
        .where(r.offer_id == offer_id)
        .group_by(r.status, r.channel)
    ).all()
    codes = db.session.execute(
        sa.select(sa.func.count(), sa.func.coalesce(sa.func.sum(CouponCode.uses), 0)).where(
            CouponCode.offer_id == offer_id
        )
    ).one()
    redeemed = [row for row in rows if row[0] == RedemptionStatus.REDEEMED]
    return {
        "codes": codes[0],
        "uses_taken": int(codes[1]),
        "redeemed": sum(row[2] for row in redeemed),
        "discount_minor": sum(int(row[3]) for row in redeemed),
        "by_status": {s: sum(row[2] for row in rows if row[0] == s) for s in RedemptionStatus},
        "by_channel": {
            channel: {"redeemed": count, "discount_minor": int(amount)}
            for status, channel, count, amount in redeemed
        },
    }


def lock_for_issue(offer_id: int, *, alone: bool = False) -> CouponOffer:
    """The offer, locked while codes are made or issued from it, so it can't end or change
    its terms meanwhile (those lock it FOR NO KEY UPDATE). Issuers share the lock (FOR
    SHARE): a campaign's fan-out chunks issue codes side by side instead of queueing on the
    offer row. The first issue of an offer (`has_codes` still false; it never goes back)
    takes the row alone to mark it, and so does a caller that needs to be `alone`."""
    alone = alone or not get_offer(offer_id).has_codes
    offer = get_offer(offer_id, lock=alone, share=not alone)
    if offer.status == OfferStatus.ENDED:
        raise Conflict(f"offer {offer.id} has ended", reason="offer_ended")
    if not offer.has_codes:
        offer.has_codes = True
    return offer


def code_expiry(terms: OfferTerms, issued_at: datetime) -> datetime | None:
    """For 'N days from issue' offers: the issue time plus N days (never past valid_until)."""
    if terms.valid_days_after_issue is None:
        return None
    expiry = issued_at + timedelta(days=terms.valid_days_after_issue)
    return min(expiry, terms.valid_until) if terms.valid_until else expiry


# --- codes ----------------------------------------------------------------------------------


def generate_codes(
    offer_id: int,
    count: int,
    *,
    now: datetime,
    actor: str = "system",
    prefix: str | None = None,
    suffix: str | None = None,
    pattern: str | None = None,
    length: int = 12,
    max_uses: int | None = 1,
    campaign_id: int | None = None,
) -> CouponBatch:
    """Generate `count` unique random codes for an offer as one batch.

    Codes are made in Python from `secrets` (>= 60 bits each) and bulk-inserted (COPY on
    PostgreSQL) with ON CONFLICT DO NOTHING; the astronomically rare collision is topped
    up. For 'N days from issue' offers, a generated code's clock starts now.
    """
    if count < 1:
        raise InvalidInput("count must be at least 1", field="count")
    fmt = CodeFormat(prefix=prefix, suffix=suffix, pattern=pattern, length=length)
    offer = lock_for_issue(offer_id)
    batch = CouponBatch(
        offer_id=offer.id,
        kind="generated",
        requested=count,
        created_count=0,
        prefix=fmt.prefix or None,
        suffix=fmt.suffix or None,
        pattern=pattern,
        max_uses_per_code=max_uses,
        campaign_id=campaign_id,
        created_at=now,
        created_by=actor,
        status="done",  # in this one transaction
        updated_at=now,
    )
    db.session.add(batch)
    db.session.flush()
    _insert_generated(batch, offer, fmt, count)
    db.session.flush()
    return batch


def _insert_generated(batch: CouponBatch, offer: CouponOffer, fmt: CodeFormat, count: int) -> int:
    """Insert `count` new codes into the batch (topping up collisions); returns `count`.
    The codes are issued when the batch was asked for (its expiry clock starts then)."""
    issued_at = batch.created_at
    constants = {
        "offer_id": offer.id,
        "batch_id": batch.id,
        "kind": CodeKind.UNIQUE.value,
        "status": CodeStatus.ACTIVE.value,
        "max_uses": batch.max_uses_per_code,
        "uses": 0,
        "expires_at": code_expiry(current_terms(offer), issued_at),
        "issued_at": issued_at,
        "source_type": "campaign" if batch.campaign_id is not None else None,
        "source_ref": str(batch.campaign_id) if batch.campaign_id is not None else None,
        "campaign_id": batch.campaign_id,
        "created_at": issued_at,
    }
    created = 0
    for _ in range(MAX_TOPUP_ROUNDS):
        created += insert_codes(fmt.make(count - created), constants)
        if created == count:
            break
    else:
        raise Conflict("could not generate enough distinct codes; use more random characters")
    batch.created_count += created
    return created


# --- code batches generated in the background (the dashboard) ---

BACKGROUND_CHUNK = 10_000  # codes per transaction of a background batch


def start_code_batch(
    offer_id: int,
    count: int,
    *,
    now: datetime,
    actor: str,
    request_key: str,
    prefix: str | None = None,
    suffix: str | None = None,
    pattern: str | None = None,
    length: int = 12,
    max_uses: int | None = 1,
    campaign_id: int | None = None,
) -> tuple[CouponBatch, bool]:
    """A `running` batch of `count` codes for a job to generate (generate_codes_chunk);
    (batch, True). The same `request_key` again (a form submitted twice) gives the batch
    it already made: (batch, False), and nothing new."""
    if count < 1:
        raise InvalidInput("count must be at least 1", field="count")
    existing = batch_by_request_key(request_key)
    if existing is not None:
        return existing, False
    # checks the format before any job runs
    fmt = CodeFormat(prefix=prefix, suffix=suffix, pattern=pattern, length=length)
    offer = lock_for_issue(offer_id, alone=True)
    table = CouponBatch.__table__
    # Under the offer's lock a second submit waits, then finds the first one's key here.
    batch_id = db.session.execute(
        upsert_insert(table)
        .values(
            offer_id=offer.id,
            kind="generated",
            requested=count,
            created_count=0,
            prefix=fmt.prefix or None,
            suffix=fmt.suffix or None,
            pattern=pattern,
            max_uses_per_code=max_uses,
            campaign_id=campaign_id,
            code_length=length,
            created_at=now,
            created_by=actor,
            status="running",
            request_key=request_key,
            updated_at=now,
        )
        .on_conflict_do_nothing(index_elements=["request_key"])
        .returning(table.c.id)
    ).scalar()
    if batch_id is None:
        found = batch_by_request_key(request_key)
        assert found is not None
        return found, False
    return db.session.get(CouponBatch, batch_id), True  # type: ignore[return-value]


def batch_by_request_key(request_key: str) -> CouponBatch | None:
    """The batch a form (or any caller) started under `request_key`, if any."""
    return db.session.scalar(sa.select(CouponBatch).where(CouponBatch.request_key == request_key))


def generate_codes_chunk(batch_id: int, *, now: datetime, limit: int = BACKGROUND_CHUNK) -> int:
    """Add up to `limit` codes to a running batch (one transaction's worth); the batch is
    done when it holds what was asked for. Returns the codes added (0: nothing to do)."""
    batch = db.session.scalar(
        sa.select(CouponBatch)
        .where(CouponBatch.id == batch_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    if batch is None or batch.status != "running":
        return 0
    offer = get_offer(batch.offer_id)
    if offer.status == OfferStatus.ENDED:
        raise Conflict(f"offer {offer.id} has ended", reason="offer_ended")
    fmt = CodeFormat(prefix=batch.prefix, suffix=batch.suffix, pattern=batch.pattern,
                     length=batch.code_length or 12)  # fmt: skip
    count = min(limit, batch.requested - batch.created_count)
    added = _insert_generated(batch, offer, fmt, count) if count > 0 else 0
    if batch.created_count >= batch.requested:
        batch.status = "done"
    batch.updated_at = now
    db.session.flush()
    return added


def fail_code_batch(batch_id: int, error: str, *, now: datetime) -> None:
    """Record why a background batch stopped; the codes made so far stay (and export)."""
    db.session.execute(
        sa.update(CouponBatch)
        .where(CouponBatch.id == batch_id, CouponBatch.status == "running")
        .values(status="failed", error=error[:500], updated_at=now)
    )


def stalled_batches(before: datetime, *, after_id: int = 0, limit: int = 100) -> list[int]:
    """Running batches no chunk moved since `before` (their job was lost): to go on.
    A page of `limit` in id order after `after_id`."""
    return list(
        db.session.scalars(
            sa.select(CouponBatch.id)
            .where(
                CouponBatch.status == constant("running"),
                CouponBatch.updated_at < before,
                CouponBatch.id > after_id,
            )
            .order_by(CouponBatch.id)
            .limit(limit)
        )
    )


def create_shared_code(
    offer_id: int, code: str, *, max_uses: int | None, now: datetime, actor: str
) -> CouponCode:
    """A public code such as SPRING25, with its own use limit (None: unlimited)."""
    normalised = normalise(code)
    if not is_well_formed(normalised):
        raise InvalidInput("a code is 3-64 letters and digits", field="code")
    offer = lock_for_issue(offer_id)
    table = CouponCode.__table__
    inserted = db.session.execute(
        upsert_insert(table)
        .values(
            code=normalised,
            offer_id=offer.id,
            kind=CodeKind.SHARED.value,
            status=CodeStatus.ACTIVE.value,
            max_uses=max_uses,
            uses=0,
            expires_at=code_expiry(current_terms(offer), now),
            issued_at=now,
            created_at=now,
        )
        .on_conflict_do_nothing(index_elements=["code"])
        .returning(table.c.id)
    ).scalar()
    if inserted is None:
        raise Conflict(f"the code {normalised} already exists", reason="code_exists")
    return db.session.get(CouponCode, inserted)  # type: ignore[return-value]


def import_codes(
    offer_id: int,
    codes: Sequence[str],
    *,
    max_uses: int | None,
    now: datetime,
    actor: str,
) -> tuple[CouponBatch, list[str], list[str]]:
    """Load externally generated codes into a new batch.

    Returns (batch, invalid codes, codes that already existed). Codes are normalised;
    repeats within the upload count once.
    """
    offer = lock_for_issue(offer_id)
    invalid, wanted, seen = [], [], set()
    for raw in codes:
        code = normalise(raw)
        if not is_well_formed(code):
            invalid.append(raw)
        elif code not in seen:
            seen.add(code)
            wanted.append(code)
    batch = CouponBatch(
        offer_id=offer.id,
        kind="imported",
        requested=len(wanted),
        created_count=0,
        max_uses_per_code=max_uses,
        created_at=now,
        created_by=actor,
    )
    db.session.add(batch)
    db.session.flush()
    batch.created_count = insert_codes(
        wanted,
        {
            "offer_id": offer.id,
            "batch_id": batch.id,
            "kind": CodeKind.IMPORTED.value,
            "status": CodeStatus.ACTIVE.value,
            "max_uses": max_uses,
            "uses": 0,
            "expires_at": code_expiry(current_terms(offer), now),
            "issued_at": now,
            "created_at": now,
        },
    )
    duplicates: list[str] = []
    if batch.created_count != len(wanted):
        mine = set(
            db.session.scalars(sa.select(CouponCode.code).where(CouponCode.batch_id == batch.id))
        )
        duplicates = [code for code in wanted if code not in mine]
    db.session.flush()
    return batch, invalid, duplicates


def get_batch(batch_id: int) -> CouponBatch:
    batch = db.session.get(CouponBatch, batch_id)
    if batch is None:
        raise NotFound(f"no batch {batch_id}")
    return batch


EXPORT_COLUMNS = ("code", "status", "uses", "max_uses", "member_id", "expires_at")


def export_batch_csv(batch_id: int) -> Iterator[str]:
    """The batch's codes as CSV text chunks, streamed from the database."""
    get_batch(batch_id)
    c = CouponCode
    query = (
        sa.select(c.code, c.status, c.uses, c.max_uses, c.member_id, c.expires_at)
        .where(c.batch_id == batch_id)
        .order_by(c.id)
        .execution_options(yield_per=10_000)
    )
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(EXPORT_COLUMNS)
    for index, row in enumerate(db.session.execute(query)):
        writer.writerow(
            [
                row[0],
                row[1],
                row[2],
                "" if row[3] is None else row[3],
                "" if row[4] is None else row[4],
                row[5].isoformat() if row[5] else "",
            ]
        )
        if index % 10_000 == 9_999:
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue()


def void_code(code_id: int, *, now: datetime) -> CouponCode:
    """Withdraw a code: it stops applying at once (existing redemptions stay)."""
    code = db.session.get(CouponCode, code_id)
    if code is None:
        raise NotFound(f"no code {code_id}")
    db.session.execute(
        sa.update(CouponCode)
        .where(CouponCode.id == code_id, CouponCode.status == CodeStatus.ACTIVE.value)
        .values(status=CodeStatus.VOID.value)
    )
    db.session.refresh(code)
    return code
