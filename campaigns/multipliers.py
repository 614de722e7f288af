"""The earn multiplier offer: a recipient of a `multiplier` campaign earns
`multiplier_pct` on purchases for `multiplier_days` after their message was queued.

Registered with the earning domain as a source of per-member rules, asked on every order.
The campaigns that can still apply are cached per process (5 s, like the earning rules),
so an order costs nothing extra while no multiplier campaign is live, and one indexed read
of the person's recipient rows (`ix_campaign_recipients_member`) while one is.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import sqlalchemy as sa

from campaigns.engine_models import Campaign, CampaignRecipient, OfferKind, RecipientStatus
from loyalty.cache import TTLCache
from loyalty.db import db
from loyalty.earning import engine

LIVE = ("scheduled", "running", "paused", "completed")

# campaign id -> (name, multiplier_pct, days, finished_at) of multiplier campaigns launched
_campaigns: TTLCache[dict[int, tuple[str, int, int, datetime | None]]] = TTLCache(
    "multiplier campaigns", models=(Campaign,)
)


def _load() -> dict[int, tuple[str, int, int, datetime | None]]:
    table = Campaign.__table__
    rows = db.session.execute(
        sa.select(
            table.c.id,
            table.c.name,
            table.c.multiplier_pct,
            table.c.multiplier_days,
            table.c.finished_at,
        ).where(table.c.offer_kind == OfferKind.MULTIPLIER.value, table.c.status.in_(LIVE))
    ).all()
    return {
        row.id: (row.name, row.multiplier_pct, row.multiplier_days, row.finished_at) for row in rows
    }


def multiplier_rules(person_id: int, moment: datetime) -> list[engine.RuleSpec]:
    live = {
        campaign_id: values
        for campaign_id, values in _campaigns.get("live", _load).items()
        if values[3] is None or values[3] + timedelta(days=values[2]) > moment
    }
    if not live:
        return []
    recipients = CampaignRecipient.__table__
    rows = db.session.execute(
        sa.select(recipients.c.campaign_id, recipients.c.processed_at).where(
            recipients.c.member_id == person_id,
            recipients.c.campaign_id.in_(list(live)),
            recipients.c.status == RecipientStatus.QUEUED.value,
        )
    ).all()
    rules = []
    for campaign_id, processed_at in rows:
        name, pct, days, _ = live[campaign_id]
        ends = processed_at + timedelta(days=days)
        if processed_at <= moment < ends:
            rules.append(
                engine.RuleSpec(
                    id=None,
                    name=f"campaign {campaign_id}: {name}",
                    kind="multiplier",
                    multiplier_pct=pct,
                    starts_at=processed_at,
                    ends_at=ends,
                )
            )
    return rules


def _register() -> None:
    from loyalty.earning.operations import register_member_rules

    register_member_rules(multiplier_rules)


_register()
