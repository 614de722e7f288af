"""Outgoing webhooks: subscriptions over the admin API, deliveries fed by the outbox, signed,
retried with backoff, visible with their last response; a real local receiver checks them."""

from __future__ import annotations

import json
import time
from dataclasses import replace
from datetime import datetime, timedelta

import pytest
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient

from loyalty import outbox
from loyalty.auth import scopes
from loyalty.clock import utcnow
from loyalty.db import db
from loyalty.outbox.relay import relay_batch
from notifications.webhooks import operations, signing
from notifications.webhooks.models import WebhookDelivery, WebhookSubscription
from tests.concurrency import open_transactions
from tests.factories import Factories, error_fields, idem
from tests.notifications.receiver import receiver

POLICY = operations.DeliveryPolicy(
    max_attempts=3, disable_after=2, timeout_seconds=5, allow_private=True
)


def subscribe(client: FlaskClient, admin: dict[str, str], url: str, *topics: str) -> dict:
    response = client.post(
        "/v1/webhooks", json={"url": url, "topics": list(topics)}, headers=idem(admin)
    )
    assert response.status_code == 201, response.json
    return response.json


def emit(topic: str, member_id: int | None, now: datetime, **payload: object) -> int:
    outbox.emit(topic, member_id=member_id, payload=dict(payload), now=now)
    db.session.commit()
    return db.session.scalar(sa.select(sa.func.max(outbox.OutboxEvent.id)))


def deliveries() -> list[WebhookDelivery]:
    db.session.expire_all()
    return list(db.session.scalars(sa.select(WebhookDelivery).order_by(WebhookDelivery.id)))


def deliver(now: datetime, *, limit: int = 10) -> operations.DeliveryStats:
    return operations.deliver_due(POLICY, clock=lambda: now, limit=limit)


def test_a_delivery_is_signed_over_timestamp_and_body_and_carries_ids_only(
    client: FlaskClient, make: Factories, allow_private: None
) -> None:
    admin = make.api_key(scopes.ADMIN)
    with receiver(200) as hook:
        created = subscribe(client, admin, hook.url, "points.earned")
        assert created["secret"].startswith("whsec_")
        member = make.member(phone="+33612345678", name="Jeanne Martin")
        make.earn(member.id, 120)
        relay_batch(utcnow())
        stats = deliver(utcnow())

        assert stats.succeeded == 1
        [got] = hook.received
        header = got.headers[signing.HEADER]
        assert signing.verify(created["secret"], header, got.body, now=time.time())
        assert not signing.verify(created["secret"], header, got.body + b" ", now=time.time())
        assert not signing.verify("whsec_other", header, got.body, now=time.time())
        document = json.loads(got.body)
        assert document["type"] == "points.earned"
        assert document["member_id"] == member.id
        assert document["data"]["points"] == 120
        assert got.headers["Omniloyal-Event-Id"] == str(document["id"])
        for personal in (b"Jeanne", b"Martin", b"+33612345678", b"@example.com"):
            assert personal not in got.body


def test_the_signature_is_hmac_sha256_of_timestamp_dot_body() -> None:
    import hashlib
    import hmac

    header = signing.signature_header(["whsec_k"], 1700000000, b'{"a":1}')
    expected = hmac.new(b"whsec_k", b'1700000000.{"a":1}', hashlib.sha256).hexdigest()
    assert header == f"t=1700000000,v1={expected}"
    assert not signing.verify("whsec_k", header, b'{"a":1}', now=1700000000 + 301)


