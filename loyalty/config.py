"""Configuration from environment variables, parsed strictly and validated at start-up.

Every setting has one environment variable. Unknown values are refused with a message that
names the variable, so a typo fails the start instead of silently changing behaviour.
"""

from __future__ import annotations

import contextlib
import enum
import os
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from typing import Any

from loyalty.ledger.policy import ExpiryPolicy, ReturnPolicy


class ConfigError(ValueError):
    """A setting is missing or malformed; the message names the variable."""


DEFAULT_CURRENCIES = "EUR,USD,GBP,CHF,SEK,DKK,NOK,PLN,CZK,CNY,JPY,CAD,AUD"
INSTANCE_SECRET_FILE = "secret_key"  # in the instance folder, mode 0600
MIN_SECRET_LENGTH = 32
SECRET_KEY_HINT = 'Generate one with: python -c "import secrets; print(secrets.token_urlsafe(48))"'


class SecretSource(enum.StrEnum):
    """Where the key that signs member tokens may come from when SECRET_KEY is unset.

    A public or guessable key would let anyone forge a member token, so only the local,
    embedded `omniloyal run` may make one up, and it makes a random one per instance.
    """

    REQUIRED = "required"  # servers (wsgi, create_app) and workers: refuse to start
    INSTANCE = "instance"  # `omniloyal run` on the embedded default: the instance's own key
    UNUSED = "unused"  # CLI maintenance commands (db, demo, import): they never sign;
    # they use the instance's key if `omniloyal run` made one, else none (signing refuses)


RATE_LIMIT_SETTINGS = (
    "rate_limit_per_ip",
    "rate_limit_per_caller",
    "rate_limit_member_tokens",
    "rate_limit_identify",
)


@dataclass(frozen=True)
class Settings:
    database_url: str
    redis_url: str | None
    secret_key: str
    currencies: frozenset[str]
    points_expiry: ExpiryPolicy  # its calendar is program_timezone's
    # The program's own timezone (IANA): expiry months and years, the liability report's
    # expiry months. Members see their own timezone; this is the books'.
    program_timezone: str
    # Origins whose browser front ends (the member app's) may call the member endpoints
    # with CORS: exact origins such as https://app.example.com (see loyalty/cors.py).
    cors_origins: tuple[str, ...]
    pending_days: int
    max_order_age_days: int  # how far in the past an order's occurred_at may lie
    return_policy: ReturnPolicy
    member_token_ttl_seconds: int
    member_qr_ttl_seconds: int
    hold_ttl_seconds: int
    idempotency_ttl_hours: int
    outbox_max_attempts: int
    outbox_retention_days: int
    max_body_bytes: int
    log_level: str
    run_embedded_worker: bool
    # Notification channel providers (notifications/providers/): None = the channel records
    # instead of sending. public_base_url is where Twilio and mail readers reach us (status
    # callbacks, unsubscribe links, and the URL X-Twilio-Signature is computed over).
    twilio: Any  # notifications.providers.settings.TwilioSettings | None
    smtp: Any  # ... SmtpSettings | None
    webpush: Any  # ... WebPushSettings | None
    public_base_url: str
    unsubscribe_token_days: int  # how long an unsubscribe link works
    # Request rate limits (limits-library strings such as "100/second;5000/hour", or None
    # for off): per client IP, per caller (API key or member), and tighter per-key limits
    # on minting member tokens and on identify. See loyalty/ratelimit.py.
    rate_limit_per_ip: str | None
    rate_limit_per_caller: str | None
    rate_limit_member_tokens: str | None
    rate_limit_identify: str | None
    proxy_hops: int  # reverse proxies in front that set X-Forwarded-For (client IPs)
    # Notifications (notifications/): send-time policies, provider rates, crash recovery.
    notify_quiet_hours: Any  # policies.QuietHours | None ("21:00-08:00", "off")
    notify_marketing_cap: Any  # policies.FrequencyCap | None ("3/7d", "off")
    notify_rate_limits: dict[str, float]  # provider or channel -> messages per second
    notify_max_attempts: int  # sends of one message before it fails for good
    notify_sending_lease_seconds: int  # a message `sending` longer than this was orphaned
    notify_recording_delay_ms: int  # the recording provider's simulated latency
    # Outgoing webhooks and login codes (notifications/webhooks, notifications/login_codes).
    webhook_allow_private_targets: bool  # loopback/private webhook URLs (tests, on-premise)
    webhook_timeout_seconds: int  # connect and read timeout of one delivery
    webhook_max_attempts: int  # attempts of one delivery before it is `failed`
    webhook_disable_after: int  # failed deliveries in a row that disable a subscription
    login_code_ttl_seconds: int
    login_code_max_attempts: int  # wrong guesses before a code is dead
    login_code_default_region: str | None  # phone numbers without +country (e.g. "CN")
    # The program's region for phone numbers without +country, after the store's country
    # (OMNILOYAL_DEFAULT_REGION; loyalty.members.identities.phone_region).
    default_region: str | None
    login_code_per_destination: str  # codes sent to one phone or email ("5/hour;10/day")
    login_code_per_ip: str  # login-code requests from one client IP
    login_code_country_caps: dict[str, int]  # SMS codes per hour per country code, "*": any
    # Campaigns (campaigns/): provider price per message by channel, in minor units, for
    # estimates, results and the finance export ("sms=5,email=0,push=0").
    campaign_message_prices: dict[str, int]
    # The dashboard (loyalty/dashboard/): idle session timeout, failed-login limits, and
    # the bearer token /metrics asks for (None: /metrics answers 404).
    dashboard_session_minutes: int = 30
    dashboard_login_limit_per_ip: str = "10/minute;50/hour"
    dashboard_login_limit_per_account: str = "5/minute;20/hour"
    metrics_token: str | None = None

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


