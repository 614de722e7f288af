"""Email through smtplib to a real SMTP server (aiosmtpd) started by the tests."""

from __future__ import annotations

import email
import email.policy
from email.message import EmailMessage

from notifications.providers.base import Channel, Outcome, OutgoingMessage
from notifications.providers.settings import SmtpSettings, SmtpTls
from notifications.providers.smtp_email import SmtpEmailProvider
from tests.notifications.servers import SmtpServer, smtp_server

UNSUBSCRIBE = "https://loyalty.example.com/notifications/unsubscribe/tok123"


def mail(**fields: object) -> OutgoingMessage:
    values: dict[str, object] = {
        "message_id": 42,
        "channel": Channel.EMAIL,
        "to": "jane@example.com",
        "subject": "Your points",
        "text": "You earned 120 points.",
        "html": "<p>You earned <b>120</b> points.</p>",
    }
    return OutgoingMessage(**{**values, **fields})  # type: ignore[arg-type]


def provider(server: SmtpServer, **settings: object) -> SmtpEmailProvider:
    values: dict[str, object] = {
        "host": "127.0.0.1",
        "port": server.port,
        "from_address": "Omniloyal <news@loyalty.example.com>",
        "tls": SmtpTls.NONE,
        "timeout_seconds": 5,
    }
    return SmtpEmailProvider(SmtpSettings(**{**values, **settings}))  # type: ignore[arg-type]


def received(server: SmtpServer) -> EmailMessage:
    [one] = server.mails
    return email.message_from_bytes(one.data, policy=email.policy.default)  # type: ignore[return-value]


def test_a_transactional_mail_is_multipart_text_and_html_without_unsubscribe_headers() -> None:
    with smtp_server() as server:
        result = provider(server).send(mail())
        message = received(server)

    assert result.outcome is Outcome.ACCEPTED
    assert result.provider_message_id == "<omniloyal.42@loyalty.example.com>"
    assert server.mails[0].mail_from == "news@loyalty.example.com"
    assert server.mails[0].rcpt_tos == ["jane@example.com"]
    assert message["Subject"] == "Your points"
    assert message["Message-ID"] == "<omniloyal.42@loyalty.example.com>"
    assert message.get_content_type() == "multipart/alternative"
    parts = [(p.get_content_type(), p.get_content().strip()) for p in message.iter_parts()]
    assert parts == [
        ("text/plain", "You earned 120 points."),
        ("text/html", "<p>You earned <b>120</b> points.</p>"),
    ]
    assert "List-Unsubscribe" not in message
    assert "List-Unsubscribe-Post" not in message


def test_marketing_mail_carries_one_click_unsubscribe_rfc_8058() -> None:
    with smtp_server() as server:
        sender = provider(server, unsubscribe_mailto="unsubscribe@loyalty.example.com")
        result = sender.send(mail(marketing=True, unsubscribe_url=UNSUBSCRIBE))
        message = received(server)

    assert result.outcome is Outcome.ACCEPTED
    assert message["List-Unsubscribe"].strip() == (  # folded: long
        f"<{UNSUBSCRIBE}>, <mailto:unsubscribe@loyalty.example.com?subject=unsubscribe>"
    )
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"


def test_marketing_mail_without_an_https_unsubscribe_url_is_never_sent() -> None:
    with smtp_server() as server:
        result = provider(server).send(mail(marketing=True, unsubscribe_url=None))

    assert result.outcome is Outcome.FAILED
    assert server.mails == []


def test_chinese_text_survives_the_round_trip() -> None:
    with smtp_server() as server:
        provider(server).send(mail(subject="积分到账", text="您获得了 120 积分。", html=None))
        message = received(server)

    assert message["Subject"] == "积分到账"
    assert message.get_content().strip() == "您获得了 120 积分。"


def test_a_permanently_refused_recipient_fails_a_temporarily_refused_one_retries() -> None:
    with smtp_server() as server:
        server.refuse["gone@example.com"] = "550 5.1.1 No such user"
        server.refuse["busy@example.com"] = "451 4.3.0 Try again later"
        sender = provider(server)
        gone = sender.send(mail(to="gone@example.com"))
        busy = sender.send(mail(to="busy@example.com"))

    assert (gone.outcome, gone.error_code) == (Outcome.FAILED, "550")
    assert (busy.outcome, busy.error_code) == (Outcome.RETRY, "451")
    assert server.mails == []


def test_starttls_then_login_then_send() -> None:
    """The server offers AUTH only after STARTTLS: login must come after it."""
    with smtp_server(tls=True, username="relay-user", password="relay-pass") as server:
        sender = provider(
            server,
            tls=SmtpTls.STARTTLS,
            username="relay-user",
            password="relay-pass",
            ssl_context=server.client_context,
        )
        result = sender.send(mail())

    assert result.outcome is Outcome.ACCEPTED
    assert server.authenticated == [True]


def test_a_wrong_password_keeps_the_message_for_a_retry() -> None:
    with smtp_server(tls=True, username="relay-user", password="relay-pass") as server:
        sender = provider(
            server,
            tls=SmtpTls.STARTTLS,
            username="relay-user",
            password="wrong",
            ssl_context=server.client_context,
        )
        result = sender.send(mail())

    assert (result.outcome, result.reason) == (Outcome.RETRY, "login")
    assert server.mails == []


def test_an_untrusted_certificate_is_refused_not_ignored() -> None:
    with smtp_server(tls=True) as server:
        result = provider(server, tls=SmtpTls.STARTTLS).send(mail())  # system trust store

    assert result.outcome is Outcome.RETRY
    assert "SSL" in (result.reason or "")
    assert server.mails == []


def test_an_unreachable_relay_is_transient() -> None:
    with smtp_server() as server:
        port = server.port
    sender = SmtpEmailProvider(
        SmtpSettings("127.0.0.1", port, "news@loyalty.example.com", tls=SmtpTls.NONE)
    )

    assert sender.send(mail()).outcome is Outcome.RETRY


def test_a_chunk_goes_over_one_connection_and_a_refused_mail_does_not_stop_the_rest() -> None:
    with smtp_server(tls=True, username="relay-user", password="relay-pass") as server:
        server.refuse["gone@example.com"] = "550 5.1.1 No such user"
        sender = provider(
            server,
            tls=SmtpTls.STARTTLS,
            username="relay-user",
            password="relay-pass",
            ssl_context=server.client_context,
        )
        opened = []
        connect = sender._connect
        sender._connect = lambda: opened.append(1) or connect()  # type: ignore[method-assign]
        results = sender.send_many(
            [mail(to="a@example.com"), mail(to="gone@example.com"), mail(to="b@example.com")]
        )

    assert [r.outcome for r in results] == [Outcome.ACCEPTED, Outcome.FAILED, Outcome.ACCEPTED]
    assert [m.rcpt_tos for m in server.mails] == [["a@example.com"], ["b@example.com"]]
    assert server.authenticated == [True, True]
    assert opened == [1]  # one connection (one TLS handshake and login) for the whole chunk
