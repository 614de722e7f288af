"""Member login by one-time code: a code by SMS or email through the notification pipeline
(recording provider), verified for a member token; limits against guessing and SMS pumping."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient

from loyalty.auth import scopes
from loyalty.clock import utcnow
from loyalty.db import db
from loyalty.members.models import MemberIdentity
from notifications.login_codes import operations
from notifications.login_codes.models import LoginCode
from notifications.models import Message
from tests.concurrency import in_threads
from tests.factories import Factories
from tests.notifications.factories import recorded, send_round


@pytest.fixture
def settings(app: Flask) -> Iterator[Callable[..., None]]:
    """settings(**changes): login-code settings for this test only."""
    original = app.extensions["omniloyal.settings"]

    def change(**changes: Any) -> None:
        app.extensions["omniloyal.settings"] = replace(
            app.extensions["omniloyal.settings"], **changes
        )

    yield change
    app.extensions["omniloyal.settings"] = original


@pytest.fixture
def app_key(make: Factories) -> dict[str, str]:
    return make.api_key(scopes.MEMBER_LOGIN, name="member app")


def ask(client: FlaskClient, key: dict[str, str], **destination: str) -> Any:
    return client.post("/v1/login-codes", json=destination, headers=key)


def verify(client: FlaskClient, key: dict[str, str], code: str, **destination: str) -> Any:
    return client.post("/v1/login-codes/verify", json={**destination, "code": code}, headers=key)


def code_sent_to(destination: str) -> str:
    """Run the send job and read the code from what the (recording) provider was given."""
    send_round()
    bodies = [r.body for r in recorded() if r.destination == destination]
    assert bodies, f"nothing was sent to {destination}"
    found = re.search(r"\b(\d{6})\b", bodies[-1] or "")
    assert found, bodies[-1]
    return found.group(1)


def test_an_sms_code_for_an_unknown_number_enrols_and_logs_in(
    client: FlaskClient, app_key: dict[str, str]
) -> None:
    answer = ask(client, app_key, phone="+33 6 12 34 56 78")
    assert answer.status_code == 202
    assert answer.json["channel"] == "sms"
    code = code_sent_to("+33612345678")

    logged_in = verify(client, app_key, code, phone="+33612345678")
    assert logged_in.status_code == 201, logged_in.json
    assert logged_in.json["enrolled"] is True
    me = client.get("/v1/me", headers={"Authorization": f"Bearer {logged_in.json['token']}"})
    assert me.status_code == 200
    assert me.json["member_id"] == logged_in.json["member_id"]
    phone = db.session.scalar(
        sa.select(MemberIdentity.value).where(
            MemberIdentity.member_id == logged_in.json["member_id"]
        )
    )
    assert phone == "+33612345678"


def test_the_code_is_stored_nowhere_in_clear(client: FlaskClient, app_key: dict[str, str]) -> None:
    ask(client, app_key, phone="+33612345678")
    code = code_sent_to("+33612345678")
    [message] = db.session.scalars(sa.select(Message)).all()
    assert message.template == "login_code"
    assert code not in (message.body or "") and operations.PLACEHOLDER in message.body
    assert code not in str(message.variables)
    [row] = db.session.scalars(sa.select(LoginCode)).all()
    assert code not in f"{row.code_digest}{row.nonce}{row.destination_digest}"
    assert "33612345678" not in row.destination_digest


def test_a_known_member_gets_their_own_account_by_email_and_national_phone(
    client: FlaskClient, app_key: dict[str, str], make: Factories, settings: Callable[..., None]
) -> None:
    settings(login_code_default_region="FR")
    member = make.member(phone="+33612345678", email="jeanne@example.com")
    ask(client, app_key, phone="06 12 34 56 78")
    by_phone = verify(client, app_key, code_sent_to("+33612345678"), phone="0612345678")
    assert by_phone.json["member_id"] == member.id and by_phone.json["enrolled"] is False

    assert ask(client, app_key, email="Jeanne@Example.com").json["channel"] == "email"
    by_email = verify(
        client, app_key, code_sent_to("jeanne@example.com"), email="jeanne@example.com"
    )
    assert by_email.json["member_id"] == member.id


def test_a_code_proves_only_its_own_destination(
    client: FlaskClient, app_key: dict[str, str], make: Factories
) -> None:
    """No takeover: a code sent to my phone does not log into the member owning your email,
    and never adds my phone to your account."""
    victim = make.member(email="victim@example.com")
    ask(client, app_key, phone="+33612345678")
    code = code_sent_to("+33612345678")
    assert verify(client, app_key, code, email="victim@example.com").status_code == 401
    mine = verify(client, app_key, code, phone="+33612345678").json
    assert mine["member_id"] != victim.id
    owners = db.session.scalars(
        sa.select(MemberIdentity.member_id).where(MemberIdentity.value == "+33612345678")
    ).all()
    assert owners == [mine["member_id"]]


def test_wrong_guesses_are_capped_and_a_code_works_once(
    client: FlaskClient, app_key: dict[str, str], settings: Callable[..., None]
) -> None:
    settings(login_code_max_attempts=3)
    ask(client, app_key, email="a@example.com")
    code = code_sent_to("a@example.com")
    wrong = f"{(int(code) + 1) % 10**6:06d}"
    first = verify(client, app_key, wrong, email="a@example.com")
    assert first.status_code == 401
    assert first.json["type"].endswith("login-code-invalid")
    assert verify(client, app_key, code, email="a@example.com").status_code == 201
    assert verify(client, app_key, code, email="a@example.com").status_code == 401  # used

    ask(client, app_key, email="a@example.com")
    code = code_sent_to("a@example.com")
    wrong = f"{(int(code) + 1) % 10**6:06d}"
    for _ in range(3):
        assert verify(client, app_key, wrong, email="a@example.com").status_code == 401
    assert verify(client, app_key, code, email="a@example.com").status_code == 401  # dead
    db.session.expire_all()
    assert max(db.session.scalars(sa.select(LoginCode.attempts))) == 3


def test_only_the_latest_code_counts_and_codes_expire(
    client: FlaskClient, app: Flask, app_key: dict[str, str]
) -> None:
    ask(client, app_key, email="a@example.com")
    older = code_sent_to("a@example.com")
    ask(client, app_key, email="a@example.com")
    newer = code_sent_to("a@example.com")
    if older != newer:
        assert verify(client, app_key, older, email="a@example.com").status_code == 401

    config = operations.settings_from(app.extensions["omniloyal.settings"])
    target = operations.destination(phone=None, email="a@example.com", default_region=None)
    later = utcnow() + timedelta(seconds=config.ttl_seconds + 1)
    assert operations.check_code(config, target, newer, now=later) is False
    db.session.rollback()
    assert verify(client, app_key, newer, email="a@example.com").status_code == 201


def test_codes_per_destination_and_per_ip_are_limited(
    client: FlaskClient, app_key: dict[str, str], settings: Callable[..., None]
) -> None:
    settings(login_code_per_destination="2/hour", login_code_per_ip="4/hour")
    assert ask(client, app_key, email="a@example.com").status_code == 202
    assert ask(client, app_key, email="a@example.com").status_code == 202
    refused = ask(client, app_key, email="a@example.com")
    assert refused.status_code == 429
    assert int(refused.headers["Retry-After"]) > 0
    assert ask(client, app_key, email="b@example.com").status_code == 202
    assert ask(client, app_key, email="c@example.com").status_code == 429  # the IP's 4th+1
    send_round()
    assert len(recorded()) == 3


def test_sms_codes_per_country_are_capped_per_hour(
    client: FlaskClient, app_key: dict[str, str], settings: Callable[..., None]
) -> None:
    """SMS pumping: many numbers of one (premium) country. Each number is new, so only the
    country cap stops it; other countries are unaffected."""
    settings(login_code_country_caps={"*": 100, "44": 2})
    uk = ["+447400123456", "+447400123457", "+447400123458"]
    assert [ask(client, app_key, phone=n).status_code for n in uk] == [202, 202, 429]
    assert ask(client, app_key, phone="+33612345678").status_code == 202


def test_a_bad_destination_or_code_is_a_422(client: FlaskClient, app_key: dict[str, str]) -> None:
    assert ask(client, app_key, phone="12").status_code == 422
    assert ask(client, app_key, email="not-an-email").status_code == 422
    assert client.post("/v1/login-codes", json={}, headers=app_key).status_code == 422
    both = {"phone": "+33612345678", "email": "a@example.com"}
    assert client.post("/v1/login-codes", json=both, headers=app_key).status_code == 422
    assert verify(client, app_key, "12ab", email="a@example.com").status_code == 422


@pytest.mark.parametrize("path", ["/v1/login-codes", "/v1/login-codes/verify"])
def test_login_code_endpoints_need_the_member_login_scope(
    client: FlaskClient, make: Factories, path: str
) -> None:
    body = (
        {"email": "a@example.com", "code": "123456"}
        if path.endswith("verify")
        else {"email": "a@example.com"}
    )
    assert client.post(path, json=body).status_code == 401
    others = make.api_key(*(scopes.ALL - {scopes.MEMBER_LOGIN}))
    assert client.post(path, json=body, headers=others).status_code == 403
    member = make.member()
    assert client.post(path, json=body, headers=make.member_token(member.id)).status_code == 403


def test_revoking_the_app_key_revokes_the_tokens_it_got(
    client: FlaskClient, app_key: dict[str, str], make: Factories
) -> None:
    ask(client, app_key, email="a@example.com")
    token = verify(client, app_key, code_sent_to("a@example.com"), email="a@example.com").json
    auth = {"Authorization": f"Bearer {token['token']}"}
    assert client.get("/v1/me", headers=auth).status_code == 200
    admin = make.api_key(scopes.ADMIN)
    clients = client.get("/v1/api-clients", headers=admin).json["items"]
    app_client = next(c for c in clients if c["name"] == "member app")
    client.post(f"/v1/api-clients/{app_client['id']}/revoke", headers=admin)
    from loyalty import cache

    cache.clear_all()
    assert client.get("/v1/me", headers=auth).status_code == 401


@pytest.mark.postgres
def test_one_code_verified_at_once_by_many_gives_one_token(
    app: Flask, client: FlaskClient, app_key: dict[str, str]
) -> None:
    ask(client, app_key, email="a@example.com")
    code = code_sent_to("a@example.com")

    def attempt(_: int) -> int:
        return (
            app.test_client()
            .post(
                "/v1/login-codes/verify",
                json={"email": "a@example.com", "code": code},
                headers=app_key,
            )
            .status_code
        )

    assert sorted(in_threads(app, 6, attempt)) == [201] + [401] * 5


@pytest.mark.redis
def test_login_codes_fail_closed_while_redis_is_down(app: Flask, make: Factories, tmp_path) -> None:
    """SMS cost money: without the counters no code goes out (503 with Retry-After)."""
    from loyalty.app import create_app
    from tests.redis_server import redis_server

    settings = app.extensions["omniloyal.settings"]
    key = make.api_key(scopes.MEMBER_LOGIN)
    db.session.remove()
    with redis_server(str(tmp_path)) as server:
        other = create_app(
            {
                "database_url": settings.database_url,
                "redis_url": server.url,
                "secret_key": settings.secret_key,
                "run_embedded_worker": False,
            }
        )
        client = other.test_client()
        assert ask(client, key, email="a@example.com").status_code == 202
        server.stop()
        refused = ask(client, key, email="a@example.com")
        assert refused.status_code == 503
        assert int(refused.headers["Retry-After"]) > 0
        assert verify(client, key, "123456", email="a@example.com").status_code == 503
        with other.app_context():
            db.session.remove()
            db.engine.dispose()


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("OMNILOYAL_LOGIN_CODE_COUNTRY_CAPS", "86=5000"),  # no "*" for the other countries
        ("OMNILOYAL_LOGIN_CODE_COUNTRY_CAPS", "*=lots"),
        ("OMNILOYAL_LOGIN_CODE_PER_DESTINATION", "five a day"),
        ("OMNILOYAL_LOGIN_CODE_DEFAULT_REGION", "France"),
        ("OMNILOYAL_WEBHOOK_ALLOW_PRIVATE_TARGETS", "maybe"),
    ],
)
def test_login_code_and_webhook_settings_are_parsed_strictly(name: str, value: str) -> None:
    from loyalty.config import ConfigError, load_settings

    with pytest.raises(ConfigError, match=name):
        load_settings({"SECRET_KEY": "k" * 40, name: value})


def test_country_caps_parse() -> None:
    from loyalty.config import load_settings

    settings = load_settings(
        {"SECRET_KEY": "k" * 40, "OMNILOYAL_LOGIN_CODE_COUNTRY_CAPS": "*=50, +86=5000"}
    )
    assert settings.login_code_country_caps == {"*": 50, "86": 5000}
    assert load_settings({"SECRET_KEY": "k" * 40}).webhook_allow_private_targets is False
