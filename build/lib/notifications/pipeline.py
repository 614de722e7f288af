"""The delivery pipeline: queue a message in the cause's transaction, send it later.

    queue_message(...)            in the caller's transaction; UNIQUE dedupe key -> at most
                                  one message per (cause, member, channel)
    send job (RQ "notifications", any number of workers at once), per round:
      0 recover_orphans (commit)  messages left `sending` by a dead worker (see below)
      1 claim_due       (commit)  due messages FOR UPDATE SKIP LOCKED; send-time policies
                                  (consent, quiet hours, frequency cap) suppress or defer;
                                  the provider's token bucket grants how many go now; the
                                  rest stay queued; destination resolved, template rendered;
                                  state -> sending, attempts + 1
      2 provider.send             no transaction open
      3 record_result   (commit)  sent | deferred (retry with backoff) | failed; per message,
                                  only if the message is still in the claim we made

**Exactly once across a crash.** A worker killed between 1 and 3 leaves messages in
`sending`. After `OMNILOYAL_NOTIFY_SENDING_LEASE` seconds (far above any provider timeout)
`recover_orphans` resolves each with the provider's own hooks:
- `provider.lookup(message_id)` (the provider can tell whether it got the message): found ->
  `sent`; not found -> sent again;
- else `provider.idempotent` (the provider dedupes by our message id, its idempotency
  key): sent again, the provider drops the duplicate;
- else: `failed` with reason "outcome unknown" and never sent again. A message is sent at
  most once; support sees the reason (a provider without idempotency cannot give both
  at-least-once and at-most-once, and a duplicate SMS or charge is the worse failure).

Every state change appends a `message_transitions` row with its time and reason.
"""

from __future__ import annotations

import logging
import random
import time
from collections import defaultdict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import make_transient_to_detached

from loyalty.db import constant, db, upsert_insert
from loyalty.errors import InvalidInput, NotFound
from loyalty.members.models import IdentityKind, Member, MemberIdentity
from notifications import policies, ratelimit, templates
from notifications.consent import ConsentSource, Purpose, person_of, record_consent
from notifications.models import DUE_STATES, Message, MessageState, MessageTransition
from notifications.providers.base import (
    Channel,
    Outcome,
    OutgoingMessage,
    Provider,
    SendResult,
)

log = logging.getLogger(__name__)

URGENT_TEMPLATES = frozenset({"login_code"})  # never held back by quiet hours
PREVIEW_MEMBER = "preview_member_id"  # variables of a test send: whose data it renders
MAX_DEDUPE_KEY = 200
MAX_REASON = 300
RETRY_BASE = timedelta(seconds=30)
RETRY_CAP = timedelta(hours=1)

# --- hooks other modules register (push subscriptions, unsubscribe links) ---------------------

Resolver = Callable[[int], str | None]  # person id -> destination, or None
GoneHandler = Callable[[int | None, str, datetime], None]  # member, destination, now
OutgoingHook = Callable[[Message, OutgoingMessage], OutgoingMessage]

_resolvers: dict[Channel, Resolver] = {}
_gone_handlers: dict[Channel, list[GoneHandler]] = defaultdict(list)
_outgoing_hooks: list[OutgoingHook] = []


def destination_resolver(channel: Channel) -> Callable[[Resolver], Resolver]:
    """Register how a channel finds a member's destination (push: a subscription's JSON).
    SMS and email default to the member's phone and email identities."""

    def register(func: Resolver) -> Resolver:
        _resolvers[Channel(channel)] = func
        return func

    return register


def on_gone(channel: Channel) -> Callable[[GoneHandler], GoneHandler]:
    """Register the owner of a channel's destinations: told when the provider says one no
    longer exists (push 404/410), in the recording transaction, so it can remove it."""

    def register(func: GoneHandler) -> GoneHandler:
        _gone_handlers[Channel(channel)].append(func)
        return func

    return register


def outgoing_hook(func: OutgoingHook) -> OutgoingHook:
    """Adjust each message before it goes out (signed unsubscribe URL, status callback)."""
    _outgoing_hooks.append(func)
    return func


# --- queueing ---------------------------------------------------------------------------------


