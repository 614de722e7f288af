"""The member app registers and removes Web Push subscriptions; the push channel sends to
them through the real pywebpush, and a 404/410 from the push service removes them."""

from __future__ import annotations

import json

import pytest
import sqlalchemy as sa

from loyalty.clock import utcnow
from loyalty.db import db
from notifications import push
from notifications.providers.base import Channel
from notifications.providers.recording import RecordingProvider
from notifications.providers.settings import WebPushSettings
from notifications.providers.webpush import WebPushProvider
from notifications.push import PushSubscription
from tests.factories import idem
from tests.notifications.factories import queue, reload, send_round
from tests.notifications.servers import Reply, push_service, vapid_private_key_b64

URL = "/v1/me/push-subscriptions"
P256DH = "BNcRdreALRFXTkOOUHK1EtK2wtaz5Ry4YfYCA_0QTpQtUbVlUls0VJXg7A8u-Ts1XbjhazAkj7I99e8QcYP7DkM"
AUTH = "tBHItJI5svbpez7KI4CCXg"


def browser_json(endpoint: str = "https://fcm.googleapis.com/fcm/send/abc123") -> dict:
    return {"endpoint": endpoint, "expirationTime": None, "keys": {"p256dh": P256DH, "auth": AUTH}}


def count() -> int:
    found = db.session.scalar(sa.select(sa.func.count()).select_from(PushSubscription))
    db.session.rollback()
    return found or 0


def test_a_member_registers_lists_and_removes_a_subscription(client, make):
    member = make.member()
    token = make.member_token(member.id)

    created = client.post(URL, json=browser_json(), headers=idem(token))
    listed = client.get(URL, headers=token)
    removed = client.delete(f"{URL}/{created.json['id']}", headers=token)

    assert created.status_code == 201, created.json
    assert created.json["endpoint"] == browser_json()["endpoint"]
    assert created.json["expires_at"] is None
    assert [s["id"] for s in listed.json["items"]] == [created.json["id"]]
    assert removed.status_code == 204
    assert count() == 0


def test_an_expiration_time_in_milliseconds_is_kept(client, make):
    token = make.member_token(make.member().id)
    body = {**browser_json(), "expirationTime": 1893456000000}

    created = client.post(URL, json=body, headers=idem(token))

    assert created.json["expires_at"].startswith("2030-01-01T00:00:00")


def test_registering_an_endpoint_again_moves_it_to_the_latest_member(client, make):
    first, second = make.member(), make.member()
    client.post(URL, json=browser_json(), headers=idem(make.member_token(first.id)))

    again = client.post(URL, json=browser_json(), headers=idem(make.member_token(second.id)))

    assert again.status_code == 201
    assert count() == 1
    assert push.member_subscriptions(first.id) == []
    assert [s.id for s in push.member_subscriptions(second.id)] == [again.json["id"]]


def test_the_api_needs_a_member_token(client, make):
    key = make.api_key()  # every scope, but no member

    assert client.get(URL).status_code == 401
    assert client.post(URL, json=browser_json(), headers=idem({})).status_code == 401
    assert client.get(URL, headers=key).status_code == 403
    assert client.post(URL, json=browser_json(), headers=idem(key)).status_code == 403
    assert client.delete(f"{URL}/1", headers=key).status_code == 403


def test_a_member_cannot_see_or_remove_another_members_subscription(client, make):
    owner, other = make.member(), make.member()
    created = client.post(URL, json=browser_json(), headers=idem(make.member_token(owner.id)))
    other_token = make.member_token(other.id)

    assert client.get(URL, headers=other_token).json["items"] == []
    gone = client.delete(f"{URL}/{created.json['id']}", headers=other_token)

    assert gone.status_code == 404
    assert gone.headers["Content-Type"] == "application/problem+json"
    assert count() == 1


