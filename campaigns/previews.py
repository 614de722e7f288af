"""Preview a campaign's message for one member, and test-send it to an address.

The preview renders every channel of the campaign's order with the member's real data (the
variant the member would get unless one is asked for), and says which channel the fan-out
would pick now, or why none. A coupon campaign shows a sample code (`PREVIEW-CODE`): no
code is issued before the send.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from campaigns import lifecycle
from campaigns.delivery import _choose, is_held_out, variant_for
from campaigns.engine_models import Campaign, OfferKind
from loyalty.errors import InvalidInput
from loyalty.members.resolution import current_member_id
from notifications import bulk, pipeline
from notifications.providers.base import Channel

SAMPLE_CODE = "PREVIEW-CODE"


def _variables(campaign: Campaign, variant: str, now: datetime) -> dict[str, Any]:
    variables: dict[str, Any] = {"campaign_id": campaign.id, "run": 0, "variant": variant}
    if campaign.offer_kind == OfferKind.COUPON.value:
        variables["offer_id"] = campaign.offer_id
        variables["coupon"] = {"code": SAMPLE_CODE, "expires_at": None}
    elif campaign.offer_kind == OfferKind.POINTS.value:
        variables["points"] = campaign.bonus_points
    elif campaign.offer_kind == OfferKind.MULTIPLIER.value:
        from datetime import timedelta

        variables["multiplier_pct"] = campaign.multiplier_pct
        until = now + timedelta(days=campaign.multiplier_days)
        variables["multiplier_until"] = until.isoformat()
    return variables


def _variant(campaign: Campaign, person: int, asked: str | None) -> dict[str, Any]:
    variants = lifecycle.content_of(campaign.id, campaign.version)["variants"]
    name = asked or variant_for(campaign.id, person, variants)
    for variant in variants:
        if variant["name"] == name:
            return variant
    raise InvalidInput(f"no variant {name!r}", field="variant")


def preview(
    campaign: Campaign,
    member_id: int,
    *,
    now: datetime,
    variant: str | None = None,
    locale: str | None = None,
) -> dict[str, Any]:
    person = current_member_id(member_id)
    chosen = _variant(campaign, person, variant)
    granted = bulk.marketing_consents([person])[person]
    reach = bulk.reachable([person], now)[person]
    channel, reason = _choose(campaign.channel_order, granted, reach)
    rendered = []
    for name in campaign.channel_order:
        key = chosen["templates"][name]
        resolved, out = pipeline.render_for_member(
            key,
            Channel(name),
            member_id=person,
            variables=_variables(campaign, chosen["name"], now),
            now=now,
            locale=locale,
            marketing=True,
        )
        rendered.append(
            {
                "channel": name,
                "variant": chosen["name"],
                "template": key,
                "locale": resolved.locale,
                "template_version": resolved.version,
                "subject": out.subject,
                "body": out.body,
                "html": out.html,
                "sms_segments": out.sms_segments,
            }
        )
    return {
        "member_id": person,
        "channel": channel.value if channel else None,
        "reason": reason,
        "held_out": is_held_out(campaign.id, person, campaign.holdout_pct),
        "variant": chosen["name"],
        "rendered": rendered,
    }


def test_send(
    campaign: Campaign,
    *,
    member_id: int,
    channel: str,
    to: str,
    variant: str | None,
    now: datetime,
    actor: str,
) -> dict[str, Any]:
    if channel not in campaign.channel_order:
        raise InvalidInput(f"{channel} is not in the campaign's channel order", field="channel")
    person = current_member_id(member_id)
    chosen = _variant(campaign, person, variant)
    key = chosen["templates"][channel]
    message = pipeline.queue_test_send(
        key,
        Channel(channel),
        member_id=person,
        to=to,
        variables=_variables(campaign, chosen["name"], now),
        now=now,
        actor=actor,
        marketing=True,
    )
    return {"message_id": message.id, "channel": channel, "template": key}
