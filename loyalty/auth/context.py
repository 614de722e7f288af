"""Who is calling, and the checks every endpoint makes before it acts.

The HTTP edge authenticates once per request into a `Caller`; operations never read it,
handlers pass the relevant parts (store, member, client id) explicitly.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import wraps
from typing import Any, TypeVar

from flask import g, request

from loyalty.auth import scopes, tokens
from loyalty.auth.keys import KEY_PREFIX, client_for_key
from loyalty.errors import Forbidden, NotAuthenticated

F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True)
class Caller:
    client_id: int | None = None
    client_name: str | None = None
    scopes: frozenset[str] = frozenset()
    store_id: str | None = None  # a POS key is bound to its store
    member_id: int | None = None  # set for member app tokens
    # the person the token's member belongs to now (the survivor after a merge): what
    # counters kept per member count against
    person_id: int | None = None

    @property
    def idempotency_scope(self) -> str:
        return f"member:{self.member_id}" if self.member_id else f"client:{self.client_id}"

    @property
    def actor(self) -> str:
        """How ledger entries and audits name whoever made the change."""
        if self.member_id:
            return f"member:{self.member_id}"
        return f"client:{self.client_id}:{self.client_name}"

    def may_act_for_store(self, store_id: str | None) -> bool:
        return self.store_id is None or self.store_id == store_id


def authenticate_request() -> Caller | None:
    header = request.headers.get("Authorization", "")
    scheme, _, credential = header.partition(" ")
    if not header:
        return None
    if scheme.lower() != "bearer" or not credential:
        raise NotAuthenticated("use 'Authorization: Bearer <api key or member token>'")
    credential = credential.strip()
    if credential.startswith(KEY_PREFIX):
        client = client_for_key(credential)
        if client is None:
            raise NotAuthenticated("unknown or revoked API key")
        return Caller(
            client_id=client.id,
            client_name=client.name,
            scopes=frozenset(client.scopes),
            store_id=client.store_id,
        )
    if credential.startswith(tokens.APP_TOKEN_PREFIX):
        member_id, person_id = tokens.token_holder(credential)
        return Caller(member_id=member_id, person_id=person_id)
    raise NotAuthenticated("unrecognised credential")


def current_caller() -> Caller:
    caller = g.get("caller")
    if caller is None:
        raise NotAuthenticated()
    return caller


def requires(scope: str) -> Callable[[F], F]:
    """The caller must be an API client holding `scope` (a program-wide scope: not bound to
    a store)."""

    def decorate(view: F) -> F:
        @wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            caller = current_caller()
            if caller.client_id is None:
                raise Forbidden("this endpoint is for API clients, not member tokens")
            if scope not in caller.scopes:
                raise Forbidden(f"the API key lacks the {scope!r} scope")
            if caller.store_id is not None and scope in scopes.PROGRAM_WIDE:
                raise Forbidden(
                    f"a store-bound API key cannot use {scope!r}: its segments and campaigns "
                    "span every member of the program"
                )
            return view(*args, **kwargs)

        wrapper._required_scope = scope  # type: ignore[attr-defined]
        return wrapper  # type: ignore[return-value]

    return decorate


def requires_member(view: F) -> F:
    """The caller must be a member (app token); handlers act on `caller.member_id` only."""

    @wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        caller = current_caller()
        if caller.member_id is None:
            raise Forbidden("this endpoint needs a member token")
        return view(*args, **kwargs)

    wrapper._required_scope = "member"  # type: ignore[attr-defined]
    return wrapper  # type: ignore[return-value]


def ensure_store(caller: Caller, store_id: str | None) -> None:
    if not caller.may_act_for_store(store_id):
        raise Forbidden("this API key may only act for its own store")
