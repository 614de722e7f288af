"""Configuration from environment variables, parsed strictly and validated at start-up.

Every setting has one environment variable. Unknown values are refused with a message that
names the variable, so a typo fails the start instead of silently changing behaviour.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from typing import Any

from loyalty.ledger.policy import ExpiryPolicy, ReturnPolicy


class ConfigError(ValueError):
    """A setting is missing or malformed; the message names the variable."""


DEFAULT_CURRENCIES = "EUR,USD,GBP,CHF,SEK,DKK,NOK,PLN,CZK,CNY,JPY,CAD,AUD"
EMBEDDED_SECRET = "embedded-default-not-secret"


@dataclass(frozen=True)
class Settings:
    database_url: str
    redis_url: str | None
    secret_key: str
    currencies: frozenset[str]
    points_expiry: ExpiryPolicy
    pending_days: int
    max_order_age_days: int  # how far in the past an order's occurred_at may lie
    return_policy: ReturnPolicy
    member_token_ttl_seconds: int
    member_qr_ttl_seconds: int
    hold_ttl_seconds: int
    idempotency_ttl_hours: int
    max_body_bytes: int
    log_level: str
    run_embedded_worker: bool

    @property
    def embedded(self) -> bool:
        """The newcomer's default: SQLite file and an in-process queue."""
        return self.database_url.startswith("sqlite") and self.redis_url is None


def _int(env: Mapping[str, str], name: str, default: int, minimum: int = 0) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    if not re.fullmatch(r"\d+", raw.strip()):
        raise ConfigError(f"{name} must be a whole number, got {raw!r}")
    value = int(raw)
    if value < minimum:
        raise ConfigError(f"{name} must be at least {minimum}, got {value}")
    return value


def _bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    lowered = raw.strip().lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off"}:
        return False
    raise ConfigError(f"{name} must be true or false, got {raw!r}")


def _currencies(raw: str) -> frozenset[str]:
    codes = [c.strip().upper() for c in raw.split(",") if c.strip()]
    bad = [c for c in codes if not re.fullmatch(r"[A-Z]{3}", c)]
    if bad or not codes:
        raise ConfigError(f"OMNILOYAL_CURRENCIES must list ISO 4217 codes, got {raw!r}")
    return frozenset(codes)


def load_settings(
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
    instance_path: str = "instance",
) -> Settings:
    env = os.environ if env is None else env
    database_url = env.get("DATABASE_URL") or f"sqlite:///{instance_path}/omniloyal.db"
    if database_url.startswith("postgresql://"):
        # psycopg 3 is the driver we ship; accept the common URL spelling.
        database_url = "postgresql+psycopg://" + database_url.removeprefix("postgresql://")
    if not database_url.startswith(("sqlite", "postgresql+psycopg://")):
        raise ConfigError(
            "DATABASE_URL must be a sqlite:/// or postgresql:// URL, got "
            f"{database_url.split('://')[0]}://..."
        )
    redis_url = env.get("REDIS_URL") or None
    if redis_url is not None and not redis_url.startswith(("redis://", "rediss://", "unix://")):
        raise ConfigError("REDIS_URL must start with redis://, rediss:// or unix://")
    settings = Settings(
        database_url=database_url,
        redis_url=redis_url,
        secret_key=env.get("SECRET_KEY") or "",
        currencies=_currencies(env.get("OMNILOYAL_CURRENCIES", DEFAULT_CURRENCIES)),
        points_expiry=ExpiryPolicy.parse(env.get("OMNILOYAL_POINTS_EXPIRY", "months:24:end")),
        pending_days=_int(env, "OMNILOYAL_PENDING_DAYS", 0),
        max_order_age_days=_int(env, "OMNILOYAL_MAX_ORDER_AGE_DAYS", 30, minimum=1),
        return_policy=ReturnPolicy.parse(env.get("OMNILOYAL_RETURN_POLICY", "cap-at-zero")),
        member_token_ttl_seconds=_int(env, "OMNILOYAL_MEMBER_TOKEN_TTL", 900, minimum=30),
        member_qr_ttl_seconds=_int(env, "OMNILOYAL_MEMBER_QR_TTL", 120, minimum=10),
        hold_ttl_seconds=_int(env, "OMNILOYAL_HOLD_TTL", 900, minimum=10),
        idempotency_ttl_hours=_int(env, "OMNILOYAL_IDEMPOTENCY_TTL_HOURS", 48, minimum=24),
        max_body_bytes=_int(env, "OMNILOYAL_MAX_BODY_BYTES", 1_000_000, minimum=1024),
        log_level=env.get("LOG_LEVEL", "INFO").upper(),
        run_embedded_worker=_bool(env, "OMNILOYAL_EMBEDDED_WORKER", True),
    )
    if overrides:
        known = {f.name for f in fields(Settings)}
        unknown = set(overrides) - known
        if unknown:
            raise ConfigError(f"unknown setting override(s): {', '.join(sorted(unknown))}")
        settings = replace(settings, **overrides)
    return _validated(settings)


def _validated(settings: Settings) -> Settings:
    if settings.log_level not in {"DEBUG", "INFO", "WARNING", "ERROR"}:
        raise ConfigError(f"LOG_LEVEL must be DEBUG, INFO, WARNING or ERROR: {settings.log_level}")
    if not settings.secret_key:
        if not settings.embedded:
            raise ConfigError(
                "SECRET_KEY is required when DATABASE_URL or REDIS_URL point at real servers; "
                'generate one with: python -c "import secrets; print(secrets.token_urlsafe(48))"'
            )
        settings = replace(settings, secret_key=EMBEDDED_SECRET)
    elif len(settings.secret_key) < 32 and not settings.embedded:
        raise ConfigError("SECRET_KEY must be at least 32 characters")
    return settings
