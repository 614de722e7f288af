"""The curl examples of the README and the guides run as written against a fresh `make run`.

A server is started the way `make run` starts it (`omniloyal db upgrade`, `omniloyal demo
--if-empty`, `omniloyal run`), on a fresh instance folder, and each document's fenced `sh`
blocks that call the API (those naming `$API`) run in order in one bash, from a folder whose
`instance/` is the server's, as a reader pastes them into a second terminal in the clone.
Two things differ from a reader's terminal: the port (a free one instead of 5000, replaced
in the text) and a demo of 150 members instead of 2,000 (faster; the demo member, codes and
rewards the examples use are the same). Any HTTP error fails the run: `curl` is wrapped to
fail on a 4xx or 5xx (`--fail-with-body`), under `set -euo pipefail`.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCUMENTS = ["README.md", "docs/guides/member-app.md", "docs/guides/pos.md"]
PRELUDE = 'set -euo pipefail\ncurl() { command curl --fail-with-body "$@"; }\n'


def shell_blocks(document: str) -> list[str]:
    """The fenced `sh` blocks of a document that call the API or set up the calls (they
    name `$API` or set `API=`); not `make run` or the production commands."""
    text = (ROOT / document).read_text(encoding="utf-8")
    blocks = re.findall(r"```sh\n(.*?)```", text, re.S)
    return [block for block in blocks if re.search(r"^API=|\$API", block, re.M)]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, int]]:
    """A fresh `make run`: (the folder to run the examples from, the port)."""
    clone = tmp_path_factory.mktemp("clone")
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in {"DATABASE_URL", "REDIS_URL", "SECRET_KEY"}
        and not key.startswith(("OMNILOYAL_", "FLASK_"))
    }
    env["OMNILOYAL_INSTANCE_PATH"] = str(clone / "instance")
    omniloyal = [sys.executable, "-c", "from loyalty.cli import main; main()"]
    for step in (["db", "upgrade"], ["demo", "--if-empty", "--members", "150"]):
        done = subprocess.run(
            [*omniloyal, *step], env=env, capture_output=True, text=True, timeout=300
        )
        assert done.returncode == 0, done.stdout + done.stderr
    port = _free_port()
    log = open(clone / "server.log", "w")  # noqa: SIM115 (closed when the server is)
    server = subprocess.Popen(
        [*omniloyal, "run", "--log-format", "console", "--port", str(port)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            assert server.poll() is None, "omniloyal run stopped"
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1):
                    break
            except OSError:
                assert time.monotonic() < deadline, "the server did not start"
                time.sleep(0.2)
        yield clone, port
    finally:
        server.terminate()
        server.wait(timeout=10)
        log.close()


@pytest.mark.parametrize("document", DOCUMENTS)
def test_the_curl_examples_run_as_written(served, document):
    clone, port = served
    blocks = shell_blocks(document)
    assert blocks, f"{document} has no curl example"
    script = PRELUDE + "\n".join(blocks).replace(
        "http://localhost:5000", f"http://127.0.0.1:{port}"
    )
    done = subprocess.run(
        ["bash", "-c", script], cwd=clone, capture_output=True, text=True, timeout=180
    )
    server_log = (clone / "server.log").read_text()[-3000:]
    assert done.returncode == 0, (
        f"{document}:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}\nserver:\n{server_log}"
    )
    assert "uuidgen" not in script  # not on every machine (this one lacks it)


def test_the_readme_and_the_home_page_link_the_guides(client):
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    home = client.get("/").get_data(as_text=True)
    for guide in ("docs/guides/member-app.md", "docs/guides/pos.md"):
        assert f"({guide})" in readme
        assert guide.rsplit("/", 1)[1] in home
