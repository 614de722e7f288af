"""Signing in: argon2 passwords, TOTP, throttling, session timeout, CSRF, the CLI."""

from __future__ import annotations

import time

import pyotp
import sqlalchemy as sa
from flask import Flask

from loyalty.dashboard.models import AuditEntry, DashboardUser
from loyalty.db import db
from tests.dashboard.conftest import PASSWORD, csrf_token, make_user, post_form, sign_in


def _actions() -> list[str]:
    return list(db.session.scalars(sa.select(AuditEntry.action).order_by(AuditEntry.id)))


def test_a_password_is_stored_as_an_argon2_hash_and_signs_in(client):
    user = make_user("support")
    assert user.password_hash.startswith("$argon2id$")
    assert PASSWORD not in user.password_hash

    response = sign_in(client, "SUPPORT@example.test")

    assert response.status_code == 302
    assert client.get("/dashboard/").status_code == 200
    assert "auth.sign_in" in _actions()


def test_a_wrong_password_is_refused_and_audited(client):
    make_user("support")
    response = sign_in(client, "support@example.test", "wrong password!")
    assert response.status_code == 401
    assert client.get("/dashboard/").status_code == 302  # still signed out
    assert _actions() == ["auth.sign_in_failed"]


def test_pages_need_a_signed_in_user(client):
    response = client.get("/dashboard/members")
    assert response.status_code == 302
    assert "/dashboard/login" in response.headers["Location"]


def test_failed_sign_ins_are_throttled_per_account_even_with_the_right_password(client):
    make_user("finance", email="throttled@example.test")
    for _ in range(5):
        assert sign_in(client, "throttled@example.test", "wrong password!").status_code == 401
    response = sign_in(client, "throttled@example.test")  # the right one, too late
    assert response.status_code == 429


def test_a_form_without_its_csrf_token_is_refused_and_changes_nothing(signed_in, make):
    client = signed_in("support")
    member = make.member(points=100)
    response = client.post(
        f"/dashboard/members/{member.id}/adjust", data={"points": "50", "reason": "no token"}
    )
    assert response.status_code == 400
    assert "security token" in response.get_data(as_text=True)
    assert "points.adjust" not in _actions()


def test_a_token_from_another_session_is_refused(app: Flask, signed_in, make):
    other = app.test_client()
    foreign = csrf_token(other)
    client = signed_in("support")
    member = make.member(points=100)
    response = client.post(
        f"/dashboard/members/{member.id}/adjust",
        data={"points": "50", "reason": "foreign token", "csrf_token": foreign},
    )
    assert response.status_code == 400


def test_totp_is_asked_after_the_password_when_the_user_has_it(client):
    user = make_user("admin", totp=True)
    response = sign_in(client, user.email)
    assert response.status_code == 302 and "/login/totp" in response.headers["Location"]
    assert client.get("/dashboard/").status_code == 302  # not signed in yet

    token = csrf_token(client, "/dashboard/login/totp")
    wrong = client.post("/dashboard/login/totp", data={"code": "000000", "csrf_token": token})
    assert wrong.status_code == 401
    code = pyotp.TOTP(user.totp_secret).now()
    right = client.post("/dashboard/login/totp", data={"code": code, "csrf_token": token})
    assert right.status_code == 302
    assert client.get("/dashboard/").status_code == 200


def test_the_session_cookie_is_http_only_and_same_site(client):
    make_user("analyst")
    response = sign_in(client, "analyst@example.test")
    cookie = response.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie


def test_a_session_older_than_the_maximum_ends(client):
    make_user("analyst")
    sign_in(client, "analyst@example.test")
    with client.session_transaction() as session:
        session["signed_in_at"] = time.time() - 13 * 3600
    response = client.get("/dashboard/")
    assert response.status_code == 302 and "/dashboard/login" in response.headers["Location"]


def test_signing_out_ends_the_session(signed_in):
    client = signed_in("marketer")
    response = post_form(client, "/dashboard/logout", {})
    assert response.status_code == 302
    assert client.get("/dashboard/").status_code == 302


def test_a_redirect_after_sign_in_stays_on_this_site(client):
    make_user("analyst")
    token = csrf_token(client)
    response = client.post(
        "/dashboard/login?next=//evil.example/x",
        data={"email": "analyst@example.test", "password": PASSWORD, "csrf_token": token},
    )
    assert response.headers["Location"] == "/dashboard/"


def test_create_user_command_makes_the_first_admin(app: Flask):
    runner = app.test_cli_runner()
    result = runner.invoke(
        args=["create-user", "--email", "Boss@Example.test", "--role", "admin",
              "--password", "a long enough password", "--totp"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "otpauth://" in result.output
    user = db.session.scalar(
        sa.select(DashboardUser).where(DashboardUser.email == "boss@example.test")
    )
    assert user is not None and user.role == "admin" and user.totp_secret
    again = runner.invoke(
        args=["create-user", "--email", "boss@example.test", "--role", "admin",
              "--password", "a long enough password"],
    )  # fmt: skip
    assert again.exit_code != 0 and "already" in again.output
