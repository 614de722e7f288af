"""Notification tests run with no quiet hours and no cap unless a test sets them: the
suite's clock is the real one, and a test must not depend on the hour it runs at."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace

import pytest
from flask import Flask


@pytest.fixture(autouse=True)
def _neutral_policies(app: Flask) -> Iterator[None]:
    settings = app.extensions["omniloyal.settings"]
    app.extensions["omniloyal.settings"] = replace(
        settings, notify_quiet_hours=None, notify_marketing_cap=None, notify_rate_limits={}
    )
    app.extensions.pop("omniloyal.notify.providers", None)
    yield
    app.extensions["omniloyal.settings"] = settings
    app.extensions.pop("omniloyal.notify.providers", None)
