"""Every HTTP blueprint, registered in one place under /v1."""

from __future__ import annotations

from flask_smorest import Api


def register_blueprints(api: Api) -> None:
    from campaigns.api import blp as segments
    from campaigns.campaign_api import blp as campaigns
    from loyalty.auth.api import blp as auth
    from loyalty.coupons.api import blp as coupons
    from loyalty.earning.api import blp as earning
    from loyalty.health import blp as health
    from loyalty.ledger.api import blp as ledger
    from loyalty.members.api import blp as members
    from loyalty.outbox.api import blp as outbox
    from loyalty.stores.api import blp as stores
    from loyalty.tiers.api import blp as tiers
    from notifications.api import blp as notifications
    from notifications.login_codes.api import blp as login_codes
    from notifications.push import blp as push
    from notifications.webhooks.api import blp as webhooks

    api.register_blueprint(health)
    for blueprint in (
        auth,
        members,
        stores,
        ledger,
        earning,
        tiers,
        coupons,
        outbox,
        notifications,
        push,
        webhooks,
        login_codes,
        segments,
        campaigns,
    ):
        api.register_blueprint(blueprint, url_prefix="/v1")
