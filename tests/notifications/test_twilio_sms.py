"""SMS through the real twilio library against a local stub of Twilio's REST API."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from notifications.providers.base import Channel, Outcome, OutgoingMessage
from notifications.providers.settings import TwilioSettings
from notifications.providers.twilio_sms import TwilioSmsProvider
from tests.notifications.servers import (
    LocalTwilioHttpClient,
    Reply,
    TwilioStub,
    twilio_error,
    twilio_problem,
    twilio_stub,
)

ACCOUNT = "AC" + "0" * 32
SERVICE = "MG" + "1" * 32
CALLBACK = "https://loyalty.example.com/notifications/twilio/status"


@pytest.fixture
def stub() -> Iterator[TwilioStub]:
    with twilio_stub() as server:
        yield server


def provider(stub: TwilioStub, **settings: str) -> TwilioSmsProvider:
    config = TwilioSettings(ACCOUNT, "auth-token", **settings)  # type: ignore[arg-type]
    return TwilioSmsProvider(config, http_client=LocalTwilioHttpClient(stub.base_url, timeout=5))


def sms(text: str = "Your code is 123456", **fields: object) -> OutgoingMessage:
    return OutgoingMessage(
        message_id=7, channel=Channel.SMS, to="+8613800138000", text=text, **fields
    )  # type: ignore[arg-type]


def test_a_send_through_a_messaging_service_posts_twilios_form_fields(stub: TwilioStub) -> None:
    result = provider(stub, messaging_service_sid=SERVICE).send(
        sms("积分到账 120", status_callback_url=CALLBACK)
    )

    assert result.outcome is Outcome.ACCEPTED
    assert result.provider_message_id and result.provider_message_id.startswith("SM")
    [request] = stub.received
    assert request.path == f"/2010-04-01/Accounts/{ACCOUNT}/Messages.json"
    assert request.headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert request.headers["Authorization"].startswith("Basic ")
    assert request.form == {
        "To": "+8613800138000",
        "MessagingServiceSid": SERVICE,
        "Body": "积分到账 120",
        "StatusCallback": CALLBACK,
    }


def test_a_send_from_a_sender_number_posts_from_and_no_callback_when_none_given(
    stub: TwilioStub,
) -> None:
    result = provider(stub, from_number="+15005550006").send(sms())

    assert result.outcome is Outcome.ACCEPTED
    assert stub.received[0].form == {
        "To": "+8613800138000",
        "From": "+15005550006",
        "Body": "Your code is 123456",
    }


def test_a_provider_needs_a_sender() -> None:
    with pytest.raises(ValueError, match="Messaging Service SID or a sender"):
        TwilioSmsProvider(TwilioSettings(ACCOUNT, "auth-token"))


def test_429_back_pressure_is_retried_after_twilios_retry_after(stub: TwilioStub) -> None:
    stub.replies.append(twilio_error(429, 20429, "Too Many Requests", **{"Retry-After": "17"}))

    result = provider(stub, messaging_service_sid=SERVICE).send(sms())

    assert result.outcome is Outcome.RETRY
    assert result.error_code == "20429"
    assert result.retry_after_seconds == 17
    assert len(stub.received) == 1  # the library itself never retried


def test_error_20429_without_http_429_is_back_pressure_too(stub: TwilioStub) -> None:
    stub.replies.append(twilio_error(400, 20429, "Too Many Requests"))

    result = provider(stub, messaging_service_sid=SERVICE).send(sms())

    assert (result.outcome, result.retry_after_seconds) == (Outcome.RETRY, None)


def test_21610_the_recipient_replied_stop_means_unsubscribed(stub: TwilioStub) -> None:
    stub.replies.append(twilio_error(400, 21610, "Attempt to send to unsubscribed recipient"))

    result = provider(stub, messaging_service_sid=SERVICE).send(sms())

    assert (result.outcome, result.error_code) == (Outcome.UNSUBSCRIBED, "21610")


@pytest.mark.parametrize(
    ("code", "reason"),
    [(21211, "invalid 'To' phone number"), (21614, "'To' number is not a mobile number")],
)
def test_invalid_or_landline_numbers_fail_for_good_with_the_reason(
    stub: TwilioStub, code: int, reason: str
) -> None:
    stub.replies.append(twilio_error(400, code, "The 'To' number is not valid"))

    result = provider(stub, messaging_service_sid=SERVICE).send(sms())

    assert (result.outcome, result.error_code, result.reason) == (Outcome.FAILED, str(code), reason)


def test_rfc_9457_problem_bodies_are_caught_too(stub: TwilioStub) -> None:
    """They raise TwilioServiceException, which is no TwilioRestException."""
    stub.replies.append(twilio_problem(400, 21211, "Invalid 'To' Phone Number"))
    stub.replies.append(twilio_problem(503, 20500, "Service Unavailable"))
    sender = provider(stub, messaging_service_sid=SERVICE)

    assert sender.send(sms()).outcome is Outcome.FAILED
    assert sender.send(sms()).outcome is Outcome.RETRY


def test_twilio_5xx_is_transient(stub: TwilioStub) -> None:
    stub.replies.append(Reply(500, {"message": "internal"}))

    assert provider(stub, messaging_service_sid=SERVICE).send(sms()).outcome is Outcome.RETRY


def test_an_unreachable_twilio_is_transient() -> None:
    with twilio_stub() as gone:
        url = gone.base_url
    sender = TwilioSmsProvider(
        TwilioSettings(ACCOUNT, "auth-token", messaging_service_sid=SERVICE),
        http_client=LocalTwilioHttpClient(url, timeout=2),
    )

    result = sender.send(sms())

    assert result.outcome is Outcome.RETRY
    assert result.reason and result.reason.startswith("network")
