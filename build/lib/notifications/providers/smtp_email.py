"""Email over SMTP (any relay: Postfix, SES, Mailgun, SendGrid's SMTP endpoint).

One connection per send (worker threads share nothing; a relay drops idle connections
anyway). TLS is `none` (a local relay), `starttls` (587: EHLO, STARTTLS, EHLO again, then
AUTH: many relays offer AUTH only after STARTTLS) or `ssl` (implicit TLS, 465). Certificates
are verified with the system's trust store.

The mail is multipart/alternative (plain text first, then HTML). Marketing mail carries
`List-Unsubscribe` (the signed https URL, and a mailto when configured) and RFC 8058's
`List-Unsubscribe-Post: List-Unsubscribe=One-Click`, which mailbox providers require of bulk
senders; a marketing message without an unsubscribe URL is refused, never sent without one.

`sendmail` raises only when every recipient is refused; otherwise it returns the refused
ones (code, text). Both are read: a 4xx is transient (retry), a 5xx permanent.
"""

from __future__ import annotations

import logging
import smtplib
import ssl
from email.message import EmailMessage
from email.utils import formataddr, formatdate, parseaddr

from notifications.providers.base import Channel, Outcome, OutgoingMessage, SendResult
from notifications.providers.settings import SmtpSettings, SmtpTls

log = logging.getLogger(__name__)


class SmtpEmailProvider:
    """A `Provider` for the email channel."""

    channel = Channel.EMAIL
    idempotent = False  # SMTP has no idempotency key; the Message-ID lets a reader dedupe

    def __init__(self, settings: SmtpSettings) -> None:
        if settings.username and not settings.password:
            raise ValueError("SMTP login needs a password")
        self.name = "smtp"
        self.settings = settings
        self._domain = parseaddr(settings.from_address)[1].rpartition("@")[2] or "localhost"

    def build(self, message: OutgoingMessage) -> EmailMessage:
        """The MIME message for `message` (public: previews and tests read it)."""
        mail = EmailMessage()
        mail["From"] = self.settings.from_address
        mail["To"] = formataddr(("", message.to))
        mail["Subject"] = message.subject or ""
        mail["Date"] = formatdate(localtime=False, usegmt=True)
        # Stable per message: a retried send is recognisably the same mail.
        mail["Message-ID"] = f"<omniloyal.{message.message_id}@{self._domain}>"
        if message.marketing:
            targets = [f"<{message.unsubscribe_url}>"]
            if self.settings.unsubscribe_mailto:
                targets.append(f"<mailto:{self.settings.unsubscribe_mailto}?subject=unsubscribe>")
            mail["List-Unsubscribe"] = ", ".join(targets)
            mail["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
        for name, value in message.data.items():
            if name.lower().startswith("x-"):  # only our own extension headers
                mail[name] = value
        mail.set_content(message.text)
        if message.html:
            mail.add_alternative(message.html, subtype="html")
        return mail

    def send(self, message: OutgoingMessage) -> SendResult:
        if message.marketing and not (message.unsubscribe_url or "").startswith("https://"):
            return SendResult(
                Outcome.FAILED, reason="marketing mail needs an https unsubscribe URL"
            )
        mail = self.build(message)
        sender = parseaddr(self.settings.from_address)[1]
        try:
            with self._connect() as connection:
                refused = connection.send_message(mail, from_addr=sender, to_addrs=[message.to])
        except smtplib.SMTPRecipientsRefused as error:
            refused = error.recipients
        except (smtplib.SMTPSenderRefused, smtplib.SMTPDataError) as error:
            return _by_code(error.smtp_code, "refused by the relay")
        except smtplib.SMTPAuthenticationError as error:
            # Our configuration, not the recipient: keep the message for when it's fixed.
            log.error("SMTP login refused (%s): check the SMTP credentials", error.smtp_code)
            return SendResult(Outcome.RETRY, error_code=str(error.smtp_code), reason="login")
        except (smtplib.SMTPException, OSError) as error:  # timeouts, TLS, disconnects
            log.warning("SMTP send of message %s failed: %r", message.message_id, error)
            return SendResult(Outcome.RETRY, reason=f"SMTP: {type(error).__name__}")
        if refused:
            code, _text = next(iter(refused.values()))
            return _by_code(code, "recipient refused")
        return SendResult(Outcome.ACCEPTED, provider_message_id=mail["Message-ID"])

    def _connect(self) -> smtplib.SMTP:
        settings = self.settings
        context = settings.ssl_context or ssl.create_default_context()
        if settings.tls is SmtpTls.SSL:
            connection: smtplib.SMTP = smtplib.SMTP_SSL(
                settings.host, settings.port, timeout=settings.timeout_seconds, context=context
            )
        else:
            connection = smtplib.SMTP(
                settings.host, settings.port, timeout=settings.timeout_seconds
            )
        try:
            connection.ehlo()
            if settings.tls is SmtpTls.STARTTLS:
                connection.starttls(context=context)
                connection.ehlo()  # the server's capabilities change after STARTTLS
            if settings.username:
                connection.login(settings.username, settings.password or "")
        except BaseException:
            connection.close()
            raise
        return connection


def _by_code(code: int, what: str) -> SendResult:
    """4xx: the relay asks us to come back later; 5xx: permanent (bad address, policy)."""
    outcome = Outcome.RETRY if 400 <= code < 500 else Outcome.FAILED
    return SendResult(outcome, error_code=str(code), reason=f"{what} (SMTP {code})")
