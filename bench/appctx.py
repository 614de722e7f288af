"""One in-process app on the benchmark database, for seeding and for capturing SQL.

It reads the same environment (DATABASE_URL, REDIS_URL, SECRET_KEY) as the gunicorn
workers, so tokens it mints are accepted by them.
"""

from __future__ import annotations

from functools import cache

from flask import Flask


@cache
def bench_app() -> Flask:
    from loyalty.app import create_app

    return create_app({"run_embedded_worker": False})