def _transition(
    message_id: int,
    to_state: MessageState,
    reason: str | None,
    now: datetime,
    *,
    from_states: tuple[str, ...],
    where: Any = None,
    **values: Any,
) -> bool:
    """Move a message to `to_state` if it is in one of `from_states` (a conditional UPDATE:
    two workers can't both move it), and append the transition. True if it moved."""
    reason = reason[:MAX_REASON] if reason else None
    table = Message.__table__
    condition = table.c.state.in_([constant(s) for s in from_states])
    if where is not None:
        condition = sa.and_(condition, where)
    moved = db.session.execute(
        sa.update(table)
        .where(table.c.id == message_id, condition)
        .values(state=to_state.value, reason=reason, updated_at=now, **values)
        .returning(table.c.state)
    ).first()
    if moved is None:
        return False
    db.session.execute(
        sa.insert(MessageTransition.__table__).values(
            message_id=message_id, to_state=to_state.value, reason=reason, at=now
        )
    )
    return True


def queue_message(
    *,
    member_id: int | None,
    channel: Channel,
    template: str,
    purpose: Purpose,
    dedupe_key: str,
    variables: Mapping[str, Any],
    now: datetime,
    destination: str | None = None,
) -> Message | None:
    """Insert a queued message in the caller's transaction; None when a message with this
    dedupe key already exists (the cause produced it before: at most once).

    `variables` are ids and amounts (no personal data); the member's contact, name and
    the rendered text are read when the message is sent. `destination` overrides the
    member's contact (login codes to a number, test sends)."""
    channel, purpose = Channel(channel), Purpose(purpose)
    if member_id is None and destination is None:
        raise InvalidInput("a message needs a member or a destination")
    if not 1 <= len(dedupe_key) <= MAX_DEDUPE_KEY:
        raise InvalidInput(f"a dedupe key has 1-{MAX_DEDUPE_KEY} characters")
    table = Message.__table__
    statement = (
        upsert_insert(table)
        .values(
            member_id=member_id,
            channel=channel.value,
            template=template,
            purpose=purpose.value,
            dedupe_key=dedupe_key,
            variables=dict(variables),
            destination_override=destination,
            state=MessageState.QUEUED.value,
            attempts=0,
            next_attempt_at=now,
            created_at=now,
            updated_at=now,
        )
        .on_conflict_do_nothing(index_elements=["dedupe_key"])
        .returning(*table.c)
    )
    row = db.session.execute(statement).mappings().first()
    if row is None:
        return None
    db.session.execute(
        sa.insert(MessageTransition.__table__).values(
            message_id=row["id"], to_state="queued", reason="queued", at=now
        )
    )
    # The row as inserted, as a persistent object, without reading it back.
    message = Message(**row)
    make_transient_to_detached(message)
    db.session.add(message)
    return message


def record_provider_event(
    message_id: int, state: str, *, reason: str | None, now: datetime
) -> bool:
    """A provider's status callback: `delivered` or `failed` (undelivered) for a message we
    sent. Late or repeated callbacks never move a message backwards. True if it moved."""
    if state == MessageState.DELIVERED.value:
        return _transition(
            message_id,
            MessageState.DELIVERED,
            reason or "delivered (provider receipt)",
            now,
            from_states=(MessageState.SENDING.value, MessageState.SENT.value),
            delivered_at=now,
        )
    if state == MessageState.FAILED.value:
        return _transition(
            message_id,
            MessageState.FAILED,
            reason or "undelivered (provider receipt)",
            now,
            from_states=(MessageState.SENDING.value, MessageState.SENT.value),
            failed_at=now,
        )
    raise InvalidInput(f"a provider event is 'delivered' or 'failed', not {state!r}")


# --- providers --------------------------------------------------------------------------------


def build_providers(settings: Any) -> dict[Channel, Provider]:
    """Providers per channel from settings (notifications/providers/factory.py, when
    present); every channel without one records instead of sending (the embedded default)."""
    from notifications.providers.recording import RecordingProvider

    configured: dict[Channel, Provider] = {}
    try:
        from notifications.providers.factory import providers_for  # type: ignore[import-not-found]
    except ImportError:
        providers_for = None
    if providers_for is not None:
        configured = dict(providers_for(settings))
    delay = settings.notify_recording_delay_ms / 1000
    for channel in Channel:
        configured.setdefault(channel, RecordingProvider(channel, delay_seconds=delay))
    return configured


# --- sending ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Claimed:
    message_id: int
    attempts: int  # the attempt this claim is: a late record for an older one is ignored
    member_id: int | None
    outgoing: OutgoingMessage
    provider: Provider = field(compare=False)


@dataclass
class SendStats:
    sent: int = 0
    retried: int = 0
    failed: int = 0
    suppressed: int = 0
    deferred: int = 0
    recovered: int = 0
    rate_limited: int = 0