def test_a_failing_receiver_gets_retries_with_growing_backoff_then_failed(
    client: FlaskClient, make: Factories, allow_private: None
) -> None:
    admin = make.api_key(scopes.ADMIN)
    now = utcnow()
    with receiver(500) as hook:
        created = subscribe(client, admin, hook.url, "tier.changed")
        emit("tier.changed", None, now, to="gold")
        relay_batch(now)
        waits = []
        for _ in range(POLICY.max_attempts):
            [delivery] = deliveries()
            assert delivery.status == "pending"
            now = max(now, delivery.next_attempt_at)
            assert deliver(now).worked == 1
            [delivery] = deliveries()
            waits.append(delivery.next_attempt_at - now)
            assert deliver(now).worked == 0  # not due again before its backoff
        assert len(hook.received) == POLICY.max_attempts
        [delivery] = deliveries()
        assert delivery.status == "failed"
        assert delivery.attempts == POLICY.max_attempts
        assert waits[1] > waits[0] >= timedelta(seconds=15)  # 30 s doubling, equal jitter

    page = client.get(f"/v1/webhooks/{created['id']}/deliveries", headers=admin).json
    [shown] = page["items"]
    assert shown["status"] == "failed"
    assert shown["last_status_code"] == 500
    assert shown["last_response_body"] == "answer 3: 500"
    assert shown["last_attempt_at"] is not None
    assert shown["last_error"] == "HTTP 500"


def test_a_receiver_that_recovers_gets_the_delivery_once(
    client: FlaskClient, make: Factories, allow_private: None
) -> None:
    admin = make.api_key(scopes.ADMIN)
    now = utcnow()
    with receiver(500, 503, 200) as hook:
        subscribe(client, admin, hook.url, "*")
        event_id = emit("coupon.redeemed", None, now, code_id=7)
        relay_batch(now)
        for _ in range(6):
            now += timedelta(hours=2)
            deliver(now)
        relay_batch(now)  # nothing new: the outbox event is done
        event = outbox.Event(event_id, "coupon.redeemed", None, {"code_id": 7}, now)
        operations.on_events([event])  # the relay redelivering the same event adds nothing
        db.session.commit()
        deliver(now + timedelta(hours=2))

        assert [r.headers["Omniloyal-Event-Id"] for r in hook.received] == [str(event_id)] * 3
        [delivery] = deliveries()
        assert delivery.status == "succeeded"
        assert delivery.last_status_code == 200
        assert len({r.body for r in hook.received}) == 1  # every retry sends the same bytes


def test_a_subscription_that_keeps_failing_is_disabled_and_can_be_enabled_again(
    client: FlaskClient, make: Factories, allow_private: None
) -> None:
    admin = make.api_key(scopes.ADMIN)
    now = utcnow()
    with receiver(500) as hook:
        created = subscribe(client, admin, hook.url, "tier.changed")
        for _ in range(POLICY.disable_after + 1):
            emit("tier.changed", None, now, to="gold")
        relay_batch(now)
        for _ in range(POLICY.max_attempts * 3):
            now += timedelta(hours=2)
            deliver(now, limit=1)  # one at a time: the third is still pending when it stops
        shown = client.get(f"/v1/webhooks/{created['id']}", headers=admin).json
        assert shown["status"] == "disabled"
        assert "in a row" in shown["disabled_reason"]
        statuses = sorted(d.status for d in deliveries())
        assert statuses == ["failed", "failed", "pending"]  # the third waits, not sent
        sent = len(hook.received)
        deliver(now + timedelta(hours=2))
        assert len(hook.received) == sent

        hook.statuses[:] = [200]
        response = client.patch(
            f"/v1/webhooks/{created['id']}", json={"status": "active"}, headers=admin
        )
        assert response.json["consecutive_failures"] == 0
        deliver(now + timedelta(hours=2))
        assert sorted(d.status for d in deliveries()) == ["failed", "failed", "succeeded"]
        failed = next(d for d in deliveries() if d.status == "failed")
        retried = client.post(f"/v1/webhooks/deliveries/{failed.id}/retry", headers=admin)
        assert retried.status_code == 200 and retried.json["attempts"] == 0
        again = client.post(f"/v1/webhooks/deliveries/{failed.id}/retry", headers=admin)
        assert again.status_code == 409


