"""The recording provider: the embedded default's 'send' writes the message to a table
instead, readable over `GET /v1/notifications/recorded`, so a newcomer sees what would have
gone out. Tests and the benchmark use it as a provider that counts every call.

It honours an idempotency key, the message id, as Twilio-like APIs with one would: a second
call for the same message records nothing new and answers as the first did (it only counts
the call). That is the hook the pipeline's crash recovery relies on (see
`notifications.pipeline.recover_orphans`). It writes on its own connection, in its own short
transaction: the pipeline calls providers outside any transaction of its own.
"""

from __future__ import annotations

import time

import sqlalchemy as sa

from loyalty.clock import utcnow
from loyalty.db import db, upsert_insert
from notifications.models import RecordedMessage
from notifications.providers.base import Channel, Outcome, OutgoingMessage, SendResult


class RecordingProvider:
    idempotent = True  # a repeated send of one message id is recorded once

    def __init__(self, channel: Channel, *, delay_seconds: float = 0.0) -> None:
        self.channel = Channel(channel)
        self.name = f"recording-{self.channel.value}"
        self.delay_seconds = delay_seconds

    def send(self, message: OutgoingMessage) -> SendResult:
        if self.delay_seconds:
            time.sleep(self.delay_seconds)  # a provider's round trip (tests, benchmark)
        table = RecordedMessage.__table__
        statement = upsert_insert(table).values(
            message_id=message.message_id,
            channel=message.channel.value,
            destination=message.to,
            subject=message.subject,
            body=message.text,
            html=message.html,
            marketing=message.marketing,
            calls=1,
            recorded_at=utcnow(),
        )
        with db.engine.begin() as connection:
            connection.execute(
                statement.on_conflict_do_update(
                    index_elements=["message_id"], set_={"calls": table.c.calls + 1}
                )
            )
        return SendResult(Outcome.ACCEPTED, provider_message_id=f"rec-{message.message_id}")

    def lookup(self, message_id: int) -> SendResult | None:
        """What became of a message we may have sent (crash recovery), or None if unknown."""
        with db.engine.connect() as connection:
            found = connection.execute(
                sa.select(RecordedMessage.id).where(RecordedMessage.message_id == message_id)
            ).scalar()
        if found is None:
            return None
        return SendResult(Outcome.ACCEPTED, provider_message_id=f"rec-{message_id}")