def contacts(person_id: int) -> dict[Channel, str]:
    """The member's SMS and email destinations (latest of each kind), in one read."""
    rows = db.session.execute(
        sa.select(MemberIdentity.kind, MemberIdentity.value)
        .where(
            MemberIdentity.member_id == person_id,
            MemberIdentity.kind.in_([IdentityKind.PHONE.value, IdentityKind.EMAIL.value]),
        )
        .order_by(MemberIdentity.id)
    ).all()
    found = {
        Channel.SMS if kind == IdentityKind.PHONE.value else Channel.EMAIL: value
        for kind, value in rows
    }
    for channel, resolver in _resolvers.items():
        value = resolver(person_id)
        if value is None:
            found.pop(channel, None)
        else:
            found[channel] = value
    return found


def _identity(person_id: int, kind: IdentityKind) -> str | None:
    return db.session.scalar(
        sa.select(MemberIdentity.value)
        .where(MemberIdentity.member_id == person_id, MemberIdentity.kind == kind.value)
        .order_by(MemberIdentity.id.desc())
        .limit(1)
    )


def member_destination(person_id: int, channel: Channel) -> str | None:
    """Where the member is reached on `channel` now (None: not reachable there)."""
    channel = Channel(channel)
    if channel in _resolvers:
        return _resolvers[channel](person_id)
    if channel is Channel.SMS:
        return _identity(person_id, IdentityKind.PHONE)
    if channel is Channel.EMAIL:
        return _identity(person_id, IdentityKind.EMAIL)
    return None


def template_variables(
    message: Message,
    person: Member | None,
    now: datetime,
    needs: frozenset[str] | None = None,
) -> dict[str, Any]:
    """What a template sees: the message's own variables plus member, balance, tier,
    coupon, offer and store, read now (plain dicts; never ORM objects in a sandbox)."""
    from loyalty.coupons.models import CouponCode, CouponOffer
    from loyalty.ledger.operations import member_balance
    from loyalty.stores.models import Store
    from loyalty.tiers.models import Tier

    values: dict[str, Any] = dict(message.variables or {})
    values["now"] = now.isoformat()
    if person is not None:
        values["member"] = {
            "id": person.id,
            "name": person.name,
            "locale": person.locale,
            "timezone": person.timezone,
        }
        # Read only what the template uses (every read is a round trip per message).
        if needs is None or "balance" in needs:
            try:
                values["balance"] = member_balance(person.id).balance
            except NotFound:  # no ledger accounts yet
                values["balance"] = 0
        if needs is None or "tier" in needs:
            tier = db.session.get(Tier, person.tier_id) if person.tier_id else None
            values.setdefault("tier", {"code": tier.code, "name": tier.name} if tier else None)
    else:
        values.setdefault("member", {})
    if isinstance(values.get("tier_code"), str):
        tier = db.session.scalar(sa.select(Tier).where(Tier.code == values["tier_code"]))
        if tier is not None:
            values["tier"] = {"code": tier.code, "name": tier.name}
    if isinstance(values.get("coupon_id"), int):
        code = db.session.get(CouponCode, values["coupon_id"])
        if code is not None:
            values["coupon"] = {
                "code": code.code,
                "expires_at": code.expires_at.isoformat() if code.expires_at else None,
            }
            values.setdefault("offer_id", code.offer_id)
    if isinstance(values.get("offer_id"), int):
        offer = db.session.get(CouponOffer, values["offer_id"])
        if offer is not None:
            values["offer"] = {"id": offer.id, "name": offer.name}
    if isinstance(values.get("store_id"), str):
        store = db.session.get(Store, values["store_id"])
        if store is not None:
            values["store"] = {"id": store.id, "name": store.name}
    return values


def _preview_member(message: Message) -> Member | None:
    member_id = (message.variables or {}).get(PREVIEW_MEMBER)
    if not isinstance(member_id, int):
        return None
    return person_of(member_id)


def render_for_member(
    key: str,
    channel: Channel,
    *,
    member_id: int,
    variables: Mapping[str, Any],
    now: datetime,
    locale: str | None = None,
    source: str | None = None,
) -> tuple[templates.ResolvedTemplate, templates.Rendered]:
    """Render a template (stored, shipped, or a draft `source`) on a real member's data,
    as the send would: the admin preview."""
    from loyalty.members.operations import get_member

    person = get_member(member_id)
    locale = locale or person.locale or "en"
    channel = Channel(channel)
    if source is not None:
        templates.check_source(source, channel)
        resolved = templates.ResolvedTemplate(key, channel, locale, -1, source)
    else:
        resolved = templates.resolve(key, channel, locale)
    probe = Message(
        member_id=person.id, template=key, channel=channel.value, variables=dict(variables)
    )
    rendered = templates.render(
        resolved, template_variables(probe, person, now), locale=locale, timezone=person.timezone
    )
    return resolved, rendered


