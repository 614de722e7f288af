"""Prometheus metrics at /metrics (prometheus-client), behind a bearer token.

- HTTP requests of this process: `omniloyal_http_requests_total{method,endpoint,status}`
  and `omniloyal_http_request_duration_seconds{method,endpoint}` (endpoint names, not
  paths, so the label set stays small).
- Read at scrape time, each from one Redis call or one small indexed read: jobs queued and
  failed per RQ queue, the scheduler's tick age, the outbox backlog, and the ledger and
  sends as counted by the dashboard's refresh job (points issued / redeemed / expired /
  adjusted, messages per channel and final state, the outstanding liability).

OMNILOYAL_METRICS_TOKEN unset: /metrics answers 404 (nothing is exposed by default).
"""

from __future__ import annotations

import hmac
import time
from collections.abc import Iterator
from typing import Any

from flask import Blueprint, Flask, Response, abort, current_app, g, request
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

blp = Blueprint("metrics", __name__)


class StateCollector(Collector):
    """Figures read when Prometheus scrapes (inside the request's app context)."""

    def collect(self) -> Iterator[Any]:
        from rq import Queue

        from loyalty.clock import utcnow
        from loyalty.dashboard import stats
        from loyalty.outbox.admin import backlog
        from loyalty.queue import QUEUES, get_redis
        from loyalty.scheduler import last_tick

        connection = get_redis()
        jobs = GaugeMetricFamily(
            "omniloyal_jobs", "RQ jobs by queue and state", labels=["queue", "state"]
        )
        for name in QUEUES:
            queue = Queue(name, connection=connection)
            jobs.add_metric([name, "queued"], queue.count)
            jobs.add_metric([name, "failed"], queue.failed_job_registry.count)
        yield jobs
        tick = last_tick(connection)
        age = GaugeMetricFamily(
            "omniloyal_scheduler_tick_age_seconds", "Seconds since the scheduler's last tick"
        )
        age.add_metric([], float("nan") if tick is None else time.time() - tick)
        yield age
        outbox = backlog(utcnow())
        dead = outbox["dead_letters"]["count"]
        undispatched = outbox["undispatched_events"]["count"]
        yield GaugeMetricFamily(
            "omniloyal_outbox_dead_letters", "Dead outbox deliveries (1000 = 1000 or more)",
            value=_bounded(dead),
        )  # fmt: skip
        yield GaugeMetricFamily(
            "omniloyal_outbox_undispatched_events", "Outbox events not yet dispatched",
            value=_bounded(undispatched),
        )  # fmt: skip
        points = CounterMetricFamily(
            "omniloyal_ledger_points", "Points moved, as counted by the refresh job",
            labels=["movement"],
        )  # fmt: skip
        for metric, total in stats.totals("points.").items():
            points.add_metric([metric.removeprefix("points.")], total)
        yield points
        sends = CounterMetricFamily(
            "omniloyal_messages", "Messages by channel and final state (counted a day after "
            "creation)", labels=["channel", "state"],
        )  # fmt: skip
        for metric, total in stats.totals("messages.").items():
            _prefix, channel, state = metric.split(".", 2)
            sends.add_metric([channel, state], total)
        yield sends
        snapshot = stats.latest_snapshot()
        if snapshot is not None:
            yield GaugeMetricFamily(
                "omniloyal_points_liability", "Outstanding points (latest refresh)",
                value=snapshot.figures.get("liability_points", 0),
            )  # fmt: skip


def _bounded(value: Any) -> float:
    return float(str(value).rstrip("+"))


def init_metrics(app: Flask) -> None:
    registry = CollectorRegistry()
    requests = Counter(
        "omniloyal_http_requests", "HTTP requests", ["method", "endpoint", "status"],
        registry=registry,
    )  # fmt: skip
    duration = Histogram(
        "omniloyal_http_request_duration_seconds", "HTTP request duration",
        ["method", "endpoint"], registry=registry,
        buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
    )  # fmt: skip
    registry.register(StateCollector())
    app.extensions["omniloyal.metrics"] = registry

    @app.after_request
    def count(response: Response) -> Response:
        endpoint = request.endpoint or "unmatched"
        requests.labels(request.method, endpoint, str(response.status_code)).inc()
        started = g.get("started")
        if started is not None:
            duration.labels(request.method, endpoint).observe(time.perf_counter() - started)
        return response

    app.register_blueprint(blp)


@blp.get("/metrics")
def metrics() -> Response:
    token = current_app.extensions["omniloyal.settings"].metrics_token
    if token is None:
        abort(404)
    sent = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
    if not hmac.compare_digest(sent.encode(), token.encode()):
        return Response("metrics need 'Authorization: Bearer <OMNILOYAL_METRICS_TOKEN>'\n",
                        status=401, headers={"WWW-Authenticate": "Bearer"})  # fmt: skip
    registry = current_app.extensions["omniloyal.metrics"]
    return Response(generate_latest(registry), mimetype=CONTENT_TYPE_LATEST)
