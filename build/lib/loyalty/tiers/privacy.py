"""Erasure in the tiers domain: the tier stays with the pseudonymous account.

Tiers keep no per-member rows beyond `members.tier_id`: a tier is derived from the ledger
(qualifying points or spend), which erasure keeps, so the tier is kept too and the nightly
evaluation (active members only) leaves an erased member alone. The step records it.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from loyalty.db import db
from loyalty.members.models import Member
from loyalty.tiers.models import Tier


def erase_member_tier(member_id: int, now: datetime) -> dict[str, Any]:
    member = db.session.get(Member, member_id)
    tier = db.session.get(Tier, member.tier_id) if member and member.tier_id else None
    return {"tier_kept": tier.code if tier else None}
