"""Provider settings parsed strictly (one variable each) and the providers built from them."""

from __future__ import annotations

import pytest

from loyalty.config import ConfigError, load_settings
from notifications.providers.base import Channel
from notifications.providers.factory import configured_providers, providers_for
from notifications.providers.settings import SmtpTls
from notifications.providers.smtp_email import SmtpEmailProvider
from notifications.providers.twilio_sms import TwilioSmsProvider
from notifications.providers.webpush import WebPushProvider
from tests.notifications.servers import vapid_private_key_b64

BASE = {"SECRET_KEY": "k" * 40, "OMNILOYAL_PUBLIC_BASE_URL": "https://loyalty.example.com/"}
TWILIO = {
    "OMNILOYAL_TWILIO_ACCOUNT_SID": "AC" + "a" * 32,
    "OMNILOYAL_TWILIO_AUTH_TOKEN": "token",
    "OMNILOYAL_TWILIO_MESSAGING_SERVICE_SID": "MG" + "b" * 32,
}
SMTP = {
    "OMNILOYAL_SMTP_HOST": "smtp.example.com",
    "OMNILOYAL_SMTP_FROM": "Omniloyal <news@example.com>",
    "OMNILOYAL_SMTP_USERNAME": "user",
    "OMNILOYAL_SMTP_PASSWORD": "pass",
}


def settings(**env: str):  # type: ignore[no-untyped-def]
    return load_settings({**BASE, **env}, instance_path="/tmp/omniloyal-test-instance")


def test_nothing_configured_means_no_real_provider() -> None:
    loaded = settings()

    assert (loaded.twilio, loaded.smtp, loaded.webpush) == (None, None, None)
    assert configured_providers(loaded) == {}


def test_every_channel_configured_builds_its_provider() -> None:
    vapid = {
        "OMNILOYAL_VAPID_PRIVATE_KEY": vapid_private_key_b64(),
        "OMNILOYAL_VAPID_SUBJECT": "mailto:ops@example.com",
        "OMNILOYAL_PUSH_TTL": "3600",
    }
    loaded = settings(**TWILIO, **SMTP, **vapid)

    providers = providers_for(loaded)

    assert isinstance(providers[Channel.SMS], TwilioSmsProvider)
    assert isinstance(providers[Channel.EMAIL], SmtpEmailProvider)
    assert isinstance(providers[Channel.PUSH], WebPushProvider)
    assert loaded.smtp.tls is SmtpTls.STARTTLS and loaded.smtp.port == 587
    assert loaded.webpush.ttl_seconds == 3600
    assert loaded.public_base_url == "https://loyalty.example.com"


def test_smtp_ports_follow_the_tls_mode() -> None:
    assert settings(**SMTP, OMNILOYAL_SMTP_TLS="ssl").smtp.port == 465
    assert settings(**SMTP, OMNILOYAL_SMTP_TLS="none", OMNILOYAL_SMTP_PORT="2525").smtp.port == 2525


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({**TWILIO, "OMNILOYAL_TWILIO_ACCOUNT_SID": "nope"}, "ACCOUNT_SID"),
        ({**TWILIO, "OMNILOYAL_TWILIO_AUTH_TOKEN": ""}, "AUTH_TOKEN"),
        ({**TWILIO, "OMNILOYAL_TWILIO_MESSAGING_SERVICE_SID": ""}, "MESSAGING_SERVICE_SID or"),
        ({**TWILIO, "OMNILOYAL_TWILIO_FROM": "0800 123 456 789"}, "OMNILOYAL_TWILIO_FROM"),
        ({**SMTP, "OMNILOYAL_SMTP_TLS": "yes"}, "OMNILOYAL_SMTP_TLS"),
        ({**SMTP, "OMNILOYAL_SMTP_PORT": "70000"}, "OMNILOYAL_SMTP_PORT"),
        ({**SMTP, "OMNILOYAL_SMTP_FROM": "news"}, "OMNILOYAL_SMTP_FROM"),
        ({**SMTP, "OMNILOYAL_SMTP_PASSWORD": ""}, "go together"),
        ({"OMNILOYAL_SMTP_FROM": "news@example.com"}, "OMNILOYAL_SMTP_HOST"),
        (
            {"OMNILOYAL_VAPID_PRIVATE_KEY": "-----BEGIN EC PRIVATE KEY-----\nMHcC"},
            "not PEM",
        ),
        (
            {"OMNILOYAL_VAPID_PRIVATE_KEY": "A" * 43, "OMNILOYAL_VAPID_SUBJECT": "ops@x.com"},
            "OMNILOYAL_VAPID_SUBJECT",
        ),
        ({**TWILIO, "OMNILOYAL_PUBLIC_BASE_URL": "http://loyalty.example.com"}, "https://"),
        ({"OMNILOYAL_PUBLIC_BASE_URL": "loyalty.example.com"}, "OMNILOYAL_PUBLIC_BASE_URL"),
        ({"OMNILOYAL_UNSUBSCRIBE_TOKEN_DAYS": "0"}, "OMNILOYAL_UNSUBSCRIBE_TOKEN_DAYS"),
    ],
)
def test_malformed_provider_settings_refuse_to_start_naming_the_variable(
    env: dict[str, str], message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        settings(**env)
