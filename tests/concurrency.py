"""Running the same work in many threads at once, each with its own app context and session."""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from flask import Flask

from loyalty.db import db

T = TypeVar("T")


def in_threads(app: Flask, count: int, work: Callable[[int], T]) -> list[T]:
    """Run work(0..count-1) in `count` threads released together by a barrier.

    Pass ids into `work`, never ORM objects: each thread has its own session.
    """
    barrier = threading.Barrier(count)

    def run(i: int) -> T:
        with app.app_context():
            barrier.wait()
            try:
                return work(i)
            finally:
                db.session.remove()

    with ThreadPoolExecutor(max_workers=count) as pool:
        return list(pool.map(run, range(count)))
