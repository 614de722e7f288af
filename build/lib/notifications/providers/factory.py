"""Build the channel providers from settings: `providers_for(settings)`.

A channel whose provider is configured gets it; the others get notify-core's recording
provider (it writes what would have gone out to a table: the embedded default), so a
deployment never silently drops a channel.

Adding a provider (FCM, APNs, another SMS gateway) touches only this package:
1. a class with `name`, `channel` and `send(OutgoingMessage) -> SendResult` (the
   `Provider` protocol in `base.py`) that maps the service's answers to `Outcome`s
   (GONE for a dead device token, RETRY with `retry_after_seconds` for throttling, ...);
   optionally `idempotent` / `lookup()` for the pipeline's crash recovery;
2. its settings in `settings.py` and their variables in `loyalty/config.py`'s provider block;
3. one branch below. The pipeline, policies and consent never change: they see a channel.
A second push transport (say FCM tokens beside Web Push subscriptions) would be one
`Provider` that dispatches on the destination's kind.
"""

from __future__ import annotations

from typing import Any

from notifications.providers.base import Channel, Provider


def configured_providers(settings: Any) -> dict[Channel, Provider]:
    """Only the providers the settings configure (no recording fallback)."""
    providers: dict[Channel, Provider] = {}
    if settings.twilio is not None:
        from notifications.providers.twilio_sms import TwilioSmsProvider

        providers[Channel.SMS] = TwilioSmsProvider(settings.twilio)
    if settings.smtp is not None:
        from notifications.providers.smtp_email import SmtpEmailProvider

        providers[Channel.EMAIL] = SmtpEmailProvider(settings.smtp)
    if settings.webpush is not None:
        from notifications.providers.webpush import WebPushProvider

        providers[Channel.PUSH] = WebPushProvider(settings.webpush)
    return providers


def providers_for(settings: Any) -> dict[Channel, Provider]:
    """One provider per channel: the configured one, else the recording provider."""
    providers = configured_providers(settings)
    try:
        from notifications.providers.recording import RecordingProvider
    except ImportError:  # notify-core's recording provider not merged yet
        return providers
    delay = getattr(settings, "notify_recording_delay_ms", 0) / 1000
    for channel in Channel:
        providers.setdefault(channel, RecordingProvider(channel, delay_seconds=delay))
    return providers
