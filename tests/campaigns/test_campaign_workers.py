"""A coupon campaign to 10,000 generated members on PostgreSQL with two real `omniloyal
worker` processes: one worker is killed with SIGKILL in the middle of the send and the
campaign is paused and resumed on the way, and still every eligible person gets exactly one
message and one code, the control group and the members without consent none, and the
recording provider is called once per message."""

from __future__ import annotations

import os
import signal
import time

import pytest
import sqlalchemy as sa

from campaigns import delivery
from campaigns.engine_models import CampaignRecipient
from loyalty.auth import scopes
from loyalty.coupons.models import CouponCode
from loyalty.db import db
from notifications.models import Message, RecordedMessage
from tests.campaigns.campaign_factories import body, segment
from tests.coupons import factories as coupons
from tests.factories import idem
from tests.notifications.test_worker_crash import _count, _stop, _worker
from tests.test_worker_restarts import REDIS_SERVER, RedisServer, _free_port, _wait_for

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.skipif(
        REDIS_SERVER is None and os.environ.get("CI", "").lower() != "true",
        reason="needs the redis-server binary",
    ),
]
MEMBERS = 10_000
HOLDOUT_PCT = 10

SEED = """
INSERT INTO members (id, status, locale, timezone, region, attributes, enrolled_channel,
                     created_at, updated_at, token_epoch)
SELECT g, 'active', 'en', 'UTC', 'north', '{}', 'online', now(), now(), 0
FROM generate_series(1, :n) g;
INSERT INTO member_identities (member_id, kind, value, created_at)
SELECT g, 'phone', '+49151' || lpad(g::text, 8, '0'), now() FROM generate_series(1, :n) g;
INSERT INTO member_consents (member_id, channel, purpose, granted, source, actor, updated_at)
SELECT g, 'sms', 'marketing', true, 'import', 'test', now()
FROM generate_series(1, :n) g WHERE g % 7 <> 0;
SELECT setval(pg_get_serial_sequence('members', 'id'), :n);
"""


def _seed() -> None:
    for statement in SEED.strip().split(";\n"):
        if statement.strip():
            db.session.execute(sa.text(statement), {"n": MEMBERS})
    db.session.commit()


def _processed() -> int:
    """Recipients the fan-out has reached (queued or suppressed)."""
    return _count(
        sa.select(sa.func.count())
        .select_from(CampaignRecipient)
        .where(CampaignRecipient.status.in_(["queued", "suppressed"]))
    )


def test_ten_thousand_members_each_get_one_message_through_a_crash_and_a_pause(
    app, client, make, tmp_path
):
    _seed()
    offer = coupons.offer(name="Ten thousand")
    marketer = make.api_key(scopes.CAMPAIGNS_READ, scopes.CAMPAIGNS_WRITE)
    data = body(
        segment(),
        offer={"kind": "coupon", "offer_id": offer.id},
        channel_order=["sms"],
        content={"variants": [{"name": "A", "templates": {"sms": "campaign_offer"}}]},
        holdout_pct=HOLDOUT_PCT,
    )
    created = client.post("/v1/campaigns", json=data, headers=idem(marketer))
    assert created.status_code == 201, created.json
    campaign_id = created.json["id"]

    port = _free_port()
    server = RedisServer(port, tmp_path)
    server.start()
    url = f"redis://127.0.0.1:{port}/0"
    log = tmp_path / "workers.log"
    # The lease outlives any live claim on this loaded machine (a shorter one would take a
    # slow but living worker's claims for orphans and send them again).
    slow = {"OMNILOYAL_NOTIFY_RECORDING_DELAY_MS": "2", "OMNILOYAL_NOTIFY_SENDING_LEASE": "30"}
    workers = [_worker(app, url, tmp_path, log, **slow) for _ in range(2)]
    try:
        launched = client.post(f"/v1/campaigns/{campaign_id}/launch", headers=marketer)
        assert launched.status_code == 200, launched.json
        _wait_for(lambda: _processed() >= 500, "the fan-out to start", log, timeout=180)
        workers[0].send_signal(signal.SIGKILL)  # mid-chunk or mid-send
        workers[0].wait(timeout=10)
        paused = client.post(f"/v1/campaigns/{campaign_id}/pause", headers=marketer)
        assert paused.json["status"] == "paused", paused.json
        time.sleep(3)  # a chunk in flight finishes; none starts while paused
        during = _processed()
        time.sleep(3)
        assert _processed() == during < MEMBERS
        resumed = client.post(f"/v1/campaigns/{campaign_id}/resume", headers=marketer)
        assert resumed.json["status"] == "running", resumed.json
        workers[0] = _worker(app, url, tmp_path, log, **slow)

        def done() -> bool:
            state = client.get(f"/v1/campaigns/{campaign_id}", headers=marketer).json["status"]
            in_flight = _count(
                sa.select(sa.func.count())
                .select_from(Message)
                .where(
                    Message.dedupe_key.like("campaign:%"),
                    Message.state.in_(["queued", "deferred", "sending"]),
                )
            )
            return state == "completed" and in_flight == 0

        _wait_for(done, "the whole campaign", log, timeout=600)
    finally:
        for worker in workers:
            _stop(worker)
        server.stop()

    rows = db.session.scalars(
        sa.select(CampaignRecipient).where(CampaignRecipient.campaign_id == campaign_id)
    ).all()
    assert len(rows) == MEMBERS
    control = {r.member_id for r in rows if r.status == "held_out"}
    assert control == {
        m for m in range(1, MEMBERS + 1) if delivery.is_held_out(campaign_id, m, HOLDOUT_PCT)
    }
    no_consent = {m for m in range(1, MEMBERS + 1) if m % 7 == 0} - control
    eligible = set(range(1, MEMBERS + 1)) - control - no_consent
    assert {r.member_id for r in rows if r.status == "suppressed"} == no_consent
    assert {r.member_id for r in rows if r.status == "queued"} == eligible

    messages = db.session.execute(
        sa.select(Message.member_id, Message.state).where(Message.dedupe_key.like("campaign:%"))
    ).all()
    assert sorted(m for m, _ in messages) == sorted(eligible)  # exactly one each, none else
    assert {state for _, state in messages} == {"sent"}
    calls = db.session.execute(
        sa.select(RecordedMessage.calls)
        .join(Message, Message.id == RecordedMessage.message_id)
        .where(Message.dedupe_key.like("campaign:%"))
    ).all()
    assert len(calls) == len(eligible) and {c for (c,) in calls} == {1}
    owners = db.session.scalars(
        sa.select(CouponCode.member_id).where(CouponCode.campaign_id == campaign_id)
    ).all()
    assert sorted(owners) == sorted(eligible)  # one code per messaged person, no more
