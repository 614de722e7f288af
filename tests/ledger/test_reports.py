"""Finance reports: CSV on request, a default window, expiry months in the program's timezone."""

from __future__ import annotations

import csv
import io
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from loyalty.auth import scopes
from loyalty.clock import utcnow
from loyalty.ledger.policy import ExpiryPolicy

NEW_YORK = ZoneInfo("America/New_York")


@pytest.fixture
def program_in_new_york(app, monkeypatch):
    settings = app.extensions["omniloyal.settings"]
    monkeypatch.setitem(
        app.extensions, "omniloyal.settings", replace(settings, program_timezone="America/New_York")
    )


def _rows(response) -> list[list[str]]:
    return list(csv.reader(io.StringIO(response.get_data(as_text=True))))


def test_points_expiring_at_the_end_of_november_local_time_are_a_november_bucket(
    client, make, program_in_new_york
):
    member = make.member()
    end_of_november = datetime(2027, 12, 1, tzinfo=NEW_YORK)  # 05:00 UTC on 1 December
    assert end_of_november.astimezone(UTC).month == 12
    make.earn(member.id, 100, expires_at=end_of_november)
    make.earn(member.id, 40, expires_at=datetime(2028, 1, 1, tzinfo=NEW_YORK))

    report = client.get("/v1/reports/liability", headers=make.api_key(scopes.FINANCE_READ)).json

    assert report["timezone"] == "America/New_York"
    assert report["by_expiry_month"] == [
        {"expiry_month": "2027-11", "points": 100},
        {"expiry_month": "2027-12", "points": 40},
    ]


def test_month_end_expiry_ends_the_month_in_the_program_timezone():
    policy = ExpiryPolicy.parse("months:1:end", timezone="America/New_York")
    earned = datetime(2027, 10, 20, 12, tzinfo=UTC)
    assert policy.expires_at(earned) == datetime(2027, 12, 1, tzinfo=NEW_YORK)
    assert ExpiryPolicy.parse("months:1:end").expires_at(earned) == datetime(
        2027, 12, 1, tzinfo=UTC
    )


def test_the_liability_report_downloads_as_csv_by_format_or_accept(client, make):
    member = make.member()
    make.earn(member.id, 70, expires_at=datetime(2027, 3, 1, tzinfo=UTC))
    admin = make.api_key(scopes.FINANCE_READ)

    by_format = client.get("/v1/reports/liability?format=csv", headers=admin)
    by_accept = client.get("/v1/reports/liability", headers={**admin, "Accept": "text/csv"})

    for response in (by_format, by_accept):
        assert response.status_code == 200 and response.mimetype == "text/csv"
        assert "attachment" in response.headers["Content-Disposition"]
        assert _rows(response) == [["expiry_month", "points"], ["2027-02", "70"]]
    as_json = client.get("/v1/reports/liability", headers={**admin, "Accept": "*/*"})
    assert as_json.mimetype == "application/json"


def test_points_activity_defaults_to_the_last_30_days_and_downloads_as_csv(client, make):
    member = make.member()
    make.earn(member.id, 25)
    admin = make.api_key(scopes.FINANCE_READ)

    days = client.get("/v1/reports/points-activity", headers=admin).json["days"]

    today = utcnow().date()
    assert len(days) == 30
    assert (days[0]["day"], days[-1]["day"]) == (str(today - timedelta(days=29)), str(today))
    assert days[-1]["issued"] == 25

    response = client.get(
        "/v1/reports/points-activity",
        query_string={"since": str(today), "until": str(today)},
        headers={**admin, "Accept": "text/csv"},
    )
    assert response.mimetype == "text/csv"
    assert _rows(response) == [
        ["day", "issued", "redeemed", "expired", "adjusted", "reversed"],
        [str(today), "25", "0", "0", "0", "0"],
    ]


def test_every_report_declares_its_csv_form_in_the_document(client):
    paths = client.get("/openapi.json").json["paths"]
    reports = [path for path in paths if path.startswith("/v1/reports/")]
    assert reports
    for path in reports:
        operation = paths[path]["get"]
        assert "text/csv" in operation["responses"]["200"]["content"], path
        assert "format" in {parameter["name"] for parameter in operation["parameters"]}, path
