"""Instructions per request: a figure that doesn't drift with the machine's load.

    .venv/bin/python -m bench.instructions                      # earn, redeem, hot, balance
    .venv/bin/python -m bench.instructions --only redeem --requests 300

Runs `bench.profile --callgrind` under valgrind's callgrind, which counts the user-space
instructions the service's process executes for the measured requests only (start-up,
seeding and the warm-up run uncounted). Callgrind counts instructions, not seconds, so the
same code gives the same count twice, whatever else the shared machine is doing: use it to
compare a change with its base, where timings on these machines drift by up to 1.5x in an
hour. It leaves out the kernel (sockets, the system calls of each round trip) and the
database, which `make bench` measures; a request runs about 50x slower under it.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from bench.database import REPO, VENV_BIN
from bench.profile import SCENARIOS


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", default=",".join(SCENARIOS))
    parser.add_argument("--requests", type=int, default=200, help="counted, per scenario")
    parser.add_argument("--members", type=int, default=50)
    return parser.parse_args(argv)


def count(name: str, requests: int, members: int) -> int:
    """Instructions per request of one scenario (one valgrind run)."""
    with tempfile.TemporaryDirectory(prefix="bench-callgrind-") as scratch:
        out = Path(scratch) / "callgrind.out"
        command = [
            "valgrind", "--tool=callgrind", "--instr-atstart=no",
            f"--callgrind-out-file={out}",
            str(VENV_BIN / "python"), "-m", "bench.profile", "--callgrind",
            "--only", name, "--requests", str(requests), "--members", str(members),
        ]  # fmt: skip
        result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, check=False)
        if result.returncode != 0 or not out.exists():
            raise SystemExit(f"callgrind failed for {name}:\n{result.stderr[-2000:]}")
        totals = re.search(r"^totals: (\d+)", out.read_text(), re.MULTILINE)
        if totals is None:
            raise SystemExit(f"no totals in callgrind's output for {name}")
        return int(totals.group(1)) // requests


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if not (shutil.which("valgrind") and shutil.which("callgrind_control")):
        print("bench.instructions needs valgrind: apt-get install valgrind", file=sys.stderr)
        return 2
    print("| scenario | requests counted | instructions per request (millions) |")
    print("| --- | ---: | ---: |")
    for name in args.only.split(","):
        per_request = count(name, args.requests, args.members)
        print(f"| {name} | {args.requests} | {per_request / 1e6:.2f} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
