"""The page at `/`: where a person who opens the service in a browser finds the way on.

A plain Flask blueprint, not part of the API (it is not in the OpenAPI document).
"""

from __future__ import annotations

import os

from flask import Blueprint, Response, abort

GUIDES_DIR = os.path.join(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "docs", "guides"
)
GUIDES = {"member-app": "member-app.md", "pos": "pos.md"}  # served as their Markdown text

blp = Blueprint("home", __name__)

# Relative links, so the page also works behind a proxy that mounts the service under a path.
PAGE = """<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <meta name="viewport" content="width=device-width, initial-scale=1">
  <title>Omniloyal</title>
  <style>
    body { font: 16px/1.5 system-ui, sans-serif; max-width: 40rem; margin: 3rem auto;
           padding: 0 1rem; color: #222; }
    code { background: #f2f2f2; padding: 0 .25em; }
    li { margin: .4rem 0; }
  </style>
</head>
<body>
  <h1>Omniloyal</h1>
  <p>One membership, one points ledger and coupons across web shop, app and stores.
     The API lives under <code>/v1</code>; every call but the health checks sends
     <code>Authorization: Bearer &lt;API key or member token&gt;</code>.</p>
  <ul>
    <li><a href="docs">API docs</a>: every operation; <em>Authorize</em> with a key, then
        <em>Try it out</em>.</li>
    <li><a href="openapi.json">OpenAPI document</a> (3.1), for client generators.</li>
    <li><a href="problems">Problem types</a>: what each error's <code>type</code> means.</li>
    <li>Guides, with curl examples that run against <code>make run</code>:
        <a href="guides/member-app">the member app</a> (member tokens, code login,
        <code>/v1/me</code>, CORS; docs/guides/member-app.md) and
        <a href="guides/pos">the till</a> (identify, coupons, paying with points, refunds;
        docs/guides/pos.md).</li>
    <li><a href="healthz">Liveness</a> and <a href="readyz">readiness</a> (database and
        queue).</li>
  </ul>
  <p>Running <code>make run</code>? It printed demo API keys; they are kept in
     <code>instance/demo-keys.json</code>.</p>
</body>
</html>
"""


@blp.get("/")
def home() -> Response:
    return Response(PAGE, mimetype="text/html")


@blp.get("/guides/<name>")
def guide(name: str) -> Response:
    """A guide from docs/guides, as Markdown text (readable as is; absent from an install
    without the docs folder)."""
    if name not in GUIDES:
        abort(404)
    try:
        with open(os.path.join(GUIDES_DIR, GUIDES[name]), encoding="utf-8") as file:
            text = file.read()
    except OSError:
        abort(404)
    return Response(text, mimetype="text/plain")  # a browser shows it; text/markdown downloads
