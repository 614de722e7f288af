"""The share link of a referral code, `/r/<code>`: the page a friend opens. It names the
code and how to use it (join, then claim it in the app) and nothing about the referrer.

A plain Flask blueprint outside the API document, like the home page, rendering
templates/pages/referral.html: no credential (the friend has none yet). An unknown code is
a 404, so the page never vouches for a code that would be refused at the claim.
"""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa
from flask import Blueprint, Response, render_template

from campaigns.journey_models import ReferralCode
from loyalty.db import db

PAGES = Path(__file__).resolve().parent.parent / "templates" / "pages"
blp = Blueprint("referral_links", __name__, template_folder=str(PAGES))


@blp.get("/r/<string:code>")
def share_link(code: str) -> Response:
    from campaigns.referrals import CLAIM_WITHIN_DAYS

    wanted = code.strip().upper()[:16]
    found = db.session.scalar(sa.select(ReferralCode.code).where(ReferralCode.code == wanted))
    if found is None:
        return Response("No such invitation code.\n", status=404, mimetype="text/plain")
    page = render_template("referral.html", code=found, days=CLAIM_WITHIN_DAYS)  # escaped
    response = Response(page, mimetype="text/html")
    response.headers["Referrer-Policy"] = "no-referrer"  # the code stays out of referrers
    response.headers["Cache-Control"] = "no-store"
    return response
