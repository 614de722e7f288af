"""An open-loop load generator: requests at a fixed arrival rate, latency as a till feels it.

Closed-loop clients (wrk) send the next request only after the last answer, so when the
service slows down they slow down with it and the queue they would have built never shows
in their latencies (coordinated omission). Here request i is due at start + i / rate
whatever happened before; its latency runs from when it was due to when its answer
arrived, so waiting for a free connection or a busy worker counts, as it does for a till.
wrk2 does the same in C; it is not packaged for Debian, and at the rates measured here
(half the service's saturation throughput, a few hundred per second) asyncio keeps up:
each run reports how late the generator itself sent (its own lag), so a generator that
fell behind shows.
"""

from __future__ import annotations

import asyncio
import gc
import multiprocessing
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection
from urllib.parse import urlsplit

from bench.environment import BenchError
from bench.load import Measurement, _percentile

# request bytes for the i-th request (a complete HTTP/1.1 request)
RequestFactory = Callable[[int], bytes]


def http_request(method: str, path: str, headers: dict[str, str], body: bytes = b"") -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: bench"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    if body or method != "GET":
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


@dataclass
class _Result:
    latencies_us: list[int]
    statuses: dict[int, int]
    lags_us: list[int]
    error_sample: str = ""


class _Connections:
    """Idle keep-alive connections; a new one when none is idle (sync workers close them)."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []

    async def take(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        if self.idle:
            return self.idle.pop()
        return await asyncio.open_connection(self.host, self.port)

    def give_back(self, pair: tuple[asyncio.StreamReader, asyncio.StreamWriter]) -> None:
        self.idle.append(pair)

    def close(self) -> None:
        for _, writer in self.idle:
            writer.close()


async def _exchange(connections: _Connections, request: bytes) -> int:
    """Send one request, read its answer; returns the status."""
    reader, writer = await connections.take()
    writer.write(request)
    await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    length = 0
    keep_alive = True
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            length = int(value)
        elif name == b"connection" and value.strip().lower() == b"close":
            keep_alive = False
    if length:
        await reader.readexactly(length)
    if keep_alive:
        connections.give_back((reader, writer))
    else:
        writer.close()
    return status


def _generate(
    results: Connection,
    base_url: str,
    factory: RequestFactory,
    rate: float,
    duration: float,
    in_flight: int,
) -> None:
    """The forked generator: the bench's heap it inherited stays out of its collector's view
    (frozen), and nothing else runs in this process."""
    gc.freeze()
    results.send(asyncio.run(_run(base_url, factory, rate, duration, in_flight)))
    results.close()


async def _run(
    base_url: str, factory: RequestFactory, rate: float, duration: float, in_flight: int
) -> tuple[_Result, float]:
    url = urlsplit(base_url)
    connections = _Connections(url.hostname or "127.0.0.1", url.port or 80)
    result = _Result([], {}, [])
    limit = asyncio.Semaphore(in_flight)
    total = int(rate * duration)
    loop = asyncio.get_running_loop()
    start = loop.time() + 0.1
    tasks = []

    async def one(index: int, due: float) -> None:
        async with limit:
            result.lags_us.append(int((loop.time() - due) * 1e6))
            try:
                status = await _exchange(connections, factory(index))
            except (OSError, asyncio.IncompleteReadError, ValueError) as error:
                status = 0
                result.error_sample = result.error_sample or repr(error)[:300]
        result.latencies_us.append(int((loop.time() - due) * 1e6))
        result.statuses[status] = result.statuses.get(status, 0) + 1

    for index in range(total):
        due = start + index / rate
        delay = due - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(index, due)))
    await asyncio.gather(*tasks)
    elapsed = loop.time() - start
    connections.close()
    return result, elapsed


def run_open_loop(
    base_url: str,
    factory: RequestFactory,
    *,
    rate: float,
    duration: float,
    in_flight: int = 256,
) -> tuple[Measurement, float]:
    """Run at `rate` requests/s for `duration` s; (measurement, the generator's p99 lag in
    ms: how late it sent, which should stay far below the service's latencies).

    The generator runs in a process of its own, forked from the bench: in the bench's own
    process the CPU sampler's thread took the GIL every 2 s and a full collection of the
    app it seeded with stalled it for 100+ ms, and any stall of the generator counts as
    the service's latency."""
    forking = multiprocessing.get_context("fork")
    receiving, sending = forking.Pipe(duplex=False)
    child = forking.Process(
        target=_generate, args=(sending, base_url, factory, rate, duration, in_flight)
    )
    child.start()
    sending.close()
    try:
        result, elapsed = receiving.recv()
    except EOFError:
        raise BenchError(f"the open-loop generator died (exit code {child.exitcode})") from None
    finally:
        child.join()
    latencies = sorted(result.latencies_us)
    lags = sorted(result.lags_us)
    errors = sum(count for status, count in result.statuses.items() if not 200 <= status < 300)
    sample = result.error_sample or (
        f"statuses {dict(sorted(result.statuses.items()))}" if errors else ""
    )
    measurement = Measurement(
        rps=len(latencies) / max(elapsed, 1e-9),
        p50_ms=_percentile(latencies, 50) / 1000,
        p99_ms=_percentile(latencies, 99) / 1000,
        completed=len(latencies),
        errors=errors,
        error_sample=sample,
    )
    return measurement, _percentile(lags, 99) / 1000