def test_rotation_signs_with_both_secrets_until_the_old_one_expires(
    client: FlaskClient, make: Factories, allow_private: None
) -> None:
    admin = make.api_key(scopes.ADMIN)
    now = utcnow()
    with receiver(200) as hook:
        created = subscribe(client, admin, hook.url, "tier.changed")
        assert "secret" not in client.get(f"/v1/webhooks/{created['id']}", headers=admin).json
        assert "secret" not in client.get("/v1/webhooks", headers=admin).json["items"][0]
        rotated = client.post(
            f"/v1/webhooks/{created['id']}/rotate-secret",
            json={"keep_previous_seconds": 3600},
            headers=idem(admin),
        ).json
        assert rotated["secret"] != created["secret"]
        emit("tier.changed", None, now, to="gold")
        relay_batch(now)
        deliver(utcnow())
        emit("tier.changed", None, now, to="silver")
        relay_batch(now)
        deliver(utcnow() + timedelta(hours=2))  # the old secret has expired by then

        first, second = hook.received
        for secret in (created["secret"], rotated["secret"]):
            assert signing.verify(
                secret, first.headers[signing.HEADER], first.body, now=time.time()
            )
        assert signing.verify(
            rotated["secret"], second.headers[signing.HEADER], second.body, now=time.time()
        )
        assert not signing.verify(
            created["secret"], second.headers[signing.HEADER], second.body, now=time.time()
        )


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("ftp://example.com/hook", "http:// or https://"),
        ("javascript:alert(1)", "http:// or https://"),
        ("https://user:pw@example.com/hook", "credentials"),
        ("http://127.0.0.1:8080/hook", "private"),
        ("http://[::1]/hook", "private"),
        ("http://10.1.2.3/hook", "private"),
        ("http://169.254.169.254/latest/meta-data", "private"),
        ("http://localhost/hook", "private"),
    ],
)
def test_urls_that_are_not_public_http_are_refused(
    client: FlaskClient, make: Factories, url: str, why: str
) -> None:
    response = client.post(
        "/v1/webhooks",
        json={"url": url, "topics": ["points.earned"]},
        headers=idem(make.api_key(scopes.ADMIN)),
    )
    assert response.status_code == 422
    assert why in error_fields(response.json)["url"][0]


def test_unknown_event_types_are_refused(client: FlaskClient, make: Factories) -> None:
    response = client.post(
        "/v1/webhooks",
        json={"url": "https://example.com/hook", "topics": ["points.earned", "points.stolen"]},
        headers=idem(make.api_key(scopes.ADMIN)),
    )
    assert response.status_code == 422
    assert "points.stolen" in error_fields(response.json)["topics"][0]


def test_a_private_target_is_refused_again_at_send_time(
    client: FlaskClient, make: Factories, allow_private: None
) -> None:
    """Allowed when saved, then the setting is off: the send checks again (as it does after
    every DNS answer) and records the refusal instead of connecting."""
    admin = make.api_key(scopes.ADMIN)
    with receiver(200) as hook:
        subscribe(client, admin, hook.url, "tier.changed")
        emit("tier.changed", None, utcnow(), to="gold")
        relay_batch(utcnow())
        operations.deliver_due(replace(POLICY, allow_private=False))
        assert hook.received == []
        [delivery] = deliveries()
        assert "private or loopback" in delivery.last_error


def test_deleting_a_subscription_removes_its_deliveries(
    client: FlaskClient, make: Factories, allow_private: None
) -> None:
    admin = make.api_key(scopes.ADMIN)
    created = subscribe(client, admin, "http://127.0.0.1:9/hook", "tier.changed")
    emit("tier.changed", None, utcnow(), to="gold")
    relay_batch(utcnow())
    assert len(deliveries()) == 1
    assert client.delete(f"/v1/webhooks/{created['id']}", headers=admin).status_code == 204
    assert deliveries() == []
    assert db.session.scalar(sa.select(sa.func.count()).select_from(WebhookSubscription)) == 0


