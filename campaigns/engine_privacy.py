"""The campaign engine in exports, erasure and merges.

`campaign_recipients` is the only member-scoped table of the engine: ids and outcomes (run,
status, channel, variant, the message and code ids), no personal data. Erasure keeps the
rows (a campaign's results and finance export stay true; the messages they point at are
blanked by notifications' own step); the export lists them; a merge moves the merged id's
rows to the survivor unless the survivor has its own row in that run (then the merged row
stays where it is and readers resolve it through the merge rule).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa

from campaigns.engine_models import Campaign, CampaignRecipient, CampaignRun
from loyalty.db import db
from loyalty.members.resolution import history_member_ids


def erase_member_campaigns(member_id: int, now: datetime) -> dict[str, Any]:
    table = CampaignRecipient.__table__
    kept = db.session.scalar(
        sa.select(sa.func.count())
        .select_from(table)
        .where(table.c.member_id.in_(history_member_ids(member_id)))
    )
    return {"recipient_rows_kept": int(kept or 0), "personal_data": "none (ids and outcomes)"}


def export_member_campaigns(member_id: int) -> list[dict[str, Any]]:
    recipients = CampaignRecipient.__table__
    rows = db.session.execute(
        sa.select(
            recipients.c.campaign_id,
            Campaign.__table__.c.name,
            CampaignRun.__table__.c.number,
            recipients.c.member_id,
            recipients.c.status,
            recipients.c.channel,
            recipients.c.variant,
            recipients.c.reason,
            recipients.c.message_id,
            recipients.c.code_id,
            recipients.c.processed_at,
        )
        .join(Campaign.__table__, Campaign.__table__.c.id == recipients.c.campaign_id)
        .join(CampaignRun.__table__, CampaignRun.__table__.c.id == recipients.c.run_id)
        .where(recipients.c.member_id.in_(history_member_ids(member_id)))
        .order_by(recipients.c.run_id)
    ).all()
    return [
        {
            "campaign_id": row.campaign_id,
            "campaign": row.name,
            "run": row.number,
            "member_id": row.member_id,
            "status": row.status,
            "channel": row.channel,
            "variant": row.variant,
            "reason": row.reason,
            "message_id": row.message_id,
            "code_id": row.code_id,
            "processed_at": row.processed_at.isoformat() if row.processed_at else None,
        }
        for row in rows
    ]


def merge_member_campaigns(merged_id: int, survivor_id: int, now: datetime) -> dict[str, Any]:
    table = CampaignRecipient.__table__
    survivor = table.alias("survivor")
    moved = db.session.execute(
        sa.update(table)
        .where(
            table.c.member_id == merged_id,
            ~sa.exists().where(
                survivor.c.run_id == table.c.run_id, survivor.c.member_id == survivor_id
            ),
        )
        .values(member_id=survivor_id)
    ).rowcount
    return {"recipient_rows_moved": moved or 0}


def _register() -> None:
    from loyalty.members import merge, privacy

    privacy.register_erase_step("campaign_engine", erase_member_campaigns)
    privacy.register_export_section("campaigns", export_member_campaigns)
    merge.register_merge_step(merge_member_campaigns)


_register()
