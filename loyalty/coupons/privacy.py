"""Erasure in the coupons domain: the client's free data (redemption `metadata`, rollback
reasons) is blanked; why the rest stays.

Codes, redemptions and per-member use counters hold ids, codes, amounts, the offer
version and the client's checkout and order references: no personal data. They stay, so
budgets, limits and order rollbacks keep working, and a code the person still holds (on
paper, say) can still be used at a till, where a code owned by a member needs no
identification. The step records what was kept in the erasure summary.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa

from loyalty.coupons.models import CouponCode, CouponRedemption
from loyalty.db import db


def erase_member_coupons(member_id: int, now: datetime) -> dict[str, Any]:
    from loyalty.members.resolution import history_member_ids

    ids = history_member_ids(member_id)
    codes = db.session.scalar(sa.select(sa.func.count()).where(CouponCode.member_id.in_(ids)))
    redemptions = db.session.scalar(
        sa.select(sa.func.count()).where(CouponRedemption.member_id.in_(ids))
    )
    # A redemption's `metadata` and rollback reason are the client's free text: blanked.
    blanked = db.session.execute(
        sa.update(CouponRedemption)
        .where(
            CouponRedemption.member_id.in_(ids),
            sa.or_(
                CouponRedemption.extra.is_not(None), CouponRedemption.rollback_reason.is_not(None)
            ),
        )
        .values(extra=None, rollback_reason=None)
        .execution_options(synchronize_session=False)
    ).rowcount
    return {
        "codes_kept": codes or 0,
        "redemptions_kept": redemptions or 0,
        "redemption_metadata_blanked": blanked or 0,
    }