def test_endpoints_that_point_inwards_or_keys_that_are_no_keys_are_refused(client, make):
    token = make.member_token(make.member().id)
    bad = [
        browser_json("http://push.example.com/x"),
        browser_json("https://127.0.0.1/push"),
        browser_json("https://[::1]/push"),
        browser_json("https://localhost/push"),
        browser_json("https://user:pw@push.example.com/x"),
        {**browser_json(), "keys": {"p256dh": "A" * 87, "auth": AUTH}},
        {**browser_json(), "keys": {"p256dh": P256DH, "auth": "short-secret-xyz"}},
        {**browser_json(), "keys": {"p256dh": P256DH}},
        {**browser_json(), "expirationTime": "soon"},
        {**browser_json(), "extra": 1},
    ]
    for body in bad:
        answer = client.post(URL, json=body, headers=idem(token))
        assert answer.status_code == 422, body
        assert answer.headers["Content-Type"] == "application/problem+json"
    assert count() == 0


def _push_provider() -> WebPushProvider:
    settings = WebPushSettings(vapid_private_key_b64(), "mailto:ops@loyalty.example.com")
    return WebPushProvider(settings)


def _providers(provider) -> dict:
    found = {c: RecordingProvider(c) for c in Channel}
    found[Channel.PUSH] = provider
    return found


def test_a_push_message_reaches_the_newest_subscription_encrypted(make):
    member = make.member(name="Ada", points=250)
    with push_service() as service:
        old, new = service.subscribe(), service.subscribe()
        now = utcnow()
        for browser in (old, new):  # registered as the API does (the test service is http)
            keys = browser.as_json()["keys"]
            push.register_subscription(
                member.id, endpoint=browser.endpoint, p256dh=keys["p256dh"],
                auth=keys["auth"], expires_at=None, now=now,
            )  # fmt: skip
        db.session.commit()
        message = queue(member.id, channel=Channel.PUSH, variables={"points": 40})

        stats = send_round(providers=_providers(_push_provider()))

        assert stats.sent == 1
        [request] = service.received
        assert request.path == new.endpoint.removeprefix(service.base_url)
        assert request.payload["message_id"] == message.id
        assert "40" in request.payload["body"]
        assert reload(message.id).state == "sent"


def test_a_subscription_the_push_service_says_is_gone_is_removed(make):
    member = make.member()
    with push_service() as service:
        browser = service.subscribe()
        keys = browser.as_json()["keys"]
        push.register_subscription(
            member.id, endpoint=browser.endpoint, p256dh=keys["p256dh"], auth=keys["auth"],
            expires_at=None, now=utcnow(),
        )  # fmt: skip
        db.session.commit()
        service.replies.append(Reply(410))
        message = queue(member.id, channel=Channel.PUSH)

        send_round(providers=_providers(_push_provider()))

    assert reload(message.id).state == "failed"
    assert count() == 0


def test_without_a_subscription_a_push_is_suppressed(make):
    member = make.member()
    message = queue(member.id, channel=Channel.PUSH)

    send_round()

    assert reload(message.id).state == "suppressed"


def test_export_lists_and_erasure_deletes_the_members_subscriptions(client, make):
    member = make.member()
    token = make.member_token(member.id)
    client.post(URL, json=browser_json(), headers=idem(token))
    admin = make.api_key()

    export = client.get(f"/v1/members/{member.id}/export", headers=admin)
    erased = client.post(f"/v1/members/{member.id}/erase", headers=idem(admin))

    assert (
        export.json["sections"]["push_subscriptions"][0]["endpoint"] == browser_json()["endpoint"]
    )
    assert erased.status_code == 200, erased.json
    assert count() == 0
    assert json.dumps(erased.json).count("push_subscriptions_deleted") == 1


@pytest.mark.postgres
def test_one_endpoint_registered_by_many_devices_at_once_is_one_row(app, make):
    """Concurrent registrations of one endpoint (an app retrying, two sign-ins) never hit
    the unique constraint: one upsert each, one row, owned by one of them."""
    from tests.concurrency import in_threads

    members = [make.member().id for _ in range(8)]

    def register(i: int) -> int:
        found = push.register_subscription(
            members[i], endpoint=browser_json()["endpoint"], p256dh=P256DH, auth=AUTH,
            expires_at=None, now=utcnow(),
        )  # fmt: skip
        db.session.commit()
        return found.id

    ids = in_threads(app, len(members), register)

    assert len(set(ids)) == 1
    assert count() == 1
