"""Free-text notes on ledger transactions, stored beside the append-only ledger.

An adjustment's reason is the only free text the ledger takes. It may name the member (or
anyone), and `ledger_transactions` refuses UPDATE, so the text never goes there: it is a
`LedgerNote` keyed by the transaction, which erasure can blank. Reads show it as the
transaction's `reason`; rows written before notes existed keep theirs in the column.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from loyalty.db import db
from loyalty.ledger.models import LedgerNote, LedgerTransaction, TransactionKind


def add_note(tx: LedgerTransaction, text: str, *, now: datetime) -> None:
    db.session.execute(
        sa.insert(LedgerNote.__table__),
        {"transaction_id": tx.id, "member_id": tx.member_id, "text": text, "created_at": now},
    )
    tx.note = text  # type: ignore[attr-defined]  # shown as the reason (TransactionSchema)


def attach_notes(transactions: Iterable[LedgerTransaction]) -> None:
    """Give each adjustment its note (`tx.note`), with one query for a page of them."""
    adjustments = {tx.id: tx for tx in transactions if tx.kind == TransactionKind.ADJUST.value}
    if not adjustments:
        return
    notes = dict(
        db.session.execute(
            sa.select(LedgerNote.transaction_id, LedgerNote.text).where(
                LedgerNote.transaction_id.in_(list(adjustments))
            )
        ).all()
    )
    for tx_id, tx in adjustments.items():
        if tx_id in notes:
            tx.note = notes[tx_id]  # type: ignore[attr-defined]


def shown_reason(tx: Any) -> str | None:
    """The reason to show: the note (None once erased), else the legacy column."""
    if hasattr(tx, "note"):
        return tx.note
    return tx.reason


def export_notes(member_id: int) -> list[dict[str, Any]]:
    """Privacy export section: every note on the person's transactions."""
    from loyalty.members.privacy import same_person_ids

    notes = db.session.scalars(
        sa.select(LedgerNote)
        .where(LedgerNote.member_id.in_(same_person_ids(member_id)))
        .order_by(LedgerNote.transaction_id)
    )
    return [
        {
            "transaction_id": note.transaction_id,
            "text": note.text,
            "created_at": note.created_at.isoformat(),
            "erased_at": note.erased_at.isoformat() if note.erased_at else None,
        }
        for note in notes
    ]


def erase_notes(member_id: int, now: datetime) -> dict[str, Any]:
    """Erase step: blank the text of every note on the person's transactions. The
    transactions, entries and lots stay exactly as they are."""
    from loyalty.members.privacy import same_person_ids

    result = db.session.execute(
        sa.update(LedgerNote)
        .where(LedgerNote.member_id.in_(same_person_ids(member_id)), LedgerNote.erased_at.is_(None))
        .values(text=None, erased_at=now)
    )
    return {"notes_blanked": result.rowcount or 0}
