"""Erasure in the coupons domain: nothing personal to scrub, and why the rest stays.

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
    from loyalty.members.privacy import same_person_ids

    ids = same_person_ids(member_id)
    codes = db.session.scalar(sa.select(sa.func.count()).where(CouponCode.member_id.in_(ids)))
    redemptions = db.session.scalar(
        sa.select(sa.func.count()).where(CouponRedemption.member_id.in_(ids))
    )
    return {"codes_kept": codes or 0, "redemptions_kept": redemptions or 0}