def _rate_limit(env: Mapping[str, str], name: str, default: str) -> str | None:
    """A rate limit such as "100/second" or "10/second;5000/hour"; "off" disables it."""
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    value = raw.strip()
    if value.lower() == "off":
        return None
    return _checked_rate_limit(name, value)


def _checked_rate_limit(name: str, value: str | None) -> str | None:
    if value is None:
        return None
    from limits import parse_many

    try:
        items = parse_many(value)
    except ValueError:
        items = []
    if not items or any(item.amount < 1 for item in items):
        raise ConfigError(
            f'{name} must be a rate limit such as "100/second" or "10/second;5000/hour" '
            f'(or "off"), got {value!r}'
        )
    return value


def _currencies(raw: str) -> frozenset[str]:
    codes = [c.strip().upper() for c in raw.split(",") if c.strip()]
    bad = [c for c in codes if not re.fullmatch(r"[A-Z]{3}", c)]
    if bad or not codes:
        raise ConfigError(f"OMNILOYAL_CURRENCIES must list ISO 4217 codes, got {raw!r}")
    return frozenset(codes)


# --- notification providers: one variable each (notifications/providers/settings.py) -------

E164 = re.compile(r"\+[1-9]\d{6,14}")
EMAIL_ADDRESS = re.compile(r"[^@\s<>]+@[^@\s<>]+\.[^@\s<>]+")


def _text(env: Mapping[str, str], name: str) -> str | None:
    raw = env.get(name)
    return raw.strip() if raw and raw.strip() else None


def _provider_settings(env: Mapping[str, str]) -> dict[str, Any]:
    return {
        "twilio": _twilio_settings(env),
        "smtp": _smtp_settings(env),
        "webpush": _webpush_settings(env),
        "public_base_url": _public_base_url(env),
        "unsubscribe_token_days": _int(env, "OMNILOYAL_UNSUBSCRIBE_TOKEN_DAYS", 90, minimum=1),
    }


def _twilio_settings(env: Mapping[str, str]) -> Any:
    from notifications.providers.settings import TwilioSettings

    sid = _text(env, "OMNILOYAL_TWILIO_ACCOUNT_SID")
    token = _text(env, "OMNILOYAL_TWILIO_AUTH_TOKEN")
    service = _text(env, "OMNILOYAL_TWILIO_MESSAGING_SERVICE_SID")
    sender = _text(env, "OMNILOYAL_TWILIO_FROM")
    if not any((sid, token, service, sender)):
        return None
    if not sid or not re.fullmatch(r"AC[0-9a-fA-F]{32}", sid):
        raise ConfigError("OMNILOYAL_TWILIO_ACCOUNT_SID must be an account SID (AC + 32 hex)")
    if not token:
        raise ConfigError("OMNILOYAL_TWILIO_AUTH_TOKEN is required with a Twilio account")
    if service and not re.fullmatch(r"MG[0-9a-fA-F]{32}", service):
        raise ConfigError("OMNILOYAL_TWILIO_MESSAGING_SERVICE_SID must be MG + 32 hex")
    if sender and not (E164.fullmatch(sender) or re.fullmatch(r"[A-Za-z0-9 ]{1,11}", sender)):
        raise ConfigError("OMNILOYAL_TWILIO_FROM must be an E.164 number or an alphanumeric ID")
    if not service and not sender:
        raise ConfigError(
            "Twilio needs OMNILOYAL_TWILIO_MESSAGING_SERVICE_SID or OMNILOYAL_TWILIO_FROM"
        )
    return TwilioSettings(sid, token, messaging_service_sid=service, from_number=sender)


