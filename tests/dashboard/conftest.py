"""Dashboard test helpers: users per role, a signed-in client, the page's CSRF token."""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest
from flask.testing import FlaskClient

from loyalty.clock import utcnow
from loyalty.dashboard import users
from loyalty.dashboard.models import ROLES
from loyalty.db import db

PASSWORD = "correct horse battery staple"
CSRF_FIELD = re.compile(r'name="csrf_token" value="([^"]+)"')


def make_user(role: str, *, email: str | None = None, totp: bool = False) -> users.DashboardUser:
    user = users.create_user(
        email=email or f"{role}@example.test", name=f"Test {role}", password=PASSWORD,
        role=role, now=utcnow(),
    )  # fmt: skip
    if totp:
        users.enable_totp(user)
    db.session.commit()
    return user


def csrf_token(client: FlaskClient, path: str = "/dashboard/login") -> str:
    found = CSRF_FIELD.search(client.get(path).get_data(as_text=True))
    assert found, f"no CSRF token on {path}"
    return found.group(1)


def sign_in(client: FlaskClient, email: str, password: str = PASSWORD) -> object:
    return client.post(
        "/dashboard/login",
        data={"email": email, "password": password, "csrf_token": csrf_token(client)},
    )


@pytest.fixture
def signed_in(app, client) -> Callable[[str], FlaskClient]:
    """signed_in(role) -> the test client, signed in as a new user with that role."""

    def sign(role: str) -> FlaskClient:
        assert role in ROLES
        user = make_user(role)
        response = sign_in(client, user.email)
        assert response.status_code == 302, response.get_data(as_text=True)
        db.session.remove()
        return client

    return sign


def post_form(client: FlaskClient, path: str, data: dict, *, page: str | None = None) -> object:
    """POST a form the way the browser does: with the CSRF token of the session."""
    token = csrf_token(client, page or "/dashboard/account")
    return client.post(path, data={**data, "csrf_token": token})
