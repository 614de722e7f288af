"""`/docs` in a real browser: Swagger UI renders our OpenAPI 3.1 document, offline, and
"Try it out" works with a pasted API key.

Headless Chromium is Debian's `chromium` package driven by Playwright (never
`playwright install`, which downloads browsers from outside). Without it the test is
skipped on a developer machine and FAILS under CI=true (.ci/run installs it).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from flask import Flask
from werkzeug.serving import make_server

from loyalty.db import db
from tests.conftest import IN_CI

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--headless",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
MISSING_CHROMIUM = f"{CHROMIUM} is missing: apt-get update && apt-get install -y chromium"


@pytest.fixture(scope="module")
def sync_playwright() -> Any:
    if not os.path.exists(CHROMIUM):
        if IN_CI:
            pytest.fail(f"CI=true and {MISSING_CHROMIUM}", pytrace=False)
        pytest.skip(MISSING_CHROMIUM)
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:  # pragma: no cover - a dev extra; `make install` brings it
        if IN_CI:
            pytest.fail("CI=true and playwright is not installed (pip install -e '.[dev]')")
        pytest.skip("playwright is not installed: pip install -e '.[dev]'")
    return sync_playwright


@pytest.fixture
def server_url(app: Flask) -> Iterator[str]:
    """The app on a real HTTP server on a free localhost port, for the browser to call."""
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, name="docs-test-server", daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    thread.join(timeout=5)


def _listed_operations(page: Any) -> set[str]:
    """Every operation Swagger UI lists, scrolling from top to bottom: past about 130
    operations it virtualises the list (`.operations-virtual`), rendering the operations
    in view only, so they are collected as they scroll by."""
    seen: set[str] = set()
    last = -1
    page.evaluate("() => window.scrollTo(0, 0)")
    for _ in range(2000):
        page.wait_for_timeout(40)
        seen.update(page.eval_on_selector_all(".opblock", "nodes => nodes.map(n => n.id)"))
        position = page.evaluate(
            "() => { window.scrollBy(0, window.innerHeight / 2); return window.scrollY; }"
        )
        if position == last:
            break
        last = position
    page.evaluate("() => window.scrollTo(0, 0)")
    return seen


def _scroll_to(page: Any, selector: str) -> None:
    """Scroll the virtualised list until `selector` is rendered."""
    page.evaluate("() => window.scrollTo(0, 0)")
    for _ in range(2000):
        if page.locator(selector).count():
            page.locator(selector).first.scroll_into_view_if_needed()
            return
        page.evaluate("() => window.scrollBy(0, window.innerHeight / 2)")
        page.wait_for_timeout(40)
    raise AssertionError(f"{selector} never rendered")


def _operation_count(document: dict[str, Any]) -> int:
    methods = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}
    return sum(1 for item in document["paths"].values() for method in item if method in methods)


def test_docs_list_every_operation_and_try_it_out_works_with_a_pasted_api_key(
    sync_playwright: Any, server_url: str, client, make
):
    member_id = make.member(points=120).id
    api_key = make.api_key("members:read")["Authorization"].removeprefix("Bearer ")
    expected_operations = _operation_count(client.get("/openapi.json").json)
    # The browser's requests run on the server's threads: end this thread's transaction
    # (on SQLite every transaction takes the write lock) so they don't wait for it.
    db.session.remove()

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            page.set_default_timeout(15_000)
            outside: list[str] = []
            page.on(
                "request",
                lambda request: (
                    None if request.url.startswith(server_url) else outside.append(request.url)
                ),
            )
            page.goto(f"{server_url}/docs")
            page.wait_for_selector(".opblock")

            # Every operation of the document is listed, and the UI reports no error
            # (Swagger UI 4 said "does not specify a valid version field" for 3.1).
            assert len(_listed_operations(page)) == expected_operations
            assert page.locator(".errors-wrapper").count() == 0

            # Authorize: paste the key into the ApiKey scheme.
            page.locator(".btn.authorize").first.click()
            scheme = page.locator(".auth-container", has_text="ApiKey")
            scheme.locator("input").fill(api_key)
            scheme.get_by_role("button", name="Apply credentials").click()
            scheme.get_by_role("button", name="Close").click()

            # Try it out on a GET with a path parameter.
            _scroll_to(page, '[data-path="/v1/members/{member_id}/balance"]')
            operation = page.locator(
                ".opblock-get",
                has=page.locator('[data-path="/v1/members/{member_id}/balance"]'),
            )
            operation.locator(".opblock-summary").click()
            operation.get_by_role("button", name="Try it out").click()
            operation.locator('input[placeholder="member_id"]').fill(str(member_id))
            operation.get_by_role("button", name="Execute").click()
            status = operation.locator(".live-responses-table tbody .response-col_status")
            status.first.wait_for()

            assert status.first.inner_text().strip() == "200"
            assert (
                f"Authorization: Bearer {api_key}"
                in operation.locator(".curl-command").inner_text()
            )
            assert '"balance": 120' in operation.locator(".live-responses-table").inner_text()
            # Offline: Swagger UI's assets come from this server, nothing from a CDN.
            assert outside == []
        finally:
            browser.close()