def _smtp_settings(env: Mapping[str, str]) -> Any:
    from notifications.providers.settings import SmtpSettings, SmtpTls

    host = _text(env, "OMNILOYAL_SMTP_HOST")
    if host is None:
        for name in ("OMNILOYAL_SMTP_FROM", "OMNILOYAL_SMTP_USERNAME", "OMNILOYAL_SMTP_PASSWORD"):
            if _text(env, name):
                raise ConfigError(f"{name} is set but OMNILOYAL_SMTP_HOST is not")
        return None
    raw_tls = (_text(env, "OMNILOYAL_SMTP_TLS") or "starttls").lower()
    try:
        tls = SmtpTls(raw_tls)
    except ValueError:
        raise ConfigError(
            f"OMNILOYAL_SMTP_TLS must be none, starttls or ssl, got {raw_tls!r}"
        ) from None
    default_port = {SmtpTls.NONE: 25, SmtpTls.STARTTLS: 587, SmtpTls.SSL: 465}[tls]
    port = _int(env, "OMNILOYAL_SMTP_PORT", default_port, minimum=1)
    if port > 65535:
        raise ConfigError(f"OMNILOYAL_SMTP_PORT must be a TCP port, got {port}")
    sender = _text(env, "OMNILOYAL_SMTP_FROM")
    if not sender or not EMAIL_ADDRESS.search(sender):
        raise ConfigError("OMNILOYAL_SMTP_FROM must hold the sender's address")
    username = _text(env, "OMNILOYAL_SMTP_USERNAME")
    password = env.get("OMNILOYAL_SMTP_PASSWORD") or None
    if bool(username) != bool(password):
        raise ConfigError("OMNILOYAL_SMTP_USERNAME and OMNILOYAL_SMTP_PASSWORD go together")
    mailto = _text(env, "OMNILOYAL_UNSUBSCRIBE_MAILTO")
    if mailto and not EMAIL_ADDRESS.fullmatch(mailto):
        raise ConfigError("OMNILOYAL_UNSUBSCRIBE_MAILTO must be a bare email address")
    return SmtpSettings(
        host, port, sender, tls=tls, username=username, password=password,
        unsubscribe_mailto=mailto,
    )  # fmt: skip


def _webpush_settings(env: Mapping[str, str]) -> Any:
    from notifications.providers.settings import DEFAULT_PUSH_TTL_SECONDS, WebPushSettings

    key = _text(env, "OMNILOYAL_VAPID_PRIVATE_KEY")
    subject = _text(env, "OMNILOYAL_VAPID_SUBJECT")
    if not key and not subject:
        return None
    if not key or "BEGIN" in key or not re.fullmatch(r"[A-Za-z0-9_\-=]{40,400}", key):
        raise ConfigError(
            "OMNILOYAL_VAPID_PRIVATE_KEY must be a base64url private key (not PEM), "
            "as `vapid --gen` or py_vapid prints"
        )
    if not subject or not subject.startswith(("mailto:", "https://")):
        raise ConfigError("OMNILOYAL_VAPID_SUBJECT must be a mailto: or https:// URL")
    ttl = _int(env, "OMNILOYAL_PUSH_TTL", DEFAULT_PUSH_TTL_SECONDS, minimum=1)
    return WebPushSettings(key, subject, ttl_seconds=ttl)


def _public_base_url(env: Mapping[str, str]) -> str:
    raw = _text(env, "OMNILOYAL_PUBLIC_BASE_URL") or "http://localhost:5000"
    if not re.fullmatch(r"https?://[^\s/?#]+(/[^\s?#]*)?", raw):
        raise ConfigError(f"OMNILOYAL_PUBLIC_BASE_URL must be an http(s) URL, got {raw!r}")
    return raw.rstrip("/")