def queue_test_send(
    key: str,
    channel: Channel,
    *,
    member_id: int,
    to: str,
    variables: Mapping[str, Any],
    now: datetime,
    actor: str,
) -> Message:
    """Queue a test send of a template to `to`, rendered with a real member's data. It is
    not the member's message (no member id: their history and consent are not involved)."""
    import uuid

    from loyalty.members.operations import get_member

    person = get_member(member_id)
    channel = Channel(channel)
    templates.resolve(key, channel, person.locale)  # 404 now rather than a failed message
    message = queue_message(
        member_id=None,
        channel=channel,
        template=key,
        purpose=Purpose.TRANSACTIONAL,
        dedupe_key=f"test-send:{uuid.uuid4().hex}",
        variables={**variables, PREVIEW_MEMBER: person.id, "test_send_by": actor[:100]},
        now=now,
        destination=to,
    )
    assert message is not None  # a fresh dedupe key
    return message


def _is_urgent(message: Message) -> bool:
    return message.template in URGENT_TEMPLATES or message.destination_override is not None


def _prepare(
    message: Message,
    provider: Provider,
    now: datetime,
    stats: SendStats,
    memo: dict[Any, templates.ResolvedTemplate] | None = None,
) -> Claimed | None:
    """Resolve the destination and render; move the message to `sending`."""
    due = DUE_STATES
    person = person_of(message.member_id) if message.member_id is not None else None
    destination = message.destination_override
    if destination is None and person is not None:
        destination = member_destination(person.id, Channel(message.channel))
    if destination is None:
        _transition(
            message.id,
            MessageState.SUPPRESSED,
            f"no {message.channel} destination on file",
            now,
            from_states=due,
        )
        stats.suppressed += 1
        return None
    # A test send to an administrator's address renders with a real member's data.
    context_person = person or _preview_member(message)
    locale = (context_person.locale if context_person else None) or message.locale or "en"
    timezone = (context_person.timezone if context_person else None) or "UTC"
    try:
        resolved = templates.resolve(message.template, Channel(message.channel), locale, memo)
        rendered = templates.render(
            resolved,
            template_variables(message, context_person, now, templates.needs(resolved.source)),
            locale=locale,
            timezone=timezone,
        )
    except (NotFound, InvalidInput) as error:
        _transition(
            message.id, MessageState.FAILED, str(error), now, from_states=due, failed_at=now
        )
        stats.failed += 1
        return None
    attempts = message.attempts + 1
    moved = _transition(
        message.id,
        MessageState.SENDING,
        f"attempt {attempts} via {provider.name}",
        now,
        from_states=due,
        attempts=attempts,
        sending_since=now,
        destination=destination,
        subject=rendered.subject,
        body=rendered.body,
        html=rendered.html,
        sms_segments=rendered.sms_segments,
        template_version=resolved.version,
        locale=resolved.locale,
        provider=provider.name,
    )
    if not moved:
        return None
    outgoing = OutgoingMessage(
        message_id=message.id,
        channel=Channel(message.channel),
        to=destination,
        text=rendered.body,
        subject=rendered.subject,
        html=rendered.html,
        marketing=message.purpose == Purpose.MARKETING.value,
    )
    for hook in _outgoing_hooks:
        outgoing = hook(message, outgoing)
    return Claimed(message.id, attempts, message.member_id, outgoing, provider)