ENDPOINTS = [
    ("post", "/v1/webhooks", {"url": "https://example.com/h", "topics": ["tier.changed"]}),
    ("get", "/v1/webhooks", None),
    ("get", "/v1/webhooks/1", None),
    ("patch", "/v1/webhooks/1", {"description": "x"}),
    ("delete", "/v1/webhooks/1", None),
    ("post", "/v1/webhooks/1/rotate-secret", {}),
    ("get", "/v1/webhooks/1/deliveries", None),
    ("post", "/v1/webhooks/deliveries/1/retry", None),
]


@pytest.mark.parametrize(("method", "path", "body"), ENDPOINTS)
def test_every_webhook_endpoint_needs_an_admin_key(
    client: FlaskClient, make: Factories, method: str, path: str, body: dict | None
) -> None:
    call = getattr(client, method)
    assert call(path, json=body).status_code == 401
    non_admin = make.api_key(*(scopes.ALL - {scopes.ADMIN}))
    assert call(path, json=body, headers=idem(non_admin)).status_code == 403
    member = make.member()
    assert call(path, json=body, headers=idem(make.member_token(member.id))).status_code == 403


def test_finished_deliveries_are_purged_after_the_retention(
    client: FlaskClient, make: Factories, allow_private: None
) -> None:
    admin = make.api_key(scopes.ADMIN)
    with receiver(200) as hook:
        subscribe(client, admin, hook.url, "tier.changed")
        emit("tier.changed", None, utcnow(), to="gold")
        emit("tier.changed", None, utcnow(), to="silver")
        relay_batch(utcnow())
        deliver(utcnow())
    emit("tier.changed", None, utcnow(), to="bronze")
    relay_batch(utcnow())  # pending: never purged
    later = utcnow() + operations.RETENTION + timedelta(minutes=1)
    assert operations.purge_finished_chunk(later, retention=operations.RETENTION, limit=1) == 1
    assert operations.purge_finished_chunk(later, retention=operations.RETENTION, limit=10) == 1
    db.session.commit()
    assert [d.status for d in deliveries()] == ["pending"]


@pytest.mark.postgres
def test_the_http_call_happens_with_no_transaction_open(
    app: Flask, client: FlaskClient, make: Factories, allow_private: None
) -> None:
    """While the receiver holds the request, no session of this database is inside a
    transaction (a slow receiver holds no locks, no connection's snapshot)."""
    admin = make.api_key(scopes.ADMIN)
    seen: list[int] = []

    def count_open_transactions() -> None:
        seen.append(open_transactions(app.config["SQLALCHEMY_DATABASE_URI"]))

    with receiver(200) as hook:
        hook.on_request = count_open_transactions
        subscribe(client, admin, hook.url, "tier.changed")
        emit("tier.changed", None, utcnow(), to="gold")
        relay_batch(utcnow())
        db.session.commit()
        assert deliver(utcnow()).succeeded == 1
    assert seen == [0]


def test_a_receiver_that_does_not_speak_http_is_a_failed_attempt(
    client: FlaskClient, make: Factories, allow_private: None
) -> None:
    """Garbage instead of a status line (http.client's BadStatusLine, not an OSError) is
    recorded like any failure instead of ending the job with the delivery still claimed."""
    import socket
    import threading

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()

    def answer_garbage() -> None:
        connection, _ = server.accept()
        connection.recv(65536)
        connection.sendall(b"garbage\r\n\r\n")
        connection.close()

    threading.Thread(target=answer_garbage, daemon=True).start()
    admin = make.api_key(scopes.ADMIN)
    subscribe(client, admin, f"http://127.0.0.1:{server.getsockname()[1]}/", "tier.changed")
    emit("tier.changed", None, utcnow(), to="gold")
    relay_batch(utcnow())
    assert deliver(utcnow()).retrying == 1
    [delivery] = deliveries()
    assert delivery.status == "pending" and delivery.claim_token is None
    assert delivery.last_error.startswith("BadStatusLine")
    server.close()
