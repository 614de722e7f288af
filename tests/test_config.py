"""Configuration is parsed strictly at start-up, with messages that name the variable."""

from __future__ import annotations

import pytest

from loyalty.app import create_app
from loyalty.config import EMBEDDED_SECRET, ConfigError, load_settings
from loyalty.ledger.policy import ReturnPolicy


def test_the_embedded_default_needs_no_configuration():
    settings = load_settings({}, instance_path="/tmp/omniloyal-instance")
    assert settings.embedded
    assert settings.database_url == "sqlite:////tmp/omniloyal-instance/omniloyal.db"
    assert settings.redis_url is None
    assert settings.secret_key == EMBEDDED_SECRET


def test_real_servers_require_a_secret_key():
    with pytest.raises(ConfigError, match="SECRET_KEY is required"):
        load_settings({"DATABASE_URL": "postgresql://db/omniloyal"})
    with pytest.raises(ConfigError, match="at least 32"):
        load_settings({"DATABASE_URL": "postgresql://db/x", "SECRET_KEY": "short"})


def test_postgres_urls_use_the_psycopg_driver():
    settings = load_settings({"DATABASE_URL": "postgresql://db/x", "SECRET_KEY": "k" * 32})
    assert settings.database_url == "postgresql+psycopg://db/x"


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("DATABASE_URL", "mysql://db/x", "DATABASE_URL"),
        ("REDIS_URL", "localhost:6379", "REDIS_URL"),
        ("OMNILOYAL_PENDING_DAYS", "ten", "OMNILOYAL_PENDING_DAYS"),
        ("OMNILOYAL_PENDING_DAYS", "-1", "OMNILOYAL_PENDING_DAYS"),
        ("OMNILOYAL_RETURN_POLICY", "maybe", "OMNILOYAL_RETURN_POLICY"),
        ("OMNILOYAL_POINTS_EXPIRY", "soon", "OMNILOYAL_POINTS_EXPIRY"),
        ("OMNILOYAL_CURRENCIES", "euro", "OMNILOYAL_CURRENCIES"),
        ("OMNILOYAL_EMBEDDED_WORKER", "sometimes", "OMNILOYAL_EMBEDDED_WORKER"),
        ("LOG_LEVEL", "LOUD", "LOG_LEVEL"),
    ],
)
def test_malformed_values_fail_the_start_naming_the_variable(variable, value, message):
    with pytest.raises(ConfigError, match=message):
        load_settings({variable: value})


def test_policies_parse_to_their_types():
    settings = load_settings(
        {"OMNILOYAL_RETURN_POLICY": "Claw-Back", "OMNILOYAL_POINTS_EXPIRY": "months:12:end"}
    )
    assert settings.return_policy is ReturnPolicy.CLAW_BACK
    assert str(settings.points_expiry) == "months:12:end"


def test_unknown_overrides_are_refused():
    with pytest.raises(ConfigError, match="unknown setting"):
        load_settings({}, overrides={"databse_url": "sqlite://"})


def test_readiness_reports_an_unreachable_redis(tmp_path):
    app = create_app(
        {
            "database_url": f"sqlite:///{tmp_path / 'r.db'}",
            "redis_url": "redis://127.0.0.1:1/0",
            "secret_key": "s" * 40,
        }
    )
    response = app.test_client().get("/readyz")
    assert response.status_code == 503
    assert response.json["checks"]["redis"].startswith("error")
    assert response.json["checks"]["database"] == "ok"


def test_readiness_names_the_in_process_queue_embedded_not_ok(tmp_path):
    app = create_app({"database_url": f"sqlite:///{tmp_path / 'r.db'}", "redis_url": None})
    response = app.test_client().get("/readyz")
    assert response.status_code == 200
    assert response.json["status"] == "ready"
    assert response.json["checks"] == {"database": "ok", "redis": "embedded"}
