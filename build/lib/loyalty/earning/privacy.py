"""Erasure in the earning domain: what it scrubs and what it keeps.

Orders, lines and refunds are sales records the retailer must keep; they hold ids,
amounts, SKUs and the client's own order and refund ids, no personal data, so they stay
under the pseudonymous member id (like the ledger they explain). An activity's
`reference` is whatever key the client chose to record with it (not used for dedupe,
which is ours): it is blanked, since a client may well have put an email in it.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa

from loyalty.db import db
from loyalty.earning.models import ActivityEvent, Order


def erase_member_earning(member_id: int, now: datetime) -> dict[str, Any]:
    from loyalty.members.privacy import same_person_ids

    ids = same_person_ids(member_id)
    blanked = db.session.execute(
        sa.update(ActivityEvent)
        .where(ActivityEvent.member_id.in_(ids), ActivityEvent.reference.is_not(None))
        .values(reference=None)
    ).rowcount
    orders = db.session.scalar(sa.select(sa.func.count()).where(Order.member_id.in_(ids)))
    return {"activity_references_blanked": blanked or 0, "orders_kept": orders or 0}
