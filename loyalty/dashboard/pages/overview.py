"""The first screen: members, points per day, liability, redemptions, running campaigns."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from flask_babel import gettext as _

from loyalty.clock import utcnow
from loyalty.dashboard import charts, stats
from loyalty.dashboard.access import needs
from loyalty.dashboard.blueprint import bp, render
from loyalty.dashboard.roles import Permission
from loyalty.db import db, prepare_to_write

DAYS = 30


def _figures() -> dict[str, Any]:
    snapshot = stats.latest_snapshot()
    if snapshot is None:
        # A fresh install before the first refresh job: compute once now (small then).
        prepare_to_write()
        snapshot = stats.refresh(utcnow())
        db.session.commit()
    return {"computed_at": snapshot.computed_at, **snapshot.figures}


@bp.route("/")
@needs(Permission.VIEW)
def overview() -> Any:
    figures = _figures()
    today = utcnow().date()
    series = stats.daily_series(today - timedelta(days=DAYS - 1), today)
    labels = [d[5:] for d in series["days"]]
    points_chart = charts.bars(
        _("Points per day"),
        labels,
        [
            charts.Series(_("issued"), series["points.issued"]),
            charts.Series(_("redeemed"), series["points.redeemed"]),
            charts.Series(_("expired"), series["points.expired"]),
        ],
    )
    redemptions_chart = charts.lines(
        _("Coupon redemptions per day"),
        labels,
        [
            charts.Series(_("online"), series["redemptions.online"]),
            charts.Series(_("in store"), series["redemptions.store"]),
        ],
    )
    tier_chart = charts.hbars(_("Members by tier"), sorted(figures["members_by_tier"].items()))
    channel_chart = charts.hbars(
        _("Members by channel"), sorted(figures["members_by_channel"].items())
    )
    return render(
        "overview.html",
        figures=figures,
        series=series,
        points_chart=points_chart,
        redemptions_chart=redemptions_chart,
        tier_chart=tier_chart,
        channel_chart=channel_chart,
        campaigns=_running_campaigns(),
    )


def _running_campaigns() -> list[dict[str, Any]]:
    """Campaigns running, scheduled or paused (the campaign pages' list)."""
    from loyalty.dashboard.pages.campaigns import running_campaigns

    return running_campaigns()
