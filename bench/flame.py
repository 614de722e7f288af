"""Where the time of one hot request goes, as a flame-graph summary: py-spy over bench.profile.

    .venv/bin/python -m bench.flame                 # earn, redeem, hot, balance
    .venv/bin/python -m bench.flame --only earn --requests 3000

Samples (py-spy, 500 per second) the in-process requests of `bench.profile --sampling-only`
and sorts each sample into one part of the request by the frames on its stack, so the
summary is a flame graph folded into rows a person can compare before and after a change.
The folded stacks are kept in bench/results/flame_<scenario>.folded (open them in
speedscope.app or inferno to see the graph itself).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from bench.database import REPO, VENV_BIN

RESULTS = REPO / "bench" / "results"

# Each sample goes to the innermost frame of ours or of a per-request library on its stack,
# so "authentication" is the token check itself, not the handler it wraps; the database wait
# wins wherever it is (the client blocked on PostgreSQL, whatever asked).
WAIT = ("Connection.wait", "waiting.py")
SQL = ("sqlalchemy/", "psycopg/")
OURS = ("loyalty/", "campaigns/", "notifications/")
LIBRARY_PARTS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("rate limiting (Redis)", ("flask_limiter/", "limits/")),
    ("request parsing + validation", ("webargs/",)),
    ("response dump + JSON", ("flask_smorest/response.py", "json/")),
)
OUR_PARTS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("idempotency key claim + record", ("loyalty/idempotency.py",)),
    ("authentication", ("loyalty/auth/",)),
    ("rate limiting (Redis)", ("loyalty/ratelimit.py",)),
    ("schemas (ours)", ("/schemas.py", "loyalty/fields.py")),
)
OTHER = "Flask, Werkzeug, test client"


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", default="earn,redeem,hot,balance")
    parser.add_argument("--requests", type=int, default=2000)
    return parser.parse_args(argv)


def classify(frames: list[str]) -> str:
    if any(marker in frame for frame in frames for marker in WAIT):
        return "waiting for PostgreSQL"
    for depth in range(len(frames) - 1, -1, -1):
        frame = frames[depth]
        for part, markers in LIBRARY_PARTS:
            if any(marker in frame for marker in markers):
                return part
        if any(marker in frame for marker in OURS):
            for part, markers in OUR_PARTS:
                if any(marker in frame for marker in markers):
                    return part
            below = frames[depth + 1 :]
            if any(marker in inner for inner in below for marker in SQL):
                return "business logic: SQL statements (SQLAlchemy + psycopg)"
            return "business logic: our Python"
    return OTHER


def summarise(folded: Path) -> tuple[Counter[str], int]:
    parts: Counter[str] = Counter()
    total = 0
    for line in folded.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        frames = stack.split(";")
        if not any("wsgi_app" in frame for frame in frames):
            continue  # seeding, start-up
        parts[classify(frames)] += int(count)
        total += int(count)
    return parts, total


def table(name: str, parts: Counter[str], total: int, cpu_ms: float) -> str:
    busy = total - parts.get("waiting for PostgreSQL", 0)
    lines = [
        f"### {name}: {cpu_ms:.2f} ms of Python CPU per request",
        "",
        "| part of the request | share of CPU | ms per request |",
        "| --- | ---: | ---: |",
    ]
    for part, samples in parts.most_common():
        if part == "waiting for PostgreSQL":
            continue
        share = samples / busy if busy else 0.0
        lines.append(f"| {part} | {share:.0%} | {share * cpu_ms:.2f} |")
    return "\n".join(lines)


def run_one(name: str, requests: int) -> str:
    py_spy = shutil.which("py-spy") or str(VENV_BIN / "py-spy")
    RESULTS.mkdir(parents=True, exist_ok=True)
    folded = RESULTS / f"flame_{name}.folded"
    command = [
        py_spy, "record", "--rate", "500", "--format", "raw", "--output", str(folded), "--",
        str(VENV_BIN / "python"), "-m", "bench.profile", "--sampling-only",
        "--only", name, "--requests", str(requests),
    ]  # fmt: skip
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise SystemExit(f"py-spy failed for {name}:\n{result.stderr[-2000:]}")
    row = next(line for line in result.stdout.splitlines() if line.startswith(f"| {name} |"))
    cpu_ms = float(row.split("|")[3])
    parts, total = summarise(folded)
    return table(name, parts, total, cpu_ms)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if not (shutil.which("py-spy") or (VENV_BIN / "py-spy").exists()):
        print("bench.flame needs py-spy: .venv/bin/pip install py-spy", file=sys.stderr)
        return 2
    for name in args.only.split(","):
        print(run_one(name, args.requests) + "\n", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
