"""What each channel provider needs to be built; parsed from the environment by
`loyalty.config` (one variable each), read by `notifications.providers.factory`.

Plain data, no client libraries imported: loading settings stays cheap.
"""

from __future__ import annotations

import enum
import ssl
from dataclasses import dataclass, field

DEFAULT_PUSH_TTL_SECONDS = 24 * 3600


@dataclass(frozen=True)
class TwilioSettings:
    account_sid: str
    auth_token: str  # also the key of X-Twilio-Signature on inbound webhooks
    messaging_service_sid: str | None = None  # MG...: Twilio picks the sender (preferred)
    from_number: str | None = None  # an E.164 sender when there is no Messaging Service
    timeout_seconds: float = 10.0


class SmtpTls(enum.StrEnum):
    NONE = "none"  # a relay on localhost or a private network
    STARTTLS = "starttls"  # 587: plain connect, STARTTLS, then AUTH
    SSL = "ssl"  # 465: implicit TLS


@dataclass(frozen=True)
class SmtpSettings:
    host: str
    port: int
    from_address: str  # "Omniloyal <news@example.com>" or a bare address
    tls: SmtpTls = SmtpTls.STARTTLS
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    timeout_seconds: float = 20.0
    unsubscribe_mailto: str | None = None  # a mailto List-Unsubscribe target (optional)
    ssl_context: ssl.SSLContext | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class WebPushSettings:
    vapid_private_key: str = field(repr=False)  # base64url (raw or DER), as `vapid` prints
    vapid_subject: str = ""  # mailto:ops@example.com or https://example.com (RFC 8292)
    ttl_seconds: int = DEFAULT_PUSH_TTL_SECONDS
    timeout_seconds: float = 10.0
