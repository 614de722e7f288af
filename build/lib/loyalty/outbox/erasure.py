"""The outbox's erase step: a delivery's last error may quote personal data.

Payloads carry ids only, but an exception a consumer raised (e.g. a provider refusing a
phone number) is stored as the delivery's `last_error`. Erasure blanks those errors for
every event of the member and the members merged into them.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa

from loyalty.db import db
from loyalty.members.privacy import register_erase_step, same_person_ids
from loyalty.outbox.models import OutboxDelivery, OutboxEvent


def erase_delivery_errors(member_id: int, now: datetime) -> dict[str, Any]:
    d = OutboxDelivery.__table__
    events = sa.select(OutboxEvent.id).where(OutboxEvent.member_id.in_(same_person_ids(member_id)))
    blanked = db.session.execute(
        sa.update(d)
        .where(d.c.event_id.in_(events), d.c.last_error.is_not(None))
        .values(last_error="(erased)", updated_at=now)
    ).rowcount
    return {"delivery_errors_blanked": blanked or 0}


register_erase_step("outbox", erase_delivery_errors)
