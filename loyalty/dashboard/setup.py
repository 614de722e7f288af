"""Wire the dashboard into the app: sign-in, CSRF, locale, pages, metrics, audit hooks."""

from __future__ import annotations

import importlib
import os

from flask import Flask, request
from flask_babel import Babel
from flask_login import current_user

from loyalty.config import Settings

TRANSLATIONS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "translations")


def _locale() -> str:
    if current_user and current_user.is_authenticated:
        return current_user.locale
    best = request.accept_languages.best_match(["en", "zh-CN", "zh"]) if request else None
    return "zh_CN" if best in ("zh-CN", "zh") else "en"


def init_dashboard(app: Flask, settings: Settings) -> None:
    from loyalty.dashboard import api_audit, snapshots  # noqa: F401  (register hooks)
    from loyalty.dashboard.access import init_access
    from loyalty.dashboard.blueprint import bp
    from loyalty.dashboard.metrics import init_metrics
    from loyalty.dashboard.pages import PAGE_MODULES

    for module in PAGE_MODULES:  # importing a page module adds its routes
        importlib.import_module(f"loyalty.dashboard.pages.{module}")

    init_access(app, settings)
    app.config["BABEL_TRANSLATION_DIRECTORIES"] = TRANSLATIONS
    Babel(app, locale_selector=_locale)
    app.register_blueprint(bp)
    init_metrics(app)
