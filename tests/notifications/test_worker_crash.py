"""Real worker processes: killed with SIGKILL in the middle of a chunk, every message is
still sent exactly once; with Redis stopped while orders are posted, no ledger write is
lost and the messages go out once Redis is back.

`omniloyal worker` subprocesses (RQ worker + scheduler) against PostgreSQL and a
redis-server of the test's own; the recording provider counts every call it gets.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

from loyalty.auth import scopes
from loyalty.clock import utcnow
from loyalty.db import db
from loyalty.ledger.operations import member_balance
from notifications.consent import Purpose
from notifications.models import Message, MessageTransition, RecordedMessage
from notifications.pipeline import SEND_CHUNK, Draft, create_messages
from notifications.providers.base import Channel
from tests.conftest import NO_RATE_LIMITS
from tests.earning import factories as earning_factories
from tests.earning.factories import order_body
from tests.factories import idem
from tests.test_worker_restarts import REDIS_SERVER, RedisServer, _free_port, _wait_for

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.skipif(
        REDIS_SERVER is None and os.environ.get("CI", "").lower() != "true",
        reason="needs the redis-server binary",
    ),
]
PHONE = "+4915112345678"


def _worker(app, redis_url: str, tmp_path: Path, log: Path, **env: str) -> subprocess.Popen:
    settings = app.extensions["omniloyal.settings"]
    environment = {
        **os.environ,
        "DATABASE_URL": settings.database_url,
        "REDIS_URL": redis_url,
        "SECRET_KEY": settings.secret_key,
        "OMNILOYAL_INSTANCE_PATH": str(tmp_path),
        "LOG_LEVEL": "WARNING",
        "OMNILOYAL_NOTIFY_QUIET_HOURS": "off",
        "OMNILOYAL_NOTIFY_MARKETING_CAP": "off",
        **env,
    }
    omniloyal = Path(sys.executable).parent / "omniloyal"
    return subprocess.Popen(
        [str(omniloyal), "worker"], env=environment, stdout=log.open("a"), stderr=subprocess.STDOUT
    )


def _count(query) -> int:
    value = db.session.scalar(query)
    db.session.rollback()  # a fresh snapshot next time
    return int(value or 0)


def _recorded() -> int:
    return _count(sa.select(sa.func.count()).select_from(RecordedMessage))


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


CHUNKS = 3  # the send job's chunks of SEND_CHUNK messages, the last one partly filled


def test_a_worker_killed_mid_chunk_leaves_every_message_sent_exactly_once(app, make, tmp_path):
    """The send job claims SEND_CHUNK messages, hands them to the provider in one
    `send_many` (the recording provider waits 4 ms a message, then records the chunk) and
    records the results. The worker is killed once the first chunk is sent, while the next
    is at the provider's door: those messages stay `sending`, and after a restart and the
    lease they are resolved through the provider's lookup and sent once."""
    member = make.member(phone=PHONE)
    now = utcnow()
    total = SEND_CHUNK * (CHUNKS - 1) + SEND_CHUNK // 5
    drafts = [
        Draft(member_id=member.id, channel=Channel.SMS, template="points_earned",
              purpose=Purpose.TRANSACTIONAL, dedupe_key=f"crash:{n}", variables={"points": n})
        for n in range(total)
    ]  # fmt: skip
    ids = sorted(create_messages(drafts, now).values())
    db.session.commit()
    assert len(ids) == total
    port = _free_port()
    server = RedisServer(port, tmp_path)
    server.start()
    log = tmp_path / "worker.log"
    slow = {"OMNILOYAL_NOTIFY_RECORDING_DELAY_MS": "4", "OMNILOYAL_NOTIFY_SENDING_LEASE": "2"}
    url = f"redis://127.0.0.1:{port}/0"
    worker = _worker(app, url, tmp_path, log, **slow)
    sending = sa.select(sa.func.count()).select_from(Message).where(Message.state == "sending")
    sent = sa.select(sa.func.count()).select_from(Message).where(Message.state == "sent")
    try:
        _wait_for(
            lambda: worker.poll() is None and _count(sent) >= SEND_CHUNK and _count(sending) > 0,
            "the first chunk sent and the next one in flight",
            log,
        )
        worker.send_signal(signal.SIGKILL)  # mid-chunk: the claimed chunk is left `sending`
        worker.wait(timeout=10)
        in_flight = _count(sending)
        assert in_flight > 0, "the kill should have hit a chunk in flight"
        assert _recorded() < total

        worker = _worker(app, url, tmp_path, log, **slow)
        _wait_for(lambda: worker.poll() is None and _count(sent) == total, "every send", log, 120)
    finally:
        _stop(worker)
        server.stop()

    rows = db.session.execute(sa.select(RecordedMessage.message_id, RecordedMessage.calls)).all()
    assert sorted(message_id for message_id, _ in rows) == ids  # each recorded once
    assert {calls for _, calls in rows} == {1}  # and the provider was called once for each
    recovered = _count(
        sa.select(sa.func.count())
        .select_from(MessageTransition)
        .where(MessageTransition.reason.like("worker died mid-send%"))
    )
    assert recovered == in_flight  # every orphan resolved through the provider's lookup
    states = _count(
        sa.select(sa.func.count(sa.distinct(MessageTransition.message_id))).where(
            MessageTransition.to_state == "sent"
        )
    )
    assert states == total  # each message's transitions end in one `sent`


def test_orders_posted_while_redis_is_down_are_kept_and_notified_once_it_is_back(
    app, make, tmp_path
):
    from loyalty.app import create_app

    member = make.member(phone=PHONE)
    earning_factories.base_rate()
    headers = make.api_key(scopes.ORDERS_WRITE)
    port = _free_port()
    url = f"redis://127.0.0.1:{port}/0"
    server = RedisServer(port, tmp_path)
    server.start()
    settings = app.extensions["omniloyal.settings"]
    web = create_app(
        {"database_url": settings.database_url, "redis_url": url,
         "secret_key": settings.secret_key, "run_embedded_worker": False, **NO_RATE_LIMITS}
    )  # fmt: skip
    client = web.test_client()
    log = tmp_path / "worker.log"
    worker = _worker(app, url, tmp_path, log)
    sms = sa.select(sa.func.count()).select_from(RecordedMessage)

    def post() -> None:
        response = client.post(
            "/v1/orders", json=order_body({"member_id": member.id}), headers=idem(headers)
        )
        assert response.status_code == 201, response.json

    try:
        post()
        _wait_for(lambda: worker.poll() is None and _count(sms) == 2, "the first messages", log)
        server.stop()
        for _ in range(5):
            post()  # the ledger is in PostgreSQL: Redis being away loses nothing
        assert member_balance(member.id).balance == 600
        db.session.rollback()
        time.sleep(3)
        assert worker.poll() is None, log.read_text()
        assert _count(sms) == 2  # nothing can be relayed or sent without the queue
        server.start()
        _wait_for(lambda: worker.poll() is None and _count(sms) == 12, "the rest", log, 90)
    finally:
        _stop(worker)
        server.stop()
    rows = db.session.execute(sa.select(RecordedMessage.message_id, RecordedMessage.calls)).all()
    assert len({m for m, _ in rows}) == 12 and {c for _, c in rows} == {1}
    assert _count(sa.select(sa.func.count()).select_from(Message)) == 12  # SMS + email, 6 orders