def load_settings(
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
    instance_path: str = "instance",
    secret_source: SecretSource = SecretSource.REQUIRED,
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
        **_program_settings(env),
        pending_days=_int(env, "OMNILOYAL_PENDING_DAYS", 0),
        max_order_age_days=_int(env, "OMNILOYAL_MAX_ORDER_AGE_DAYS", 30, minimum=1),
        return_policy=ReturnPolicy.parse(env.get("OMNILOYAL_RETURN_POLICY", "cap-at-zero")),
        member_token_ttl_seconds=_int(env, "OMNILOYAL_MEMBER_TOKEN_TTL", 900, minimum=30),
        member_qr_ttl_seconds=_int(env, "OMNILOYAL_MEMBER_QR_TTL", 120, minimum=10),
        hold_ttl_seconds=_int(env, "OMNILOYAL_HOLD_TTL", 900, minimum=10),
        idempotency_ttl_hours=_int(env, "OMNILOYAL_IDEMPOTENCY_TTL_HOURS", 48, minimum=24),
        # A delivery is dead after this many failed attempts (backoff 10 s doubling to 1 h:
        # the default gives up after 1.7 to 3.4 hours).
        outbox_max_attempts=_int(env, "OMNILOYAL_OUTBOX_MAX_ATTEMPTS", 12, minimum=1),
        # Events whose deliveries are all done are purged this long after dispatch.
        outbox_retention_days=_int(env, "OMNILOYAL_OUTBOX_RETENTION_DAYS", 7, minimum=1),
        max_body_bytes=_int(env, "OMNILOYAL_MAX_BODY_BYTES", 1_000_000, minimum=1024),
        log_level=env.get("LOG_LEVEL", "INFO").upper(),
        run_embedded_worker=_bool(env, "OMNILOYAL_EMBEDDED_WORKER", True),
        **_provider_settings(env),
        rate_limit_per_ip=_rate_limit(env, "OMNILOYAL_RATE_LIMIT_PER_IP", "200/second"),
        rate_limit_per_caller=_rate_limit(env, "OMNILOYAL_RATE_LIMIT_PER_CALLER", "100/second"),
        rate_limit_member_tokens=_rate_limit(
            env, "OMNILOYAL_RATE_LIMIT_MEMBER_TOKENS", "20/second;20000/hour"
        ),
        rate_limit_identify=_rate_limit(
            env, "OMNILOYAL_RATE_LIMIT_IDENTIFY", "10/second;5000/hour"
        ),
        proxy_hops=_int(env, "OMNILOYAL_PROXY_HOPS", 0),
        **_notify_settings(env),
        **_webhook_and_login_settings(env),
        **_dashboard_settings(env),
        campaign_message_prices=_message_prices(env.get("OMNILOYAL_CAMPAIGN_PRICES")),
    )
    if overrides:
        known = {f.name for f in fields(Settings)}
        unknown = set(overrides) - known
        if unknown:
            raise ConfigError(f"unknown setting override(s): {', '.join(sorted(unknown))}")
        settings = replace(settings, **overrides)
    return _with_signing_key(_validated(settings), instance_path, secret_source)


def _notify_settings(env: Mapping[str, str]) -> dict[str, Any]:
    from notifications.policies import FrequencyCap, QuietHours
    from notifications.ratelimit import parse_limits

    def optional(name: str, default: str, parse: Any) -> Any:
        raw = (env.get(name) or default).strip()
        if raw.lower() == "off":
            return None
        try:
            return parse(raw)
        except ValueError as error:
            raise ConfigError(f"{name}: {error}") from None

    return {
        "notify_quiet_hours": optional(
            "OMNILOYAL_NOTIFY_QUIET_HOURS", "21:00-08:00", QuietHours.parse
        ),
        "notify_marketing_cap": optional(
            "OMNILOYAL_NOTIFY_MARKETING_CAP", "3/7d", FrequencyCap.parse
        ),
        "notify_rate_limits": optional("OMNILOYAL_NOTIFY_RATE_LIMITS", "off", parse_limits) or {},
        "notify_max_attempts": _int(env, "OMNILOYAL_NOTIFY_MAX_ATTEMPTS", 8, minimum=1),
        "notify_sending_lease_seconds": _int(env, "OMNILOYAL_NOTIFY_SENDING_LEASE", 300, minimum=1),
        "notify_recording_delay_ms": _int(env, "OMNILOYAL_NOTIFY_RECORDING_DELAY_MS", 0),
    }


