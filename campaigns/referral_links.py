"""The share link of a referral code, `/r/<code>`: the page a friend opens. It names the
code and how to use it (join, then claim it in the app) and nothing about the referrer.

A plain Flask blueprint outside the API document, like the home page: no credential (the
friend has none yet). An unknown code is a 404, so the page never vouches for a code
that would be refused at the claim.
"""

from __future__ import annotations

from html import escape

import sqlalchemy as sa
from flask import Blueprint, Response

from campaigns.journey_models import ReferralCode
from loyalty.db import db

blp = Blueprint("referral_links", __name__)

PAGE = """<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <meta name="viewport" content="width=device-width, initial-scale=1">
  <meta name="robots" content="noindex">
  <title>You are invited</title>
  <style>
    body {{ font: 16px/1.5 system-ui, sans-serif; max-width: 32rem; margin: 3rem auto;
           padding: 0 1rem; color: #222; }}
    .code {{ font: 700 1.6rem/1.2 ui-monospace, monospace; letter-spacing: .1em; }}
  </style>
</head>
<body>
  <h1>A friend invited you</h1>
  <p>Your invitation code:</p>
  <p class="code" id="referral-code">{code}</p>
  <p>Join the programme in the app or at any store, then enter this code in the app within
     {days} days and before your first purchase. You both earn points when you make it.</p>
</body>
</html>
"""


@blp.get("/r/<string:code>")
def share_link(code: str) -> Response:
    from campaigns.referrals import CLAIM_WITHIN_DAYS

    wanted = code.strip().upper()[:16]
    found = db.session.scalar(sa.select(ReferralCode.code).where(ReferralCode.code == wanted))
    if found is None:
        return Response("No such invitation code.\n", status=404, mimetype="text/plain")
    page = PAGE.format(code=escape(found), days=CLAIM_WITHIN_DAYS)
    response = Response(page, mimetype="text/html")
    response.headers["Referrer-Policy"] = "no-referrer"  # the code stays out of referrers
    response.headers["Cache-Control"] = "no-store"
    return response
