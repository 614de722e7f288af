"""The two load generators: wrk against the API, pgbench against the database."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from bench.environment import BenchError

LUA_DIR = Path(__file__).resolve().parent / "lua"
SQL_DIR = Path(__file__).resolve().parent / "sql"


@dataclass(frozen=True)
class Measurement:
    """Throughput and latency of one load run."""

    rps: float
    p50_ms: float
    p99_ms: float
    completed: int
    errors: int = 0
    error_sample: str = ""
    windows: tuple[float, ...] = ()  # throughput per consecutive window (e.g. 10 s)

    @property
    def flat(self) -> bool | None:
        """No decay: the last window at least 90 % of the first (None: fewer than two
        windows). A rise is not decay: runs often warm up over their first window."""
        if len(self.windows) < 2 or not self.windows[0]:
            return None
        return self.windows[-1] >= 0.9 * self.windows[0]


def per_window(per_second: dict[int, int], window: int) -> tuple[float, ...]:
    """Throughput per `window` seconds from responses counted per wall-clock second.

    The first and last seconds are partial (the run starts and ends inside them), so they
    are left out; a second with no response at all (a stall) counts as zero; a tail
    shorter than half a window is left out too."""
    if len(per_second) < 3:
        return ()
    first, last = min(per_second) + 1, max(per_second) - 1
    windows: list[float] = []
    start = first
    while start <= last:
        end = min(start + window, last + 1)
        if windows and end - start < window / 2:
            break
        windows.append(sum(per_second.get(s, 0) for s in range(start, end)) / (end - start))
        start = end
    return tuple(windows)


# --- wrk -------------------------------------------------------------------------------------


def lua_table(data: dict[str, object]) -> str:
    """A Lua chunk returning `data` (strings, ints and lists of them)."""

    def value(item: object) -> str:
        if isinstance(item, bool):
            return "true" if item else "false"
        if isinstance(item, int | float):
            return repr(item)
        if isinstance(item, str):
            escaped = item.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
            return f'"{escaped}"'
        if isinstance(item, list | tuple):
            return "{" + ",\n".join(value(x) for x in item) + "}"
        raise TypeError(f"can't write {type(item).__name__} to Lua")

    fields = ",\n".join(f"{key} = {value(item)}" for key, item in data.items())
    return "return {\n" + fields + "\n}\n"


def run_wrk(
    wrk: str,
    script: str,
    base_url: str,
    data: dict[str, object],
    *,
    clients: int,
    duration: int,
    threads: int = 2,
    window: int = 10,
) -> Measurement:
    """Run bench/lua/<script> for `duration` seconds with `clients` connections."""
    threads = min(threads, clients)
    with tempfile.NamedTemporaryFile("w", prefix="bench-data-", suffix=".lua") as data_file:
        data_file.write(lua_table({**data, "wrk_threads": threads}))
        data_file.flush()
        command = [
            wrk,
            f"--threads={threads}",
            f"--connections={clients}",
            f"--duration={duration}s",
            "--timeout=10s",
            f"--script={LUA_DIR / script}",
            base_url,
            "--",
            data_file.name,
        ]
        result = subprocess.run(
            command,
            capture_output=True,
            text=True,
            timeout=duration + 60,
            env={"BENCH_LUA_DIR": str(LUA_DIR), "PATH": "/usr/bin:/bin"},
        )
    if result.returncode != 0:
        raise BenchError(f"wrk failed ({result.returncode}): {result.stderr or result.stdout}")
    return _parse_wrk(result.stdout, window)


def _parse_wrk(output: str, window: int = 10) -> Measurement:
    line = next((x for x in output.splitlines() if x.startswith("BENCH_RESULT ")), None)
    if line is None:
        raise BenchError(f"wrk printed no BENCH_RESULT line:\n{output[-2000:]}")
    values = dict(part.split("=", 1) for part in line.removeprefix("BENCH_RESULT ").split())
    sample = next((x for x in output.splitlines() if x.startswith("BENCH_ERROR ")), "")
    requests = int(values["requests"])
    seconds = int(values["duration_us"]) / 1e6
    errors = sum(int(values[k]) for k in values if k.startswith("errors_"))
    seconds_line = next((x for x in output.splitlines() if x.startswith("BENCH_SECONDS")), "")
    per_second = {int(a): int(b) for a, b in (p.split("=") for p in seconds_line.split()[1:])}
    return Measurement(
        rps=(requests - errors) / seconds if seconds else 0.0,
        p50_ms=int(values["p50_us"]) / 1000,
        p99_ms=int(values["p99_us"]) / 1000,
        completed=requests,
        errors=errors,
        error_sample=sample.removeprefix("BENCH_ERROR ")[:300],
        windows=per_window(per_second, window),
    )


# --- pgbench ---------------------------------------------------------------------------------

_TPS = re.compile(r"^tps = ([\d.]+) \(without initial connection time\)", re.MULTILINE)
_FAILED = re.compile(r"^number of failed transactions: (\d+)", re.MULTILINE)
_PROCESSED = re.compile(r"^number of transactions actually processed: (\d+)", re.MULTILINE)
_PROGRESS = re.compile(r"^progress: ([\d.]+) s, ([\d.]+) tps", re.MULTILINE)


def run_pgbench(
    database_url: str,
    script: str,
    *,
    clients: int,
    duration: int,
    variables: dict[str, object] | None = None,
    threads: int = 2,
    window: int = 10,
    options: str = "",
) -> Measurement:
    """Run bench/sql/<script> with prepared statements; latency percentiles from -l logs.

    `options` are the session settings the app's connections use (PGOPTIONS)."""
    log_dir = Path(tempfile.mkdtemp(prefix="bench-pgbench-"))
    try:
        command = [
            "pgbench",
            "--no-vacuum",
            f"--client={clients}",
            f"--jobs={min(threads, clients)}",
            f"--time={duration}",
            "--protocol=prepared",
            f"--file={SQL_DIR / script}",
            "--log",
            f"--log-prefix={log_dir / 'tx'}",
            f"--progress={window}",
        ]
        for name, value in (variables or {}).items():
            command += ["--define", f"{name}={value}"]
        command.append(database_url)
        env = {**os.environ, "PGOPTIONS": options} if options else None
        result = subprocess.run(
            command, capture_output=True, text=True, timeout=duration + 120, env=env
        )
        if result.returncode not in (0, 2) or not _TPS.search(result.stdout):
            raise BenchError(
                f"pgbench {script} failed ({result.returncode}):\n{result.stderr[-3000:]}"
            )
        latencies = _logged_latencies(log_dir)
    finally:
        shutil.rmtree(log_dir, ignore_errors=True)
    failed_match = _FAILED.search(result.stdout)
    processed = _PROCESSED.search(result.stdout)
    if "Run was aborted" in result.stderr or " aborted in command " in result.stderr:
        # A client that hits an error stops for the rest of the run: the figures are void.
        errors = [line for line in result.stderr.splitlines() if "error:" in line]
        raise BenchError(f"pgbench {script} aborted ({len(errors)} errors): {errors[:2]}")
    latencies.sort()
    return Measurement(
        rps=float(_TPS.search(result.stdout).group(1)),  # type: ignore[union-attr]
        p50_ms=_percentile(latencies, 50) / 1000,
        p99_ms=_percentile(latencies, 99) / 1000,
        completed=int(processed.group(1)) if processed else len(latencies),
        errors=int(failed_match.group(1)) if failed_match else 0,
        error_sample=result.stderr.strip().splitlines()[-1][:300] if result.returncode else "",
        windows=tuple(float(tps) for _, tps in _PROGRESS.findall(result.stderr)),
    )


def _logged_latencies(log_dir: Path) -> list[int]:
    """Per-transaction latencies (µs) from pgbench's logs; failed ones are left out."""
    latencies: list[int] = []
    for path in log_dir.iterdir():
        with path.open() as log:
            for line in log:
                fields = line.split()
                if len(fields) >= 3 and fields[2].isdigit():
                    latencies.append(int(fields[2]))
    return latencies


def _percentile(sorted_values: list[int], percent: float) -> float:
    if not sorted_values:
        return 0.0
    rank = max(0, min(len(sorted_values) - 1, round(percent / 100 * len(sorted_values)) - 1))
    return float(sorted_values[rank])