def claim_due(
    now: datetime,
    *,
    limit: int,
    settings: Any,
    providers: Mapping[Channel, Provider],
    redis: Any,
    stats: SendStats,
) -> tuple[list[Claimed], int]:
    """Claim up to `limit` due messages (the caller commits, then sends). Returns the
    claims and how many due messages this round looked at (0: nothing due is free)."""
    table = Message.__table__
    rows = db.session.scalars(
        sa.select(Message)
        .where(
            table.c.state.in_([constant(s) for s in DUE_STATES]),
            table.c.next_attempt_at <= now,
        )
        .order_by(table.c.next_attempt_at, table.c.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    ).all()
    if not rows:
        return [], 0
    # Tokens first, per provider, for as many messages as it has in this chunk: the ones
    # without a token stay queued, in order, for a later round (deferred, never dropped).
    budget: dict[Channel, int] = {}
    wanted: dict[Channel, int] = defaultdict(int)
    for message in rows:
        wanted[Channel(message.channel)] += 1
    for channel, count in wanted.items():
        provider = providers[channel]
        rate = settings.notify_rate_limits.get(provider.name) or settings.notify_rate_limits.get(
            channel.value
        )
        if rate is None:
            budget[channel] = count
        else:
            budget[channel] = ratelimit.take(redis, provider.name, count, rate=rate).granted
            stats.rate_limited += count - budget[channel]
    policy = policies.from_settings(settings)
    memo: dict[Any, templates.ResolvedTemplate] = {}  # one template lookup per chunk
    claimed = []
    for message in rows:
        channel = Channel(message.channel)
        if budget[channel] <= 0:
            continue
        verdict = policies.evaluate(
            member_id=message.member_id,
            channel=channel,
            purpose=Purpose(message.purpose),
            now=now,
            policy=policy,
            urgent=_is_urgent(message),
        )
        if verdict.action == "suppress":
            _transition(
                message.id, MessageState.SUPPRESSED, verdict.reason, now, from_states=DUE_STATES
            )
            stats.suppressed += 1
            continue
        if verdict.action == "defer":
            if (
                message.state != MessageState.DEFERRED.value
                or message.next_attempt_at != verdict.until
            ):
                _transition(
                    message.id,
                    MessageState.DEFERRED,
                    verdict.reason,
                    now,
                    from_states=DUE_STATES,
                    next_attempt_at=verdict.until,
                )
            stats.deferred += 1
            continue
        budget[channel] -= 1
        ready = _prepare(message, providers[channel], now, stats, memo)
        if ready is not None:
            claimed.append(ready)
    return claimed, len(rows)


def send(claimed: Claimed) -> SendResult:
    """Call the provider (no transaction is open). A provider raising is a transient
    failure: it is retried with backoff."""
    try:
        return claimed.provider.send(claimed.outgoing)
    except Exception as error:  # the provider's bug or a network error: retry, and log it
        log.warning(
            "provider %s raised on message %s",
            claimed.provider.name,
            claimed.message_id,
            exc_info=True,
        )
        return SendResult(Outcome.RETRY, reason=f"provider raised {type(error).__name__}")


def retry_delay(
    attempts: int, retry_after: float | None, rng: Callable[[], float] = random.random
) -> timedelta:
    """30 s doubling to 1 h, with equal jitter; never sooner than the provider asked."""
    ceiling = min(RETRY_CAP, RETRY_BASE * 2 ** min(max(attempts - 1, 0), 20))
    delay = ceiling / 2 + ceiling / 2 * rng()
    if retry_after:
        delay = max(delay, timedelta(seconds=retry_after))
    return delay


def _why(result: SendResult, default: str) -> str:
    parts = [p for p in (result.error_code, result.reason) if p]
    return ": ".join(parts) if parts else default


def record_result(
    claimed: Claimed, result: SendResult, now: datetime, *, max_attempts: int, stats: SendStats
) -> None:
    """Record what the provider said, if the message is still in our claim."""
    table = Message.__table__
    ours = table.c.attempts == claimed.attempts
    sending = (MessageState.SENDING.value,)
    outcome = result.outcome
    if outcome is Outcome.ACCEPTED:
        if _transition(
            claimed.message_id, MessageState.SENT, "accepted by the provider", now,
            from_states=sending, where=ours, sent_at=now, sending_since=None,
            provider_message_id=result.provider_message_id,
        ):  # fmt: skip
            stats.sent += 1
        return
    if outcome is Outcome.RETRY and claimed.attempts < max_attempts:
        why = f"retry: {_why(result, 'transient failure')}"
        if _transition(
            claimed.message_id, MessageState.DEFERRED, why, now,
            from_states=sending, where=ours, sending_since=None,
            next_attempt_at=now + retry_delay(claimed.attempts, result.retry_after_seconds),
        ):  # fmt: skip
            stats.retried += 1
        return
    if outcome is Outcome.RETRY:
        reason = f"gave up after {claimed.attempts} attempts: {_why(result, 'transient failure')}"
    elif outcome is Outcome.UNSUBSCRIBED:
        reason = f"recipient unsubscribed at the provider ({_why(result, 'opt-out')})"
    elif outcome is Outcome.GONE:
        reason = f"destination no longer exists ({_why(result, 'gone')})"
    else:
        reason = _why(result, "permanent failure")
    moved = _transition(
        claimed.message_id, MessageState.FAILED, reason, now,
        from_states=sending, where=ours, failed_at=now, sending_since=None,
    )  # fmt: skip
    if not moved:
        return
    stats.failed += 1
    channel = claimed.outgoing.channel
    if outcome is Outcome.UNSUBSCRIBED and claimed.member_id is not None:
        # The provider will refuse this destination from now on (SMS STOP blocks every
        # message from our sender): both purposes off, recorded as the provider's doing.
        for purpose in Purpose:
            record_consent(
                claimed.member_id, channel, purpose, False,
                source=ConsentSource.PROVIDER.value, now=now,
                actor=f"provider:{claimed.provider.name}", place=result.error_code,
            )  # fmt: skip
    if outcome is Outcome.GONE:
        for handler in _gone_handlers.get(channel, []):
            handler(claimed.member_id, claimed.outgoing.to, now)


def recover_orphans(
    now: datetime, *, lease: timedelta, providers: Mapping[Channel, Provider], limit: int = 500
) -> int:
    """Resolve messages left `sending` longer than the lease by a worker that died (see the
    module docstring). Returns how many were resolved. Commits per message."""
    table = Message.__table__
    stuck = db.session.execute(
        sa.select(table.c.id, table.c.channel, table.c.attempts)
        .where(
            table.c.state == constant(MessageState.SENDING.value),
            table.c.sending_since < now - lease,
        )
        .order_by(table.c.sending_since)
        .limit(limit)
    ).all()
    db.session.commit()  # no transaction open while we ask the provider
    resolved = 0
    for message_id, channel, attempts in stuck:
        provider = providers[Channel(channel)]
        ours = table.c.attempts == attempts
        sending = (MessageState.SENDING.value,)
        lookup = getattr(provider, "lookup", None)
        found = lookup(message_id) if lookup is not None else None
        if found is not None and found.outcome is Outcome.ACCEPTED:
            moved = _transition(
                message_id, MessageState.SENT, "worker died mid-send; the provider has it",
                now, from_states=sending, where=ours, sent_at=now, sending_since=None,
                provider_message_id=found.provider_message_id,
            )  # fmt: skip
        elif lookup is not None or getattr(provider, "idempotent", False):
            why = (
                "worker died mid-send; not at the provider: sending again"
                if lookup is not None
                else "worker died mid-send; the provider dedupes by message id: sending again"
            )
            moved = _transition(
                message_id, MessageState.DEFERRED, why, now,
                from_states=sending, where=ours, sending_since=None, next_attempt_at=now,
            )  # fmt: skip
        else:
            moved = _transition(
                message_id, MessageState.FAILED,
                "outcome unknown: worker died mid-send and the provider has no idempotency "
                "key; not sent again (at most once)",
                now, from_states=sending, where=ours, failed_at=now, sending_since=None,
            )  # fmt: skip
        db.session.commit()
        resolved += int(moved)
    return resolved


def send_due(
    *,
    settings: Any,
    providers: Mapping[Channel, Provider],
    redis: Any,
    clock: Callable[[], datetime],
    chunk: int = 100,
    time_budget: float = 50.0,
) -> SendStats:
    """Recover, then claim, send and record chunk after chunk until nothing is due (or
    only rate-limited messages are), or the time budget is spent. An edge: it commits."""
    stats = SendStats()
    deadline = time.monotonic() + time_budget
    stats.recovered = recover_orphans(
        clock(), lease=timedelta(seconds=settings.notify_sending_lease_seconds), providers=providers
    )
    while time.monotonic() < deadline:
        limited_before = stats.rate_limited
        claimed, looked_at = claim_due(
            clock(), limit=chunk, settings=settings, providers=providers, redis=redis, stats=stats
        )
        db.session.commit()
        for item in claimed:
            result = send(item)
            record_result(
                item, result, clock(), max_attempts=settings.notify_max_attempts, stats=stats
            )
            db.session.commit()
        if looked_at == 0:
            break  # nothing due, or every due message is another worker's claim
        if not claimed and stats.rate_limited > limited_before:
            break  # the rest waits for tokens: a later run continues at the provider's pace
    db.session.commit()
    return stats


__all__ = [
    "Claimed",
    "SendStats",
    "build_providers",
    "claim_due",
    "destination_resolver",
    "member_destination",
    "on_gone",
    "outgoing_hook",
    "queue_message",
    "record_provider_event",
    "record_result",
    "recover_orphans",
    "send",
    "send_due",
]
