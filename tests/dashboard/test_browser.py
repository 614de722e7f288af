"""The dashboard in a real browser: Debian's Chromium driven by Playwright, against the
app on a real HTTP server started by the test.

Signs in as each role, builds a segment (live count), adjusts a member's points and finds
the change in the audit log, sends a form without its CSRF token (refused), walks the
main pages with the keyboard, keeps screenshots in test-artifacts/dashboard/ and runs
axe-core (vendored, served by the app) on each page: no serious or critical violation.
Without Chromium the tests skip on a developer machine and FAIL under CI=true.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from werkzeug.serving import make_server

from loyalty.clock import utcnow
from loyalty.dashboard import stats
from loyalty.db import db
from tests.dashboard.conftest import PASSWORD, make_user
from tests.test_docs_browser import CHROMIUM, CHROMIUM_ARGS
from tests.test_docs_browser import sync_playwright as sync_playwright  # the fixture

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "dashboard"
ROLES = ("admin", "marketer", "analyst", "support", "finance")
MAIN_PAGES = {
    "overview": "/dashboard/",
    "members": "/dashboard/members",
    "segments": "/dashboard/segments",
    "segment-new": "/dashboard/segments/new",
    "campaigns": "/dashboard/campaigns",
    "campaign-new": "/dashboard/campaigns/new",
    "journeys": "/dashboard/journeys",
    "offers": "/dashboard/offers",
    "settings": "/dashboard/settings",
    "templates": "/dashboard/settings/templates",
    "rule-new": "/dashboard/settings/rules/new",
    "consent-texts": "/dashboard/settings/consent-texts",
    "audit": "/dashboard/audit",
    "operations": "/dashboard/operations",
    "account": "/dashboard/account",
}


@pytest.fixture
def server_url(app: Flask) -> Iterator[str]:
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, name="dashboard-server", daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    thread.join(timeout=5)


@pytest.fixture
def browser(sync_playwright: Any) -> Iterator[Any]:
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            launched.close()


def expect(locator: Any) -> Any:
    from playwright.sync_api import expect as playwright_expect

    return playwright_expect(locator)


def _release_database() -> None:
    """The browser's requests run on server threads: end this thread's transaction (on
    SQLite every transaction holds the write lock)."""
    db.session.commit()
    db.session.remove()


def _sign_in(browser: Any, base: str, email: str, *, width: int = 1280) -> Any:
    page = browser.new_context(viewport={"width": width, "height": 900}).new_page()
    page.goto(f"{base}/dashboard/login")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"{base}/dashboard/")
    return page


def _seed(make: Any) -> list[int]:
    members = [make.member(points=p).id for p in (40, 120, 250, 600)]
    stats.refresh(utcnow())
    db.session.commit()
    return members


def test_each_role_signs_in_and_sees_its_own_menu(browser, server_url, make):
    _seed(make)
    for role in ROLES:
        make_user(role)
    _release_database()
    for role in ROLES:
        page = _sign_in(browser, server_url, f"{role}@example.test")
        nav = page.get_by_role("navigation", name="Main")
        assert nav.get_by_role("link", name="Overview").is_visible()
        assert nav.get_by_role("link", name="Operations").count() == (1 if role == "admin" else 0)
        assert page.locator("svg.chart").count() == 4  # the first screen has real charts
        forbidden = page.goto(f"{server_url}/dashboard/operations")
        assert forbidden.status == (200 if role == "admin" else 403), role
        page.context.close()


def test_a_marketer_builds_a_segment_with_a_live_count(browser, server_url, make):
    from campaigns.profiles import refresh_people

    refresh_people(_seed(make), utcnow())
    make_user("marketer")
    _release_database()
    page = _sign_in(browser, server_url, "marketer@example.test")
    page.goto(f"{server_url}/dashboard/segments/new")
    page.get_by_label("Name", exact=True).fill("Over 100 points")
    page.locator("#field_0").select_option("points_balance")
    page.locator("#op_0").select_option("gte")
    page.locator("#value_0").fill("100")
    expect(page.locator("#segment-count")).to_have_text("3")
    page.locator("#value_0").fill("300")
    expect(page.locator("#segment-count")).to_have_text("1")
    page.get_by_role("button", name="Save segment").click()
    page.wait_for_selector("text=Segment saved.")
    assert page.locator("#segment-count").inner_text() == "1"


def test_support_adjusts_points_and_finds_it_in_the_audit_log(browser, server_url, make):
    member_id = _seed(make)[0]
    make_user("support")
    _release_database()
    page = _sign_in(browser, server_url, "support@example.test")
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Members").click()
    page.get_by_label("Member id, phone, email, card or app user id").fill(str(member_id))
    page.get_by_role("button", name="Find").click()
    page.wait_for_url(f"{server_url}/dashboard/members/{member_id}")
    page.get_by_label("Points (negative to remove)").fill("35")
    page.get_by_label("Reason", exact=True).fill("late delivery goodwill")
    page.get_by_role("button", name="Adjust").click()
    page.wait_for_selector("text=35 points adjusted.")
    assert page.locator("#balance").inner_text() == "75"

    page.get_by_role("link", name="Audit log").click()
    page.get_by_label("Target id", exact=True).fill(str(member_id))
    page.get_by_role("button", name="Search").click()
    row = page.locator("table.audit tbody tr").filter(has_text="points.adjust")
    assert row.count() == 1
    assert "late delivery goodwill" in row.inner_text()
    assert '"points":40' in row.inner_text().replace(" ", "")


def test_a_form_without_its_csrf_token_is_refused(browser, server_url, make):
    member_id = _seed(make)[0]
    make_user("support")
    _release_database()
    page = _sign_in(browser, server_url, "support@example.test")
    page.goto(f"{server_url}/dashboard/members/{member_id}")
    page.evaluate("document.querySelectorAll('input[name=csrf_token]').forEach(e => e.remove())")
    page.get_by_label("Points (negative to remove)").fill("500")
    page.get_by_label("Reason", exact=True).fill("no token")
    with page.expect_response(lambda r: r.request.method == "POST") as answer:
        page.get_by_role("button", name="Adjust").click()
    assert answer.value.status == 400
    assert page.get_by_text("without a valid security token").is_visible()
    page.goto(f"{server_url}/dashboard/members/{member_id}")
    assert page.locator("#balance").inner_text() == "40"  # nothing changed


def test_a_marketer_creates_test_sends_launches_a_campaign_and_reads_its_results(
    browser, server_url, make
):
    from notifications.providers.base import Channel
    from tests.campaigns import campaign_factories as cf

    members = [make.member(phone=cf.phone(), region=cf.REGION).id for _ in range(6)]
    for member_id in members:
        cf.consent(member_id, Channel.SMS, Channel.EMAIL)
    cf.segment("North shoppers")
    make_user("marketer")
    _release_database()
    page = _sign_in(browser, server_url, "marketer@example.test")
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Campaigns").click()
    page.get_by_role("link", name="New campaign").click()
    page.get_by_label("Name", exact=True).fill("Spring in the north")
    page.get_by_label("Segment").select_option(label="North shoppers")
    page.get_by_label("What recipients get").select_option("points")
    page.get_by_label("Bonus points").fill("50")
    page.get_by_label("Share of the audience held out, %").fill("0")
    page.get_by_role("button", name="Save draft and review").click()
    page.wait_for_selector("text=Draft saved")
    expect(page.locator("#estimate-audience")).to_have_text("6")

    page.get_by_label("Render for member id").fill(str(members[0]))
    page.get_by_role("button", name="Preview").click()
    expect(page.locator(".preview pre").first).to_be_visible()
    page.get_by_label("Send to (phone or email)").fill("+4915100000999")
    page.get_by_role("button", name="Send a test").click()
    page.wait_for_selector("text=Test message queued.")
    page.get_by_role("button", name="Launch").click()
    expect(page.locator("#campaign-status")).to_have_text("scheduled")

    db.session.remove()
    cf.deliver()  # the deliver-campaigns job's work, as a worker would run it
    _release_database()
    page.reload()
    page.get_by_role("link", name="Results").click()
    assert page.locator("svg.chart").count() == 4
    assert page.get_by_text("Funnel").first.is_visible()
    page.screenshot(path=str(ARTIFACTS / "campaign-results.png"), full_page=True)


def test_an_admin_publishes_a_new_consent_text_version(browser, server_url, make):
    make_user("admin")
    _release_database()
    page = _sign_in(browser, server_url, "admin@example.test")
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Settings").click()
    page.get_by_role("link", name="Consent texts").click()
    page.get_by_role("link", name="Open sms marketing zh").click()
    page.get_by_label("Text of the new version").fill("我同意接收营销短信。")
    page.get_by_role("button", name="Publish a new version").click()
    page.wait_for_selector("text=Version 1 is in force.")
    page.get_by_label("Text of the new version").fill("我同意接收营销短信。回复 TD 退订。")
    page.keyboard.press("Tab")  # the keyboard reaches the button
    page.keyboard.press("Enter")
    page.wait_for_selector("text=Version 2 is in force.")
    row = page.locator("#text-sms-marketing-zh")
    assert "v2" in row.inner_text()


def test_main_pages_keyboard_phone_screenshots_and_accessibility(browser, server_url, make):
    from tests.journeys.helpers import journey

    member_id = _seed(make)[0]
    flow_id = journey([{"type": "wait", "days": 1}, {"type": "points", "points": 5}]).id
    make_user("admin")
    _release_database()
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    pages = {**MAIN_PAGES, "member": f"/dashboard/members/{member_id}",
             "journey": f"/dashboard/journeys/{flow_id}"}  # fmt: skip
    for width, suffix in ((1280, ""), (390, "-phone")):
        page = _sign_in(browser, server_url, "admin@example.test", width=width)
        for name, path in pages.items():
            response = page.goto(f"{server_url}{path}")
            assert response.status == 200, path
            page.screenshot(path=str(ARTIFACTS / f"{name}{suffix}.png"), full_page=True)
            if suffix:
                overflow = page.evaluate(
                    "document.documentElement.scrollWidth - document.documentElement.clientWidth"
                )
                assert overflow <= 1, f"{path} scrolls sideways on a phone ({overflow}px)"
                continue
            page.keyboard.press("Tab")  # the first stop is the skip link
            assert page.evaluate("document.activeElement.className") == "skip"
            page.add_script_tag(url=f"{server_url}/dashboard/static/axe.min.js")
            results = page.evaluate("axe.run(document, {resultTypes: ['violations']})")
            serious = [
                (v["id"], v["impact"], [n["target"] for n in v["nodes"]][:3])
                for v in results["violations"]
                if v["impact"] in ("serious", "critical")
            ]
            assert not serious, (path, serious)
        page.context.close()