def _region(env: Mapping[str, str], name: str) -> str | None:
    region = (env.get(name) or "").strip().upper() or None
    if region is not None and not re.fullmatch(r"[A-Z]{2}", region):
        raise ConfigError(f"{name} must be a region like CN, got {region!r}")
    return region


def _webhook_and_login_settings(env: Mapping[str, str]) -> dict[str, Any]:
    program_region = _region(env, "OMNILOYAL_DEFAULT_REGION")
    region = _region(env, "OMNILOYAL_LOGIN_CODE_DEFAULT_REGION") or program_region
    return {
        "default_region": program_region,
        "webhook_allow_private_targets": _bool(
            env, "OMNILOYAL_WEBHOOK_ALLOW_PRIVATE_TARGETS", False
        ),
        "webhook_timeout_seconds": _int(env, "OMNILOYAL_WEBHOOK_TIMEOUT", 10, minimum=1),
        "webhook_max_attempts": _int(env, "OMNILOYAL_WEBHOOK_MAX_ATTEMPTS", 10, minimum=1),
        "webhook_disable_after": _int(env, "OMNILOYAL_WEBHOOK_DISABLE_AFTER", 20, minimum=1),
        "login_code_ttl_seconds": _int(env, "OMNILOYAL_LOGIN_CODE_TTL", 600, minimum=60),
        "login_code_max_attempts": _int(env, "OMNILOYAL_LOGIN_CODE_MAX_ATTEMPTS", 5, minimum=1),
        "login_code_default_region": region,
        "login_code_per_destination": _counter_limits(
            env, "OMNILOYAL_LOGIN_CODE_PER_DESTINATION", "5/hour;10/day"
        ),
        "login_code_per_ip": _counter_limits(env, "OMNILOYAL_LOGIN_CODE_PER_IP", "20/hour"),
        "login_code_country_caps": _country_caps(
            env.get("OMNILOYAL_LOGIN_CODE_COUNTRY_CAPS") or "*=200"
        ),
    }


def _dashboard_settings(env: Mapping[str, str]) -> dict[str, Any]:
    token = _text(env, "OMNILOYAL_METRICS_TOKEN")
    if token is not None and len(token) < 16:
        raise ConfigError("OMNILOYAL_METRICS_TOKEN must be at least 16 characters")
    return {
        "dashboard_session_minutes": _int(
            env, "OMNILOYAL_DASHBOARD_SESSION_MINUTES", 30, minimum=1
        ),
        "dashboard_login_limit_per_ip": _counter_limits(
            env, "OMNILOYAL_DASHBOARD_LOGIN_LIMIT_PER_IP", "10/minute;50/hour"
        ),
        "dashboard_login_limit_per_account": _counter_limits(
            env, "OMNILOYAL_DASHBOARD_LOGIN_LIMIT_PER_ACCOUNT", "5/minute;20/hour"
        ),
        "metrics_token": token,
    }


def _message_prices(raw: str | None) -> dict[str, int]:
    """OMNILOYAL_CAMPAIGN_PRICES "sms=5,email=0,push=0": minor units per message; channels
    not named cost 0."""
    prices = {"sms": 0, "email": 0, "push": 0}
    for item in (raw or "sms=5,email=0,push=0").split(","):
        channel, _, value = item.strip().partition("=")
        if channel.strip() not in prices or not value.strip().isdigit():
            raise ConfigError(
                f'OMNILOYAL_CAMPAIGN_PRICES must look like "sms=5,email=0,push=0", got {raw!r}'
            )
        prices[channel.strip()] = int(value)
    return prices


def _counter_limits(env: Mapping[str, str], name: str, default: str) -> str:
    value = (env.get(name) or default).strip()
    checked = _checked_rate_limit(name, value)
    assert checked is not None
    return checked


def _country_caps(raw: str) -> dict[str, int]:
    """ "*=200,86=5000": SMS login codes per hour to one country calling code; "*" is the
    cap of every country not named."""
    caps = {}
    for item in raw.split(","):
        key, _, value = item.strip().partition("=")
        key = key.strip().lstrip("+")
        if not (key == "*" or key.isdigit()) or not value.strip().isdigit():
            raise ConfigError(
                f'OMNILOYAL_LOGIN_CODE_COUNTRY_CAPS must look like "*=200,86=5000", got {raw!r}'
            )
        caps[key] = int(value)
    if "*" not in caps:
        raise ConfigError('OMNILOYAL_LOGIN_CODE_COUNTRY_CAPS needs a "*=<cap>" for other countries')
    return caps


