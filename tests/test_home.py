"""`/` is a page a person can use: it links the docs, the document and the health checks."""

from __future__ import annotations

import re
from urllib.parse import urljoin


def test_the_root_is_an_html_page_linking_docs_document_problems_and_health(client):
    response = client.get("/")
    assert response.status_code == 200
    assert response.mimetype == "text/html"
    links = re.findall(r'href="([^"]+)"', response.get_data(as_text=True))
    assert sorted(links) == [
        "docs",
        "guides/member-app",
        "guides/pos",
        "healthz",
        "openapi.json",
        "problems",
        "readyz",
    ]
    for link in links:
        target = client.get(urljoin("/", link))
        assert target.status_code == 200, link


def test_the_root_page_is_not_part_of_the_api_document(client):
    assert "/" not in client.get("/openapi.json").json["paths"]


def test_the_guides_are_served_as_their_markdown_text(client):
    guide = client.get("/guides/pos")
    assert guide.status_code == 200 and guide.mimetype == "text/plain"
    assert guide.get_data(as_text=True).startswith("# The till")
    assert client.get("/guides/nothing").status_code == 404
