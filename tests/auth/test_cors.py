"""CORS: the member app's web front end, on a configured origin, may call the member's own
endpoints and the code login; API-key endpoints never answer a browser on another origin."""

from __future__ import annotations

from dataclasses import replace

import pytest

from loyalty.auth import scopes

APP_ORIGIN = "https://app.example.com"


@pytest.fixture(autouse=True)
def app_origin_configured(app, monkeypatch):
    settings = app.extensions["omniloyal.settings"]
    monkeypatch.setitem(
        app.extensions, "omniloyal.settings", replace(settings, cors_origins=(APP_ORIGIN,))
    )


def _preflight(client, path: str, method: str = "GET", origin: str = APP_ORIGIN):
    return client.options(
        path,
        headers={
            "Origin": origin,
            "Access-Control-Request-Method": method,
            "Access-Control-Request-Headers": "authorization, content-type, idempotency-key",
        },
    )


@pytest.mark.parametrize(
    ("path", "method"),
    [
        ("/v1/me", "GET"),
        ("/v1/me/balance", "GET"),
        ("/v1/me/preferences", "PUT"),
        ("/v1/me/coupons/validate", "POST"),
        ("/v1/login-codes", "POST"),
        ("/v1/login-codes/verify", "POST"),
    ],
)
def test_a_preflight_from_the_app_origin_is_answered_without_credentials(client, path, method):
    response = _preflight(client, path, method)

    assert response.status_code == 204
    assert response.headers["Access-Control-Allow-Origin"] == APP_ORIGIN
    assert method in response.headers["Access-Control-Allow-Methods"]
    allowed = response.headers["Access-Control-Allow-Headers"].lower()
    assert {"authorization", "content-type", "idempotency-key"} <= {
        header.strip() for header in allowed.split(",")
    }
    assert "Access-Control-Allow-Credentials" not in response.headers  # bearer, no cookies


def test_member_calls_from_the_app_origin_can_be_read_by_the_page(client, make):
    member = make.member(points=120)
    token = make.member_token(member.id)

    response = client.get("/v1/me/balance", headers={**token, "Origin": APP_ORIGIN})

    assert response.status_code == 200 and response.json["balance"] == 120
    assert response.headers["Access-Control-Allow-Origin"] == APP_ORIGIN
    assert "X-Request-ID" in response.headers["Access-Control-Expose-Headers"]
    assert "Origin" in response.headers["Vary"]
    refused = client.get("/v1/me/balance", headers={"Origin": APP_ORIGIN})
    assert refused.status_code == 401  # the page can read why (expired token: log in again)
    assert refused.headers["Access-Control-Allow-Origin"] == APP_ORIGIN


def test_another_origin_gets_no_cors_headers(client, make):
    token = make.member_token(make.member().id)
    response = client.get("/v1/me", headers={**token, "Origin": "https://evil.example"})
    assert response.status_code == 200
    assert "Access-Control-Allow-Origin" not in response.headers
    assert (
        "Access-Control-Allow-Origin"
        not in _preflight(client, "/v1/me", origin="https://evil.example").headers
    )


@pytest.mark.parametrize(
    ("path", "method"),
    [
        ("/v1/member-tokens", "POST"),
        ("/v1/orders", "POST"),
        ("/v1/members/search", "GET"),
        ("/v1/reports/liability", "GET"),
        ("/v1/offers", "POST"),
    ],
)
def test_admin_and_store_endpoints_never_answer_a_browser_on_another_origin(
    client, make, path, method
):
    assert "Access-Control-Allow-Origin" not in _preflight(client, path, method).headers
    response = client.open(
        path, method=method, headers={**make.api_key(scopes.ADMIN), "Origin": APP_ORIGIN}
    )
    assert "Access-Control-Allow-Origin" not in response.headers


def test_without_configured_origins_nothing_gets_cors(app, client, make, monkeypatch):
    settings = app.extensions["omniloyal.settings"]
    monkeypatch.setitem(app.extensions, "omniloyal.settings", replace(settings, cors_origins=()))
    token = make.member_token(make.member().id)
    response = client.get("/v1/me", headers={**token, "Origin": APP_ORIGIN})
    assert "Access-Control-Allow-Origin" not in response.headers
    assert "Access-Control-Allow-Origin" not in _preflight(client, "/v1/me").headers


def test_origins_are_exact_and_checked_at_start():
    from loyalty.config import ConfigError, SecretSource, load_settings

    settings = load_settings(
        {"OMNILOYAL_CORS_ORIGINS": "https://app.example.com/, http://localhost:3000"},
        secret_source=SecretSource.UNUSED,
    )
    assert settings.cors_origins == ("https://app.example.com", "http://localhost:3000")
    for bad in ("*", "https://app.example.com/login", "app.example.com"):
        with pytest.raises(ConfigError, match="OMNILOYAL_CORS_ORIGINS"):
            load_settings({"OMNILOYAL_CORS_ORIGINS": bad}, secret_source=SecretSource.UNUSED)