def _program_settings(env: Mapping[str, str]) -> dict[str, Any]:
    from zoneinfo import available_timezones

    zone = (env.get("OMNILOYAL_PROGRAM_TIMEZONE") or "UTC").strip()
    if zone != "UTC" and zone not in available_timezones():
        raise ConfigError(
            f"OMNILOYAL_PROGRAM_TIMEZONE must be an IANA timezone (Europe/Paris), got {zone!r}"
        )
    origins = tuple(
        origin.strip().rstrip("/")
        for origin in (env.get("OMNILOYAL_CORS_ORIGINS") or "").split(",")
        if origin.strip()
    )
    for origin in origins:
        if origin == "*" or not re.fullmatch(r"https?://[^/\s*]+", origin):
            raise ConfigError(
                "OMNILOYAL_CORS_ORIGINS must list exact origins such as "
                f"https://app.example.com (no paths, no *), got {origin!r}"
            )
    return {"program_timezone": zone, "cors_origins": origins}


def _validated(settings: Settings) -> Settings:
    if settings.points_expiry.timezone != settings.program_timezone:  # one calendar
        settings = replace(
            settings,
            points_expiry=replace(settings.points_expiry, timezone=settings.program_timezone),
        )
    if (settings.twilio or settings.smtp) and not settings.public_base_url.startswith("https://"):
        # Twilio posts receipts to it and mail readers follow unsubscribe links from it.
        raise ConfigError("OMNILOYAL_PUBLIC_BASE_URL must be https:// when SMS or email is on")
    for name in RATE_LIMIT_SETTINGS:  # overrides are checked like the environment
        _checked_rate_limit(name, getattr(settings, name))
    if settings.log_level not in {"DEBUG", "INFO", "WARNING", "ERROR"}:
        raise ConfigError(f"LOG_LEVEL must be DEBUG, INFO, WARNING or ERROR: {settings.log_level}")
    return settings


def _with_signing_key(
    settings: Settings, instance_path: str, secret_source: SecretSource
) -> Settings:
    """SECRET_KEY as given (long enough), else what `secret_source` allows, else refuse."""
    if settings.secret_key:
        if len(settings.secret_key) < MIN_SECRET_LENGTH:
            raise ConfigError(f"SECRET_KEY must be at least {MIN_SECRET_LENGTH} characters")
        return settings
    if secret_source is SecretSource.INSTANCE and settings.embedded:
        return replace(settings, secret_key=instance_secret(instance_path, create=True))
    if secret_source is SecretSource.UNUSED:
        return replace(settings, secret_key=instance_secret(instance_path, create=False))
    raise ConfigError(
        "SECRET_KEY is required: it signs member tokens, and without it anyone could forge "
        "one. Only `omniloyal run` on the embedded default (SQLite, no REDIS_URL) makes up "
        f"its own. {SECRET_KEY_HINT}"
    )


def instance_secret(instance_path: str, *, create: bool) -> str:
    """The instance's own random signing key (`<instance>/secret_key`, mode 0600).

    With `create`, a missing key is generated, atomically: two processes starting at once
    end up with the same key. Without it, a missing key is "" (nothing can be signed).
    """
    path = os.path.join(instance_path, INSTANCE_SECRET_FILE)
    if not os.path.exists(path) and create:
        _write_new_secret(path)
    try:
        with open(path, encoding="ascii") as handle:
            secret = handle.read().strip()
    except FileNotFoundError:
        return ""
    if len(secret) < MIN_SECRET_LENGTH:
        raise ConfigError(f"{path} holds no usable key: delete it, or set SECRET_KEY")
    return secret


def _write_new_secret(path: str) -> None:
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    draft = f"{path}.{os.getpid()}.{secrets.token_hex(4)}"
    descriptor = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(descriptor, "w", encoding="ascii") as handle:
            handle.write(secrets.token_urlsafe(48) + "\n")
        # Atomic, and refuses to replace a key another process made meanwhile.
        with contextlib.suppress(FileExistsError):
            os.link(draft, path)
    finally:
        os.unlink(draft)
