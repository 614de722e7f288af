"""Erasure reaches every place a member's personal data lands: each table, each stored
idempotent response, the logs.

The member's name, email and phone go through every path a real deployment sends them
down (enrolment, profile changes by support and by the member, an adjustment whose reason
names them, an order and an activity identified by email, a merge whose reason names them,
a block, a member token), with SQL echo at DEBUG. After the erasure, no text, JSON or
binary column of any table (found generically from the metadata, so new tables are
covered without changing this test) and no captured log line holds any of them.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest
import sqlalchemy as sa

from loyalty.auth import scopes
from loyalty.db import db
from loyalty.idempotency import IdempotencyRecord
from loyalty.ledger.models import LedgerNote, LedgerTransaction
from loyalty.members.models import Member
from tests.earning.factories import base_rate, order_body
from tests.factories import idem
from tests.members.factories import PROBLEM

NAME = "Zoe Erasmus-Quill"
ACCENTED_NAME = "Zoë Érasmus"  # stored in JSON bodies as \\u00eb escapes: searched in both
EMAIL = "zoe.quill@example.org"
OLD_EMAIL = "zoe.quill.old@example.org"
PHONE = "+33655501234"
CARD = "CARD-7731-5550"
SECRETS = [NAME, ACCENTED_NAME, EMAIL, OLD_EMAIL, PHONE, CARD]

TEXT_TYPES = (sa.String, sa.Text, sa.JSON, sa.LargeBinary)


def _variants(secret: str) -> list[str]:
    """The secret as it may be stored: raw, and as JSON escapes it (ensure_ascii)."""
    return sorted({secret, json.dumps(secret)[1:-1]})


def _as_text(value: Any) -> str:
    if isinstance(value, bytes | memoryview):
        return bytes(value).decode("utf-8", "replace")
    if isinstance(value, dict | list):
        return json.dumps(value) + json.dumps(value, ensure_ascii=False)
    return str(value)


def personal_data_left() -> list[str]:
    """table.column: secret, for every text-like column of every table holding a secret."""
    found = []
    with db.engine.connect() as connection:
        for table in db.metadata.sorted_tables:
            columns = [c for c in table.columns if isinstance(c.type, TEXT_TYPES)]
            if not columns:
                continue
            for row in connection.execute(sa.select(*columns)):
                for column, value in zip(columns, row, strict=True):
                    if value is None:
                        continue
                    text = _as_text(value)
                    found += [
                        f"{table.name}.{column.name}: {secret}"
                        for secret in SECRETS
                        if any(variant in text for variant in _variants(secret))
                    ]
    return found


def in_logs(records: list[logging.LogRecord]) -> list[str]:
    found = []
    for record in records:
        text = record.getMessage() + repr(record.__dict__)
        found += [
            f"{record.name}: {secret}"
            for secret in SECRETS
            if any(variant in text for variant in _variants(secret))
        ]
    return found


@pytest.fixture
def sql_echo(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    """Everything logged, SQL echo with parameters and result rows included."""
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="sqlalchemy.engine")
    caplog.set_level(logging.DEBUG, logger="psycopg")
    return caplog


def test_after_erasure_no_table_and_no_log_line_holds_the_name_email_or_phone(
    client, make, sql_echo
):
    admin, pos = make.api_key(), make.api_key(*scopes.POS, name="till")
    base_rate()
    keys: dict[str, tuple[str, dict[str, str], dict[str, Any] | None, str]] = {}

    def call(label: str, method: str, url: str, body: Any, headers: dict[str, str]) -> Any:
        sent = idem(headers)
        keys[label] = (method, sent, body, url)
        response = client.open(url, method=method, json=body, headers=sent)
        assert response.status_code in (200, 201), (label, response.json)
        return response.json

    enrolled = call(
        "enrol",
        "POST",
        "/v1/members",
        {"identities": {"email": EMAIL, "phone": PHONE}, "profile": {"name": ACCENTED_NAME}},
        pos,
    )
    member_id = enrolled["member"]["id"]
    call(
        "patch",
        "PATCH",
        f"/v1/members/{member_id}",
        {"name": NAME, "attributes": {"contact": f"call {PHONE}"}},
        admin,
    )
    call(
        "card",
        "POST",
        f"/v1/members/{member_id}/identities",
        {"kind": "card", "value": CARD},
        admin,
    )
    call(
        "adjust",
        "POST",
        f"/v1/members/{member_id}/adjustments",
        {"points": 50, "reason": f"goodwill: {NAME} ({EMAIL}) called"},
        admin,
    )
    call("order", "POST", "/v1/orders", order_body({"email": EMAIL}, order_id="ZQ-1"), pos)
    call(
        "activity",
        "POST",
        f"/v1/members/{member_id}/activities",
        {"kind": "signup", "key": f"newsletter:{EMAIL}"},
        pos,
    )
    token = make.member_token(member_id)
    call("me", "PATCH", "/v1/me/profile", {"name": NAME}, token)
    old = call(
        "old", "POST", "/v1/members", {"identities": {"email": OLD_EMAIL}, "profile": {}}, pos
    )
    call(
        "merge",
        "POST",
        f"/v1/members/{member_id}/merge",
        {"merged_member_id": old["member"]["id"], "reason": f"same person: {NAME}"},
        admin,
    )
    call("block", "POST", f"/v1/members/{member_id}/block", {"reason": f"{NAME} asked"}, admin)
    assert personal_data_left()  # the search finds what is there

    erased = client.post(f"/v1/members/{member_id}/erase", headers=idem(admin))
    assert erased.status_code == 200, erased.json
    db.session.remove()

    assert personal_data_left() == []
    assert in_logs(sql_echo.records) == []
    assert any(r.name.startswith("sqlalchemy.engine") for r in sql_echo.records)  # echo was on
    # The points stay: balance and ledger are untouched by the erasure.
    balance = client.get(f"/v1/members/{member_id}/balance", headers=admin).json
    assert balance["balance"] > 50
    # Every retry of a write that concerned the member is refused, without the old body:
    # 410 for the API keys' retries; the member's own token was revoked by the erasure (401).
    for label, (method, headers, body, url) in keys.items():
        replay = client.open(url, method=method, json=body, headers=headers)
        expected = 401 if label == "me" else 410
        assert replay.status_code == expected and replay.mimetype == PROBLEM, (label, replay.json)
        assert not any(secret in replay.get_data(as_text=True) for secret in SECRETS)


def test_replaying_a_profile_change_after_erasure_returns_no_personal_data(client, make):
    """The reported case: a replayed PATCH returned the name and both identities."""
    admin = make.api_key()
    member = make.member(email=EMAIL, phone=PHONE)
    patch = idem(admin)
    changed = client.patch(f"/v1/members/{member.id}", json={"name": NAME}, headers=patch)
    assert changed.status_code == 200 and changed.json["name"] == NAME
    client.post(f"/v1/members/{member.id}/erase", headers=idem(admin))

    replay = client.patch(f"/v1/members/{member.id}", json={"name": NAME}, headers=patch)
    assert replay.status_code == 410 and replay.mimetype == PROBLEM
    assert replay.json["type"].endswith("/response-erased")
    body = replay.get_data(as_text=True)
    assert NAME not in body and EMAIL not in body and PHONE not in body
    record = db.session.scalar(
        sa.select(IdempotencyRecord).where(IdempotencyRecord.key == patch["Idempotency-Key"])
    )
    assert record.response_body is None and record.member_id == member.id
    # The write did not run again: the member is still erased, without a name.
    assert db.session.get(Member, member.id).name is None


def test_records_of_other_members_and_other_writes_keep_their_responses(client, make):
    admin = make.api_key()
    gone, kept = make.member(), make.member()
    client.patch(f"/v1/members/{gone.id}", json={"name": "Gone"}, headers=idem(admin))
    keep = idem(admin)
    client.patch(f"/v1/members/{kept.id}", json={"name": "Kept"}, headers=keep)
    client.post(f"/v1/members/{gone.id}/erase", headers=idem(admin))

    replay = client.patch(f"/v1/members/{kept.id}", json={"name": "Kept"}, headers=keep)
    assert replay.status_code == 200 and replay.headers["Idempotent-Replayed"] == "true"
    assert replay.json["name"] == "Kept"


def test_an_adjustment_reason_is_a_note_erasure_blanks_and_the_ledger_row_stays(client, make):
    """The ledger is append-only (UPDATE is refused), so free text never goes into it."""
    admin = make.api_key()
    member = make.member(points=10)
    adjusted = client.post(
        f"/v1/members/{member.id}/adjustments",
        json={"points": 5, "reason": f"goodwill for {NAME}"},
        headers=idem(admin),
    )
    assert adjusted.status_code == 201 and adjusted.json["reason"] == f"goodwill for {NAME}"
    history = client.get(f"/v1/members/{member.id}/ledger", headers=admin).json["items"]
    assert history[0]["reason"] == f"goodwill for {NAME}"
    tx = db.session.get(LedgerTransaction, adjusted.json["id"])
    assert tx.reason is None  # not in the append-only row

    client.post(f"/v1/members/{member.id}/erase", headers=idem(admin))
    db.session.expire_all()
    note = db.session.get(LedgerNote, tx.id)
    assert note.text is None and note.erased_at is not None
    history = client.get(f"/v1/members/{member.id}/ledger", headers=admin).json["items"]
    assert history[0]["reason"] is None and history[0]["points"] == 5


def test_every_domain_reports_its_erase_step(client, make):
    admin = make.api_key()
    member = make.member(points=10)
    summary = client.post(f"/v1/members/{member.id}/erase", headers=idem(admin)).json["summary"]
    assert {"idempotency", "member_merges", "ledger_notes", "earning", "coupons", "tiers"} <= set(
        summary
    )
