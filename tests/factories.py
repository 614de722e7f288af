"""Factories: build what a test needs through the same operations production uses.

Each factory commits, like a request edge, so HTTP calls and threads see the data.
"""

from __future__ import annotations

import itertools
import uuid
from datetime import datetime, timedelta
from typing import Any

from loyalty.auth import scopes as all_scopes
from loyalty.auth.keys import create_api_client
from loyalty.auth.tokens import mint_member_token
from loyalty.clock import utcnow
from loyalty.db import db
from loyalty.ledger import operations as ledger
from loyalty.members.models import Member
from loyalty.members.operations import enrol_member
from loyalty.stores.models import Store

_sequence = itertools.count(1)


class Factories:
    def store(
        self,
        store_id: str | None = None,
        *,
        region: str = "north",
        timezone: str = "Europe/Paris",
        partner: bool = False,
    ) -> Store:
        store = Store(
            id=store_id or f"S{next(_sequence):04d}",
            name="Test store",
            region=region,
            timezone=timezone,
            partner=partner,
            active=True,
            created_at=utcnow(),
        )
        db.session.add(store)
        db.session.commit()
        return store

    def member(
        self,
        *,
        phone: str | None = None,
        email: str | None = None,
        points: int = 0,
        now: datetime | None = None,
        **profile: Any,
    ) -> Member:
        n = next(_sequence)
        identities = {"email": email or f"member{n}-{uuid.uuid4().hex[:6]}@example.com"}
        if phone:
            identities["phone"] = phone
        member = enrol_member(
            identities=identities, now=now or utcnow(), channel="online", profile=profile or None
        )
        db.session.commit()
        if points:
            self.earn(member.id, points, now=now)
        return member

    def earn(
        self,
        member_id: int,
        points: int,
        *,
        now: datetime | None = None,
        cause_ref: str | None = None,
        pending_days: int = 0,
        expires_at: datetime | None = None,
    ) -> ledger.LedgerTransaction:
        now = now or utcnow()
        tx = ledger.earn_points(
            member_id,
            points,
            ledger.Cause("test", cause_ref or f"t{next(_sequence)}"),
            now=now,
            actor="test",
            pending_until=now + timedelta(days=pending_days) if pending_days else None,
            expires_at=expires_at,
        )
        db.session.commit()
        return tx

    def api_key(
        self, *scopes: str, store_id: str | None = None, name: str = "test client"
    ) -> dict[str, str]:
        """Authorization headers for a new API client (all scopes when none are given)."""
        issued = create_api_client(
            name=name, scopes=list(scopes or all_scopes.ALL), store_id=store_id, now=utcnow()
        )
        db.session.commit()
        return {"Authorization": f"Bearer {issued.key}"}

    def member_token(
        self, member_id: int, *, issued_by_client: int | None = None
    ) -> dict[str, str]:
        """Headers with an app token for the member, minted by an app backend's key (a new
        one unless `issued_by_client` names it)."""
        if issued_by_client is None:
            issued_by_client = create_api_client(
                name="app backend", scopes=[all_scopes.MEMBER_TOKENS], store_id=None, now=utcnow()
            ).client.id
        member = db.session.get(Member, member_id)
        assert member is not None
        db.session.commit()
        minted = mint_member_token(
            member_id, issued_by_client=issued_by_client, epoch=member.token_epoch, now=utcnow()
        )
        return {"Authorization": f"Bearer {minted.token}"}


def idem(headers: dict[str, str], key: str | None = None) -> dict[str, str]:
    """Headers plus a fresh (or given) Idempotency-Key."""
    return {**headers, "Idempotency-Key": key or uuid.uuid4().hex}


def error_fields(problem: dict[str, Any]) -> dict[str, list[str]]:
    """A 422 problem's `errors` list as {field path: [messages]}, for assertions."""
    fields: dict[str, list[str]] = {}
    for entry in problem["errors"]:
        assert set(entry) == {"field", "message"}, entry  # the one documented shape
        fields.setdefault(entry["field"], []).append(entry["message"])
    return fields
