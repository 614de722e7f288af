"""The admin API over dead letters: list them page by page, retry one or all."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from loyalty import outbox
from loyalty.auth import scopes
from loyalty.clock import utcnow
from loyalty.outbox import DeliveryStatus
from loyalty.outbox.admin import backlog as admin_backlog
from tests.factories import idem
from tests.members.factories import PROBLEM
from tests.outbox.conftest import MAX_ATTEMPTS, delivery, emit, relay

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


class Refused(RuntimeError):
    pass


@pytest.fixture
def admin(make):
    return make.api_key(scopes.ADMIN)


@pytest.fixture
def broken(register):
    """Consumers `test.sms` and `test.mail` that fail while `state["broken"]`."""
    state = {"broken": True, "seen": []}

    def handler(event: outbox.Event) -> None:
        if state["broken"]:
            raise Refused(f"event {event.id} refused")
        state["seen"].append(event.id)

    register("test.sms", handler, "t.x")
    register("test.mail", handler, "t.x")
    return state


def _kill(event_ids: list[int]) -> None:
    """Run the relay until every delivery of these events is dead."""
    now = T0
    for _ in range(MAX_ATTEMPTS):
        relay(now)
        now += timedelta(hours=2)


def test_dead_letters_are_listed_page_by_page_with_the_event_and_last_error(client, admin, broken):
    events = [emit("t.x", member, T0, order_id=member * 10) for member in (1, 2, 3)]
    _kill(events)

    first = client.get("/v1/outbox/dead-letters?limit=4", headers=admin)
    assert first.status_code == 200
    assert len(first.json["items"]) == 4 and first.json["next_cursor"] is not None
    second = client.get(
        f"/v1/outbox/dead-letters?limit=4&cursor={first.json['next_cursor']}", headers=admin
    )
    assert len(second.json["items"]) == 2 and second.json["next_cursor"] is None
    items = first.json["items"] + second.json["items"]
    assert sorted((i["consumer"], i["event_id"]) for i in items) == sorted(
        (c, e) for c in ("test.sms", "test.mail") for e in events
    )
    item = items[0]
    assert item["status"] == "dead" and item["attempts"] == MAX_ATTEMPTS
    assert item["topic"] == "t.x" and item["payload"] == {"order_id": item["member_id"] * 10}
    assert item["last_error"] == f"Refused: event {item['event_id']} refused"

    only_mail = client.get("/v1/outbox/dead-letters?consumer=test.mail", headers=admin)
    assert {i["consumer"] for i in only_mail.json["items"]} == {"test.mail"}
    assert len(only_mail.json["items"]) == 3


def test_retrying_one_dead_letter_delivers_it_with_fresh_attempts(client, admin, broken):
    event_id = emit("t.x", 1, T0)
    _kill([event_id])
    dead = delivery("test.sms", event_id)
    broken["broken"] = False

    response = client.post(f"/v1/outbox/dead-letters/{dead.id}/retry", headers=idem(admin))
    assert response.status_code == 200
    assert (response.json["status"], response.json["attempts"]) == ("pending", 0)

    relay(utcnow() + timedelta(seconds=1))
    assert broken["seen"] == [event_id]  # only test.sms: test.mail's letter is still dead
    assert delivery("test.sms", event_id).status == DeliveryStatus.DONE
    assert delivery("test.mail", event_id).status == DeliveryStatus.DEAD


def test_retrying_all_dead_letters_of_a_consumer_or_of_every_consumer(client, admin, broken):
    events = [emit("t.x", member, T0) for member in (1, 2)]
    _kill(events)
    broken["broken"] = False

    mail = client.post(
        "/v1/outbox/dead-letters/retry", json={"consumer": "test.mail"}, headers=idem(admin)
    )
    assert mail.status_code == 200 and mail.json == {"retried": 2}
    assert delivery("test.sms", events[0]).status == DeliveryStatus.DEAD
    everyone = client.post("/v1/outbox/dead-letters/retry", json={}, headers=idem(admin))
    assert everyone.json == {"retried": 2}

    relay(utcnow() + timedelta(seconds=1))
    assert sorted(broken["seen"]) == sorted(events * 2)
    listed = client.get("/v1/outbox/dead-letters", headers=admin)
    assert listed.json == {"items": [], "next_cursor": None}


def test_retrying_what_is_not_a_dead_letter_is_a_problem(client, admin, register):
    register("test.fine", lambda event: None, "t.x")
    event_id = emit("t.x", 1, T0)
    relay(T0)
    done = delivery("test.fine", event_id)

    conflict = client.post(f"/v1/outbox/dead-letters/{done.id}/retry", headers=idem(admin))
    assert conflict.status_code == 409 and conflict.content_type == PROBLEM
    assert conflict.json["type"].endswith("/delivery-not-dead")
    missing = client.post("/v1/outbox/dead-letters/999999/retry", headers=idem(admin))
    assert missing.status_code == 404 and missing.content_type == PROBLEM


@pytest.mark.parametrize("query", ["limit=0", "limit=201", "cursor=-1", "consumer="])
def test_bad_list_parameters_are_a_422_problem(client, admin, query):
    response = client.get(f"/v1/outbox/dead-letters?{query}", headers=admin)
    assert response.status_code == 422 and response.content_type == PROBLEM


def test_only_admin_keys_see_or_retry_dead_letters(client, make):
    pos = make.api_key(*scopes.POS)
    assert client.get("/v1/outbox/dead-letters", headers=pos).status_code == 403
    assert (
        client.post("/v1/outbox/dead-letters/retry", json={}, headers=idem(pos)).status_code == 403
    )
    assert client.get("/v1/outbox/dead-letters").status_code == 401


def test_the_dead_letter_api_is_in_the_openapi_document(client):
    paths = client.get("/openapi.json").json["paths"]
    assert set(paths["/v1/outbox/dead-letters"]) == {"get"}
    assert "post" in paths["/v1/outbox/dead-letters/{delivery_id}/retry"]
    assert "post" in paths["/v1/outbox/dead-letters/retry"]


def test_the_backlog_shows_undispatched_events_due_deliveries_and_dead_letters(app, broken):
    dead = emit("t.x", 1, T0)
    _kill([dead])
    waiting = emit("t.x", 2, T0)  # not dispatched yet
    later = T0 + timedelta(days=1)

    before = admin_backlog(later)
    assert before["undispatched_events"] == {
        "count": 1,
        "oldest": T0.isoformat(),
        "age_seconds": 86400,
    }
    assert before["due_deliveries"] == {}
    assert before["dead_letters"]["count"] == 2
    relay(later)  # dispatched; both consumers fail once and back off
    backlog = admin_backlog(later + timedelta(hours=2))
    assert backlog["undispatched_events"] == {"count": 0, "oldest": None, "age_seconds": 0}
    assert set(backlog["due_deliveries"]) == {"test.mail", "test.sms"}
    assert backlog["due_deliveries"]["test.sms"]["count"] == 1
    assert 7000 < backlog["due_deliveries"]["test.sms"]["age_seconds"] <= 7200
    assert delivery("test.sms", waiting).attempts == 1


def test_readiness_reports_the_outbox_backlog(client, broken):
    _kill([emit("t.x", 1, T0)])
    emit("t.x", 2, T0)

    ready = client.get("/readyz")

    assert ready.status_code == 200
    outbox_backlog = ready.json["backlog"]["outbox"]
    assert outbox_backlog["undispatched_events"]["count"] == 1
    assert outbox_backlog["undispatched_events"]["oldest"] == T0.isoformat()
    assert outbox_backlog["dead_letters"]["count"] == 2


def test_readiness_on_a_database_not_migrated_yet_reports_the_backlog_error(tmp_path):
    from loyalty.app import create_app

    app = create_app(
        {
            "database_url": f"sqlite:///{tmp_path / 'empty.db'}",
            "redis_url": None,
            "secret_key": "s" * 40,
        }
    )
    response = app.test_client().get("/readyz")
    assert response.status_code == 200
    assert response.json["backlog"]["outbox"] == {"error": "OperationalError"}
