"""Member login by one-time code. Called by the member app with its own key (scope
`member-login`); each call is limited per client IP, destination and country (see
operations.py)."""

from __future__ import annotations

from typing import Any

from flask import current_app, request

from loyalty.api import Blueprint
from loyalty.auth import scopes
from loyalty.auth.context import current_caller, requires
from loyalty.clock import utcnow
from loyalty.db import db, prepare_to_write
from loyalty.http import write_endpoint
from notifications.login_codes import operations
from notifications.login_codes.schemas import (
    CodeRequestedSchema,
    DestinationSchema,
    LoginTokenSchema,
    VerifySchema,
)

blp = Blueprint("login_codes", __name__, description="Member login by one-time code")
API_KEY = [{"ApiKey": []}]


def _config() -> operations.Settings:
    return operations.settings_from(current_app.extensions["omniloyal.settings"])


def _destination(data: dict[str, Any], config: operations.Settings) -> operations.Destination:
    return operations.destination(
        phone=data.get("phone"), email=data.get("email"), default_region=config.default_region
    )


def _client_ip() -> str:
    return request.remote_addr or "unknown"  # X-Forwarded-For via OMNILOYAL_PROXY_HOPS


@blp.route("/login-codes", methods=["POST"])
@blp.doc(security=API_KEY)
@requires(scopes.MEMBER_LOGIN)
@write_endpoint(key_required=False)
@blp.arguments(DestinationSchema)
@blp.response(202, CodeRequestedSchema)
def request_code(data: dict[str, Any]) -> Any:
    """Send a one-time code by SMS (`phone`) or email (`email`). The answer is the same
    whether or not a member has that phone or email. 429 past a sending limit."""
    config, now = _config(), utcnow()
    target = _destination(data, config)
    operations.check_sending_limits(
        current_app.extensions["omniloyal.redis"], config, target, ip=_client_ip(), now=now
    )
    requested = operations.request_code(config, target, now=now)
    return {"channel": requested.channel.value, "expires_at": requested.expires_at}


@blp.route("/login-codes/verify", methods=["POST"])
@blp.doc(security=API_KEY)
@requires(scopes.MEMBER_LOGIN)
@blp.arguments(VerifySchema)
@blp.response(201, LoginTokenSchema)
def verify_code(data: dict[str, Any]) -> Any:
    """Exchange the code for a member token: the member who owns the phone or email, or a
    new member enrolled with it. A wrong, expired or used code is a 401 (and counts)."""
    config, now = _config(), utcnow()
    target = _destination(data, config)
    operations.check_verify_limit(
        current_app.extensions["omniloyal.redis"], config, ip=_client_ip(), now=now
    )
    prepare_to_write()
    try:
        matched = operations.check_code(config, target, data["code"], now=now)
        if not matched:
            db.session.commit()  # the guess counts even though the answer is a refusal
            raise operations.CodeRejected("the code is wrong, expired or used; ask for a new one")
        client_id = current_caller().client_id
        assert client_id is not None  # @requires: an API client
        logged_in = operations.log_in(target, issued_by_client=client_id, now=now)
        db.session.commit()
    except BaseException:
        db.session.rollback()
        raise
    return {
        "token": logged_in.token.token,
        "member_id": logged_in.member.id,
        "enrolled": logged_in.enrolled,
        "expires_at": logged_in.token.expires_at,
    }
