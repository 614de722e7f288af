"""`omniloyal worker` and its scheduler survive a Redis restart.

A real redis-server on a spare port, a real `omniloyal worker` process: periodic jobs run,
Redis stops and starts again (empty, as after a restart without persistence), and the
same process schedules and runs the periodic jobs again.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest
import redis

from loyalty.clock import utcnow
from loyalty.db import db
from loyalty.ledger import operations as ledger
from loyalty.ledger.models import HoldStatus, PointHold
from loyalty.scheduler import last_tick

REDIS_SERVER = shutil.which("redis-server")
pytestmark = pytest.mark.skipif(
    REDIS_SERVER is None and os.environ.get("CI", "").lower() != "true",
    reason="needs the redis-server binary",
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RedisServer:
    """A throwaway redis-server on `port`, without persistence: a restart empties it."""

    def __init__(self, port: int, workdir: Path) -> None:
        self.port, self.workdir = port, workdir
        self.process: subprocess.Popen[bytes] | None = None
        self.connection = redis.Redis(port=port, socket_timeout=2)

    def start(self) -> None:
        self.process = subprocess.Popen(
            [REDIS_SERVER or "redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
             "--save", "", "--appendonly", "no", "--dir", str(self.workdir)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        _wait_for(lambda: _pings(self.connection), "redis-server to start")

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=10)
            self.process = None


def _pings(connection: redis.Redis) -> bool:
    try:
        return bool(connection.ping())
    except redis.ConnectionError:
        return False


def _wait_for(
    condition: Callable[[], bool], what: str, log: Path | None = None, timeout: float = 60.0
) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}" + (log.read_text() if log else ""))
        time.sleep(0.2)


def _alive(process: subprocess.Popen[bytes], log: Path) -> bool:
    assert process.poll() is None, f"the worker exited:\n{log.read_text()}"
    return True


def _overdue_hold(member_id: int) -> int:
    hold = ledger.hold_points(
        member_id, 10, now=utcnow() - timedelta(minutes=5), ttl_seconds=60,
        reference=None, client_id=None, store_id=None,
    )  # fmt: skip
    db.session.commit()
    return hold.id


def _expired(hold_id: int) -> bool:
    status = db.session.get(PointHold, hold_id, populate_existing=True).status
    db.session.rollback()  # end the read: the next one sees what the worker committed
    return status == HoldStatus.EXPIRED


def test_the_worker_and_its_scheduler_run_periodic_jobs_again_after_redis_restarts(
    app, make, tmp_path
):
    member = make.member(points=100)
    port = _free_port()
    settings = app.extensions["omniloyal.settings"]
    env = {
        **os.environ,
        "DATABASE_URL": settings.database_url,
        "REDIS_URL": f"redis://127.0.0.1:{port}/0",
        "SECRET_KEY": settings.secret_key,
        "OMNILOYAL_INSTANCE_PATH": str(tmp_path),
        "LOG_LEVEL": "WARNING",
    }
    omniloyal = Path(sys.executable).parent / "omniloyal"
    log_path = tmp_path / "worker.log"
    server = RedisServer(port, tmp_path)
    server.start()
    with open(log_path, "w") as log_file:
        worker = subprocess.Popen(
            [str(omniloyal), "worker"], env=env, stdout=log_file, stderr=subprocess.STDOUT
        )
        try:
            first = _overdue_hold(member.id)
            _wait_for(lambda: _alive(worker, log_path) and _expired(first), "a run", log_path)
            assert last_tick(server.connection) is not None

            server.stop()
            second = _overdue_hold(member.id)
            time.sleep(3)  # Redis is away: the scheduler's ticks and the RQ worker fail
            assert worker.poll() is None, log_path.read_text()
            restarted_at = time.time()
            server.start()

            _wait_for(lambda: _alive(worker, log_path) and _expired(second), "a new run", log_path)
            tick = last_tick(server.connection)
            assert tick is not None and tick > restarted_at
            assert worker.poll() is None, log_path.read_text()
        finally:
            worker.send_signal(signal.SIGTERM)
            worker.wait(timeout=30)
            server.stop()
    assert worker.returncode == 0, log_path.read_text()
