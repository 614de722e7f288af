"""gunicorn serving `wsgi:app` on loopback, started and always stopped by the benchmark."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from bench.database import REPO, VENV_BIN
from bench.environment import BenchError


@dataclass(frozen=True)
class WorkerConfig:
    worker_class: str  # sync or gthread
    workers: int
    threads: int = 1

    @property
    def label(self) -> str:
        if self.worker_class == "gthread":
            return f"gthread, {self.workers} workers x {self.threads} threads"
        return f"{self.worker_class}, {self.workers} workers"

    def arguments(self) -> list[str]:
        args = ["--worker-class", self.worker_class, "--workers", str(self.workers)]
        if self.worker_class == "gthread":
            args += ["--threads", str(self.threads)]
        return args


def _worker_tmp_dir() -> list[str]:
    """As the README's production command: each sync worker's heartbeat is an fchmod of a
    file in this directory before every request, and on a disk (here /tmp is ext4) it
    waits behind the journal's commits, which PostgreSQL's WAL flushes keep busy (balance
    reads' open-loop p99 under light disk writes: 120-180 ms, against 20-60 from memory)."""
    return ["--worker-tmp-dir", "/dev/shm"] if os.path.isdir("/dev/shm") else []


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Gunicorn:
    """Start with `start()`, always `stop()` (the runner does it in a finally block)."""

    def __init__(self, config: WorkerConfig, env: dict[str, str]) -> None:
        self.config = config
        self.env = env
        self.port = _free_port()
        self.process: subprocess.Popen[bytes] | None = None
        # Closed (and deleted) in stop().
        self._log = tempfile.NamedTemporaryFile(prefix="bench-gunicorn-", suffix=".log")  # noqa: SIM115

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        command = [
            str(VENV_BIN / "gunicorn"),
            "wsgi:app",
            "--bind",
            f"127.0.0.1:{self.port}",
            *self.config.arguments(),
            "--backlog",
            "2048",
            "--keep-alive",
            "5",
            *_worker_tmp_dir(),
            "--log-level",
            "warning",
        ]
        # Its own process group, so stop() reaches the workers too and nothing else.
        self.process = subprocess.Popen(
            command,
            cwd=REPO,
            env=self.env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self._wait_ready()

    def _wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                raise BenchError(f"gunicorn exited at start-up:\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(f"{self.base_url}/healthz", timeout=2) as response:
                    if response.status == 200:
                        # Let every worker import the app before the load starts.
                        time.sleep(1.5)
                        return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            time.sleep(0.2)
        raise BenchError(f"gunicorn did not answer /healthz within {timeout:.0f} s")

    def log_tail(self, chars: int = 3000) -> str:
        try:
            return Path(self._log.name).read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def worker_pids(self) -> list[int]:
        if self.process is None:
            return []
        result = subprocess.run(
            ["ps", "-o", "pid=", "--ppid", str(self.process.pid)], capture_output=True, text=True
        )
        return [int(pid) for pid in result.stdout.split()]

    def restarted(self) -> Gunicorn:
        """A new gunicorn with the same settings (on a new port), started."""
        server = Gunicorn(self.config, self.env)
        server.start()
        return server

    def stop(self) -> None:
        if self.process is None:
            return
        pgid = self.process.pid  # the group we created for it
        if self.process.poll() is None:
            try:
                os.killpg(pgid, signal.SIGTERM)
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(pgid, signal.SIGKILL)
                self.process.wait(timeout=5)
            except ProcessLookupError:
                pass
        # Workers that outlived the master (should not happen) share its group.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGKILL)
        self.process = None
        self._log.close()
