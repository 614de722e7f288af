"""The pages problem `type`s resolve to: `/problems` lists every problem type, and
`/problems/<slug>` explains one (RFC 9457: a type URI, dereferenced, documents the type).

A plain Flask blueprint, not part of the API; the list comes from the one registry every
error class and HTTP-level problem registers in (loyalty.errors.PROBLEM_TYPES).
"""

from __future__ import annotations

from html import escape

from flask import Blueprint, Response

from loyalty.contract import problem_types_index
from loyalty.errors import PROBLEM_TYPES, NotFound

blp = Blueprint("problems", __name__)

STYLE = """<style>
  body { font: 16px/1.5 system-ui, sans-serif; max-width: 48rem; margin: 3rem auto;
         padding: 0 1rem; color: #222; }
  code { background: #f2f2f2; padding: 0 .25em; }
  dt { margin-top: 1.2rem; font-weight: 600; }
</style>"""

INTRO = """<p>Every error is an RFC 9457 <code>application/problem+json</code> body:
<code>type</code> (stable: switch on it), <code>title</code> (one per type),
<code>status</code>, <code>detail</code> (this occurrence) and <code>request_id</code>
(matches <code>X-Request-ID</code> and the server's log). A 422 adds <code>errors</code>,
a list of <code>{"field": "lines.0.unit_price_minor", "message": "..."}</code>, the same
whether the schema or a business rule refused the field.</p>"""


def _page(title: str, body: str) -> Response:
    html = (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{escape(title)}</title>{STYLE}</head><body>{body}</body></html>"
    )
    return Response(html, mimetype="text/html")


def _entry(item: dict) -> str:  # type: ignore[type-arg]
    slug = escape(item["slug"])
    return (
        f'<dt id="{slug}"><a href="/problems/{slug}"><code>/problems/{slug}</code></a> '
        f"&middot; {item['status']} &middot; {escape(item['title'])}</dt>"
        f"<dd>{escape(item['description'])}</dd>"
    )


@blp.get("/problems")
def index() -> Response:
    entries = "".join(_entry(item) for item in problem_types_index())
    return _page("Omniloyal problem types", f"<h1>Problem types</h1>{INTRO}<dl>{entries}</dl>")


@blp.get("/problems/<slug>")
def problem_type(slug: str) -> Response:
    known = PROBLEM_TYPES.get(slug)
    if known is None:
        raise NotFound(f"no problem type {slug!r}")
    body = (
        f"<h1>{escape(known.title)}</h1>"
        f"<p><code>type: /problems/{escape(known.slug)}</code> &middot; HTTP {known.status}</p>"
        f"<p>{escape(known.description)}</p>"
        '<p><a href="/problems">Every problem type</a></p>'
    )
    return _page(known.title, body)
