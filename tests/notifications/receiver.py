"""A local HTTP receiver for webhook tests: answers each POST with the next scripted status
and keeps what it received (headers and raw body)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    url: str
    statuses: list[int]  # answers in order; the last one repeats
    received: list[Received] = field(default_factory=list)
    on_request: Callable[[], None] | None = None  # runs in the server thread on each POST


@contextmanager
def receiver(*statuses: int, path: str = "/hooks/omniloyal") -> Iterator[Receiver]:
    state = Receiver(url="", statuses=list(statuses or (200,)))

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            if state.on_request is not None:
                state.on_request()
            state.received.append(Received(self.path, dict(self.headers.items()), body))
            index = min(len(state.received), len(state.statuses)) - 1
            status = state.statuses[index]
            answer = f"answer {len(state.received)}: {status}".encode()
            self.send_response(status)
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, *_: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.url = f"http://127.0.0.1:{server.server_address[1]}{path}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
