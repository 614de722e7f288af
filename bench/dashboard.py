"""Dashboard page times on the demo data, beside a raw baseline measured in the same run.

    OMNILOYAL_INSTANCE_PATH=instance python -m bench.dashboard   # after `make run` seeded it

Signs in as the demo admin with Flask's test client (no network), requests each main
page 20 times after one warm-up, and prints the median and the slowest beside the
baseline: the same client fetching /healthz (the app's cheapest route: routing, request
hooks, one SELECT 1). The ratio says what a page costs over a request that does nothing.
"""

from __future__ import annotations

import argparse
import logging
import re
import statistics
import time

from loyalty.app import create_app
from loyalty.config import SecretSource
from loyalty.dashboard.demo import demo_login
from loyalty.db import db

PAGES = (
    "/dashboard/",
    "/dashboard/members?q=1&go=0",
    "/dashboard/members/1",
    "/dashboard/segments",
    "/dashboard/segments/new",
    "/dashboard/offers",
    "/dashboard/offers/1",
    "/dashboard/settings",
    "/dashboard/audit",
    "/dashboard/operations",
)


def _times(client, path: str, runs: int) -> list[float]:  # type: ignore[no-untyped-def]
    client.get(path)
    found = []
    for _ in range(runs):
        started = time.perf_counter()
        response = client.get(path)
        found.append((time.perf_counter() - started) * 1000)
        assert response.status_code == 200, (path, response.status_code)
    return found


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    app = create_app({"run_embedded_worker": False}, secret_source=SecretSource.INSTANCE)
    logging.getLogger("omniloyal.access").setLevel(logging.WARNING)  # one line per request
    client = app.test_client()
    with app.app_context():
        email, password = demo_login("admin")
        page = client.get("/dashboard/login").get_data(as_text=True)
        token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)  # type: ignore[union-attr]
        signed = client.post(
            "/dashboard/login", data={"email": email, "password": password, "csrf_token": token}
        )
        assert signed.status_code == 302, "run `make run` (or `omniloyal demo`) first"
        db.session.remove()
    baseline = statistics.median(_times(client, "/healthz", args.runs))
    print(f"{'page':<32} {'median ms':>10} {'max ms':>8} {'baseline ms':>12} {'ratio':>6}")
    for path in PAGES:
        found = _times(client, path, args.runs)
        median = statistics.median(found)
        print(
            f"{path:<32} {median:>10.1f} {max(found):>8.1f} {baseline:>12.2f} "
            f"{median / baseline:>6.1f}"
        )


if __name__ == "__main__":
    main()
