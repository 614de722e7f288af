"""The machine and its services: reachability checks, wrk installation, the header facts."""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime

import psycopg
import redis


class BenchError(RuntimeError):
    """The benchmark can't run; the message says why and what to do."""


def check_postgres(admin_url: str) -> str:
    """The server version string; fails clearly when PostgreSQL isn't reachable."""
    try:
        with psycopg.connect(admin_url, connect_timeout=3) as connection:
            return connection.execute("SHOW server_version").fetchone()[0]
    except psycopg.OperationalError as error:
        raise BenchError(
            f"PostgreSQL is not reachable at {admin_url}: {error}\n"
            "Start PostgreSQL (trust auth for user postgres on 127.0.0.1:5432) and retry."
        ) from None


def check_redis(url: str) -> None:
    try:
        redis.Redis.from_url(url, socket_connect_timeout=3).ping()
    except redis.RedisError as error:
        raise BenchError(f"Redis is not reachable at {url}: {error}\nStart Redis, retry.") from None


def require_tools(*names: str) -> None:
    missing = [name for name in names if shutil.which(name) is None]
    if missing:
        raise BenchError(f"missing tool(s): {', '.join(missing)} (install postgresql-client)")


def ensure_wrk() -> str:
    """The path of wrk, installed from Debian's package when it is absent."""
    found = shutil.which("wrk")
    if found:
        return found
    if os.geteuid() != 0:
        raise BenchError("wrk is not installed; run: sudo apt-get install -y wrk")
    print("wrk not found: installing it with apt-get (update, then install -y wrk) ...", flush=True)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", "wrk"]):
        result = subprocess.run(command, env=env, capture_output=True, text=True)
        if result.returncode != 0:
            raise BenchError(f"{' '.join(command)} failed:\n{result.stderr[-2000:]}")
    found = shutil.which("wrk")
    if not found:
        raise BenchError("apt-get install wrk succeeded but wrk is still not on PATH")
    return found


def _memory_gib() -> str:
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemTotal:"):
                    return f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
    except OSError:
        pass
    return "unknown"


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _tool_version(command: list[str]) -> str:
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    text = (result.stdout or result.stderr).strip().splitlines()
    return text[0] if text else "unknown"


def machine_facts(pg_version: str, wrk_path: str) -> dict[str, str]:
    load1, load5, _ = os.getloadavg()
    return {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "cpus (nproc)": str(os.cpu_count()),
        "cpu": _cpu_model(),
        "memory": _memory_gib(),
        "load average at start (1 min, 5 min)": f"{load1:.2f}, {load5:.2f}",
        "other busy processes at start (% of one core)": busy_processes(),
        "PostgreSQL": pg_version,
        "Python": sys.version.split()[0],
        "kernel": platform.release(),
        "wrk": _tool_version([wrk_path, "-v"]),
        "pgbench": _tool_version(["pgbench", "--version"]),
    }


def _cpu_ticks() -> dict[int, tuple[str, int]]:
    ticks: dict[int, tuple[str, int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as stat:
                text = stat.read()
        except OSError:
            continue
        name = text[text.index("(") + 1 : text.rindex(")")]
        fields = text[text.rindex(")") + 2 :].split()
        ticks[int(entry)] = (name, int(fields[11]) + int(fields[12]))  # utime + stime
    return ticks


def busy_processes(interval: float = 1.0, threshold: float = 10.0) -> str:
    """Other processes using more than `threshold` % of a core, sampled over `interval` s."""
    before = _cpu_ticks()
    time.sleep(interval)
    after = _cpu_ticks()
    hertz = os.sysconf("SC_CLK_TCK")
    busy = []
    for pid, (name, ticks) in after.items():
        if pid == os.getpid() or pid not in before:
            continue
        percent = (ticks - before[pid][1]) / hertz / interval * 100
        if percent >= threshold:
            busy.append((percent, name))
    busy.sort(reverse=True)
    return ", ".join(f"{name} {percent:.0f}%" for percent, name in busy) or "none"


class CpuWatch:
    """CPU time used during the run, split into the bench's own process tree, PostgreSQL
    (every database, ours included) and everything else; sampled from /proc every 2 s."""

    def __init__(self, interval: float = 2.0) -> None:
        self.interval = interval
        self.used: dict[str, float] = {"bench": 0.0, "postgres": 0.0, "other": 0.0}
        self.others: dict[str, float] = {}
        self._last: dict[int, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._started = 0.0

    def start(self) -> None:
        self._started = time.monotonic()
        self._last = {pid: ticks for pid, (_, ticks) in _cpu_ticks().items()}
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self._sample()

    def _sample(self) -> None:
        hertz = os.sysconf("SC_CLK_TCK")
        parents = _parents()
        for pid, (name, ticks) in _cpu_ticks().items():
            seconds = (ticks - self._last.get(pid, 0)) / hertz
            self._last[pid] = ticks
            if seconds <= 0:
                continue
            if _descends_from(pid, os.getpid(), parents):
                self.used["bench"] += seconds
            elif name.startswith("postgres"):
                self.used["postgres"] += seconds
            else:
                self.used["other"] += seconds
                self.others[name] = self.others.get(name, 0.0) + seconds

    def stop(self) -> str:
        self._stop.set()
        self._thread.join(timeout=5)
        self._sample()
        wall = time.monotonic() - self._started
        top = sorted(self.others.items(), key=lambda item: -item[1])[:4]
        busiest = ", ".join(f"{name} {seconds:.0f}" for name, seconds in top) or "none"
        return (
            f"{wall:.0f} s x {os.cpu_count()} cores = {wall * (os.cpu_count() or 1):.0f} core-s; "
            f"bench's processes (gunicorn, wrk, pgbench, seeding) {self.used['bench']:.0f}, "
            f"PostgreSQL (all databases) {self.used['postgres']:.0f}, "
            f"other processes {self.used['other']:.0f} ({busiest})"
        )


def _parents() -> dict[int, int]:
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as stat:
                    text = stat.read()
            except OSError:
                continue
            parents[int(entry)] = int(text[text.rindex(")") + 2 :].split()[1])
    return parents


def _descends_from(pid: int, ancestor: int, parents: dict[int, int]) -> bool:
    for _ in range(64):
        if pid == ancestor:
            return True
        pid = parents.get(pid, 0)
        if pid <= 1:
            return False
    return False
