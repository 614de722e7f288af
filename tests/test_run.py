"""`omniloyal run` as `make run` starts it: the port from FLASK_RUN_PORT, short request lines."""

from __future__ import annotations

import os
import re
import socket
import stat
import subprocess
import sys
import time
import urllib.request
from pathlib import Path


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _wait_until_up(url: str, process: subprocess.Popen[str], seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert process.poll() is None, process.communicate()
        try:
            with urllib.request.urlopen(url, timeout=1):
                return
        except OSError:
            time.sleep(0.2)
    raise AssertionError(f"{url} did not answer within {seconds} s")


def test_run_serves_on_flask_run_port_and_logs_one_short_line_per_request(tmp_path: Path):
    port = _free_port()
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in {"DATABASE_URL", "REDIS_URL", "SECRET_KEY"}
    }
    env.update(
        OMNILOYAL_INSTANCE_PATH=str(tmp_path),
        OMNILOYAL_EMBEDDED_WORKER="false",
        FLASK_RUN_PORT=str(port),
    )
    command = [sys.executable, "-c", "from loyalty.cli import main; main()"]
    process = subprocess.Popen(
        [*command, "run", "--log-format", "console"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        _wait_until_up(f"http://127.0.0.1:{port}/healthz", process)
    finally:
        process.terminate()
        stdout, stderr = process.communicate(timeout=10)

    assert f"API docs: http://127.0.0.1:{port}/docs" in stdout
    request_lines = [line for line in stderr.splitlines() if "/healthz" in line]
    assert request_lines, stderr
    assert re.fullmatch(r"\d\d:\d\d:\d\d GET /healthz 200 \d+ ms", request_lines[-1])
    # Without SECRET_KEY, `omniloyal run` on the embedded default made up its own key.
    assert stat.S_IMODE((tmp_path / "secret_key").stat().st_mode) == 0o600


def _make_run_commands(*args: str) -> str:
    """The commands `make run` would run (dry run: nothing is installed or started)."""
    env = {key: value for key, value in os.environ.items() if key not in {"PORT", "MAKEFLAGS"}}
    root = Path(__file__).resolve().parent.parent
    done = subprocess.run(
        ["make", "--dry-run", "run", *args], cwd=root, env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_make_run_serves_on_port_when_given_and_leaves_flask_run_port_in_charge_otherwise():
    assert "omniloyal run --log-format console --port 8080" in _make_run_commands("PORT=8080")
    assert "--port" not in _make_run_commands()


def test_gunicorn_workers_serve_with_their_start_up_heap_out_of_the_collectors_view(
    tmp_path: Path,
):
    """Each gunicorn worker imports wsgi.py. What start-up built stays for the process's
    life; were it left to the collector, every full collection would walk it all and the
    worker would stall for 150+ ms (loyalty.app.freeze_startup_heap)."""
    env = {key: value for key, value in os.environ.items() if key != "REDIS_URL"}
    env.update(
        OMNILOYAL_INSTANCE_PATH=str(tmp_path),
        DATABASE_URL=f"sqlite:///{tmp_path / 'shop.db'}",
        SECRET_KEY="k" * 48,
    )
    probe = "import gc, wsgi; print(gc.get_freeze_count(), len(gc.get_objects()))"
    result = subprocess.run(
        [sys.executable, "-c", probe], env=env, capture_output=True, text=True, check=True
    )
    frozen, collectable = map(int, result.stdout.split())

    assert frozen > 100_000  # the app, its modules and their metadata
    assert collectable < 1_000  # what a full collection walks: next to nothing
