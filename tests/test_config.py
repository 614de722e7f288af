"""Configuration is parsed strictly at start-up, with messages that name the variable."""

from __future__ import annotations

import os
import stat

import click
import pytest

from loyalty import cli
from loyalty.app import create_app
from loyalty.auth.tokens import mint_member_token
from loyalty.clock import utcnow
from loyalty.config import ConfigError, SecretSource, load_settings
from loyalty.ledger.policy import ReturnPolicy


def test_the_embedded_default_needs_no_configuration_but_its_own_random_key(tmp_path):
    """`omniloyal run` on the embedded default makes up a key per instance, kept 0600."""
    settings = load_settings({}, instance_path=str(tmp_path), secret_source=SecretSource.INSTANCE)
    assert settings.embedded
    assert settings.database_url == f"sqlite:///{tmp_path}/omniloyal.db"
    assert settings.redis_url is None
    key_file = tmp_path / "secret_key"
    assert stat.S_IMODE(os.stat(key_file).st_mode) == 0o600
    assert settings.secret_key == key_file.read_text().strip() and len(settings.secret_key) >= 48
    again = load_settings({}, instance_path=str(tmp_path), secret_source=SecretSource.INSTANCE)
    assert again.secret_key == settings.secret_key  # tokens survive a restart
    other = load_settings(
        {}, instance_path=str(tmp_path / "other"), secret_source=SecretSource.INSTANCE
    )
    assert other.secret_key != settings.secret_key  # no shared, public key


def test_without_secret_key_the_embedded_default_refuses_to_start(tmp_path, monkeypatch):
    """`gunicorn wsgi:app` on a SQLite file used to sign member tokens with a public
    constant: anyone could forge a token for any member. Now it refuses to start."""
    monkeypatch.delenv("SECRET_KEY", raising=False)
    monkeypatch.setenv("OMNILOYAL_INSTANCE_PATH", str(tmp_path))
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'shop.db'}")
    with pytest.raises(ConfigError, match="SECRET_KEY is required"):
        create_app()
    with pytest.raises(ConfigError, match="SECRET_KEY is required"):
        load_settings({}, instance_path=str(tmp_path))
    # Only `omniloyal run` may make up a key, and only on the embedded default.
    with pytest.raises(ConfigError, match="SECRET_KEY is required"):
        load_settings(
            {"REDIS_URL": "redis://r:6379/0"},
            instance_path=str(tmp_path),
            secret_source=SecretSource.INSTANCE,
        )
    assert not (tmp_path / "secret_key").exists()


def test_only_omniloyal_run_generates_a_key_maintenance_commands_never_sign(tmp_path, monkeypatch):
    monkeypatch.delenv("SECRET_KEY", raising=False)
    monkeypatch.setenv("OMNILOYAL_INSTANCE_PATH", str(tmp_path))

    def app_for(command: click.Command):  # the app `omniloyal <command>` would build
        with click.Context(command, info_name=command.name):
            return cli._create_app()

    maintenance = app_for(cli.demo_command)  # e.g. `make run`'s first steps, before `run`
    assert maintenance.config["SECRET_KEY"] == "" and not (tmp_path / "secret_key").exists()
    with maintenance.app_context(), pytest.raises(ConfigError, match="SECRET_KEY"):
        mint_member_token(1, issued_by_client=1, epoch=0, now=utcnow())
    with pytest.raises(ConfigError, match="SECRET_KEY is required"):
        app_for(cli.worker_command)
    served = app_for(cli.run_command)
    assert served.config["SECRET_KEY"] == (tmp_path / "secret_key").read_text().strip()
    assert app_for(cli.demo_command).config["SECRET_KEY"] == served.config["SECRET_KEY"]


def test_real_servers_require_a_long_secret_key():
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
        ("OMNILOYAL_MAX_ORDER_AGE_DAYS", "30d", "OMNILOYAL_MAX_ORDER_AGE_DAYS"),
        ("OMNILOYAL_MAX_ORDER_AGE_DAYS", "0", "OMNILOYAL_MAX_ORDER_AGE_DAYS"),
        ("OMNILOYAL_RETURN_POLICY", "maybe", "OMNILOYAL_RETURN_POLICY"),
        ("OMNILOYAL_POINTS_EXPIRY", "soon", "OMNILOYAL_POINTS_EXPIRY"),
        ("OMNILOYAL_CURRENCIES", "euro", "OMNILOYAL_CURRENCIES"),
        ("OMNILOYAL_EMBEDDED_WORKER", "sometimes", "OMNILOYAL_EMBEDDED_WORKER"),
        ("LOG_LEVEL", "LOUD", "LOG_LEVEL"),
        ("OMNILOYAL_RATE_LIMIT_PER_IP", "fast", "OMNILOYAL_RATE_LIMIT_PER_IP"),
        ("OMNILOYAL_RATE_LIMIT_PER_CALLER", "100/fortnight", "OMNILOYAL_RATE_LIMIT_PER_CALLER"),
        ("OMNILOYAL_RATE_LIMIT_MEMBER_TOKENS", "0/second", "OMNILOYAL_RATE_LIMIT_MEMBER_TOKENS"),
        ("OMNILOYAL_RATE_LIMIT_IDENTIFY", "10", "OMNILOYAL_RATE_LIMIT_IDENTIFY"),
        ("OMNILOYAL_PROXY_HOPS", "one", "OMNILOYAL_PROXY_HOPS"),
    ],
)
def test_malformed_values_fail_the_start_naming_the_variable(variable, value, message):
    with pytest.raises(ConfigError, match=message):
        load_settings({variable: value})


def test_policies_parse_to_their_types():
    settings = load_settings(
        {
            "OMNILOYAL_RETURN_POLICY": "Claw-Back",
            "OMNILOYAL_POINTS_EXPIRY": "months:12:end",
            "SECRET_KEY": "k" * 32,
        }
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


def test_rate_limits_have_defaults_and_can_be_set_or_switched_off():
    defaults = load_settings({"SECRET_KEY": "k" * 40})
    assert defaults.rate_limit_per_ip == "200/second"
    assert defaults.rate_limit_identify == "10/second;5000/hour"
    settings = load_settings(
        {"OMNILOYAL_RATE_LIMIT_PER_CALLER": " 50/second; 1000/minute ",
         "OMNILOYAL_RATE_LIMIT_PER_IP": "OFF", "SECRET_KEY": "k" * 40}
    )  # fmt: skip
    assert settings.rate_limit_per_caller == "50/second; 1000/minute"
    assert settings.rate_limit_per_ip is None
    with pytest.raises(ConfigError, match="rate_limit_identify"):
        load_settings({"SECRET_KEY": "k" * 40}, overrides={"rate_limit_identify": "lots"})


def test_readiness_names_the_in_process_queue_embedded_not_ok(tmp_path):
    app = create_app(
        {
            "database_url": f"sqlite:///{tmp_path / 'r.db'}",
            "redis_url": None,
            "secret_key": "k" * 40,
        }
    )
    response = app.test_client().get("/readyz")
    assert response.status_code == 200
    assert response.json["status"] == "ready"
    assert response.json["checks"] == {"database": "ok", "redis": "embedded"}
