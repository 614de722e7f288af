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
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import make_transient_to_detached

from loyalty.db import UTCDateTime, any_of, constant, db, is_postgres, upsert_insert
from loyalty.errors import InvalidInput, NotFound
from loyalty.members.models import IdentityKind, Member, MemberIdentity
from loyalty.members.resolution import lock_current_member, person_of
from notifications import policies, ratelimit, templates
from notifications.consent import ConsentSource, Purpose, record_consent
from notifications.models import DUE_STATES, Message, MessageState, MessageTransition
from notifications.providers.base import (
    Channel,
    Outcome,
    OutgoingMessage,
    Provider,
    SendResult,
    send_many,
)

log = logging.getLogger(__name__)

URGENT_TEMPLATES = frozenset({"login_code"})  # never held back by quiet hours
PREVIEW_MEMBER = "preview_member_id"  # variables of a test send: whose data it renders
TEST_SEND_MARKETING = "test_send_marketing"  # a test send shows the marketing opt-out line
MAX_DEDUPE_KEY = 200
MAX_REASON = 300
RETRY_BASE = timedelta(seconds=30)
RETRY_CAP = timedelta(hours=1)
SEND_CHUNK = 500  # messages claimed, sent (send_many) and recorded together

# --- hooks other modules register (push subscriptions, unsubscribe links) ---------------------

Resolver = Callable[[int], str | None]  # person id -> destination, or None
GoneHandler = Callable[[int | None, str, datetime], None]  # member, destination, now
OutgoingHook = Callable[[Message, OutgoingMessage], OutgoingMessage]

BulkResolver = Callable[[Collection[int]], dict[int, str]]  # person ids -> destinations
_resolvers: dict[Channel, Resolver] = {}
_bulk_resolvers: dict[Channel, BulkResolver] = {}
_gone_handlers: dict[Channel, list[GoneHandler]] = defaultdict(list)
_outgoing_hooks: list[OutgoingHook] = []


def destination_resolver(channel: Channel) -> Callable[[Resolver], Resolver]:
    """Register how a channel finds a member's destination (push: a subscription's JSON).
    SMS and email default to the member's phone and email identities."""

    def register(func: Resolver) -> Resolver:
        _resolvers[Channel(channel)] = func
        return func

    return register


def destination_resolver_many(channel: Channel) -> Callable[[BulkResolver], BulkResolver]:
    """Register the chunk form of a channel's resolver (many people in a few reads); the
    send job and the outbox consumer use it when present, else the one-person resolver."""

    def register(func: BulkResolver) -> BulkResolver:
        _bulk_resolvers[Channel(channel)] = func
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


@dataclass(frozen=True)
class Draft:
    """A message to create (see `queue_message` for what each field means)."""

    member_id: int | None
    channel: Channel
    template: str
    purpose: Purpose
    dedupe_key: str
    variables: Mapping[str, Any]
    destination: str | None = None


CREATE_CHUNK = 1000  # rows per INSERT (bound parameters stay far below every limit)


def create_messages(drafts: Sequence[Draft], now: datetime) -> dict[str, int]:
    """`queue_message` for many messages (a cause reaching many members, a chunk of
    outbox events, a campaign's fan-out) in the caller's transaction: one INSERT ... ON
    CONFLICT (dedupe_key) DO NOTHING and one INSERT of their `queued` transitions per
    CREATE_CHUNK drafts. Returns dedupe key -> id of the messages created; a draft whose
    dedupe key exists creates nothing (its cause produced it before)."""
    rows = []
    for draft in drafts:
        if draft.member_id is None and draft.destination is None:
            raise InvalidInput("a message needs a member or a destination")
        if not 1 <= len(draft.dedupe_key) <= MAX_DEDUPE_KEY:
            raise InvalidInput(f"a dedupe key has 1-{MAX_DEDUPE_KEY} characters")
        rows.append(
            {
                "member_id": draft.member_id,
                "channel": Channel(draft.channel).value,
                "template": draft.template,
                "purpose": Purpose(draft.purpose).value,
                "dedupe_key": draft.dedupe_key,
                "variables": dict(draft.variables),
                "destination_override": draft.destination,
                "state": MessageState.QUEUED.value,
                "attempts": 0,
                "next_attempt_at": now,
                "created_at": now,
                "updated_at": now,
            }
        )
    table = Message.__table__
    created: dict[str, int] = {}
    for start in range(0, len(rows), CREATE_CHUNK):
        part = rows[start : start + CREATE_CHUNK]
        # executemany with RETURNING: multi-row INSERTs from one cached compilation.
        created.update(
            (key, message_id)
            for message_id, key in db.session.execute(
                upsert_insert(table)
                .on_conflict_do_nothing(index_elements=["dedupe_key"])
                .returning(table.c.id, table.c.dedupe_key),
                part,
            )
        )
    if created:
        db.session.execute(
            sa.insert(MessageTransition.__table__),
            [
                {"message_id": i, "to_state": "queued", "reason": "queued", "at": now}
                for i in created.values()
            ],
        )
    return created


# A receipt settles a message the provider has, whatever we recorded of the call.
RECEIPT_STATES = (MessageState.SENDING.value, MessageState.DEFERRED.value, MessageState.SENT.value)


def record_provider_event(
    message_id: int,
    state: str,
    *,
    reason: str | None,
    now: datetime,
    provider_message_id: str | None = None,
) -> bool:
    """A provider's status callback: `sent`, `delivered` or `failed` (undelivered) for a
    message we sent. Late or repeated callbacks never move a message backwards. True if it
    moved. `sent` (the provider has it) only moves a message still `sending` or `deferred`:
    it settles a send whose worker died before recording it, which would otherwise be
    failed as "outcome unknown" after the lease (the provider can't be asked; its receipt
    can), and a send that timed out after the provider took it, which would otherwise be
    sent again at its retry (a receipt names our message id, so the provider has it).

    A receipt can beat the send job to the database: Twilio calls back within seconds,
    while the job is still at Twilio with the rest of its chunk, and finds the message
    `sending`. The receipt proves the provider accepted it, so it records what the job
    would have (`sent_at`, the provider's id; the job then leaves the message alone): the
    history and the marketing cap (which counts `sent_at`) see the send either way."""
    table = Message.__table__
    accepted = {
        "sent_at": sa.func.coalesce(table.c.sent_at, now),
        "sending_since": None,
        "provider_message_id": sa.func.coalesce(table.c.provider_message_id, provider_message_id),
    }
    if state == MessageState.SENT.value:
        return _transition(
            message_id,
            MessageState.SENT,
            reason or "sent (provider receipt)",
            now,
            from_states=(MessageState.SENDING.value, MessageState.DEFERRED.value),
            **accepted,
        )
    if state == MessageState.DELIVERED.value:
        return _transition(
            message_id,
            MessageState.DELIVERED,
            reason or "delivered (provider receipt)",
            now,
            from_states=RECEIPT_STATES,
            delivered_at=now,
            **accepted,
        )
    if state == MessageState.FAILED.value:
        return _transition(
            message_id,
            MessageState.FAILED,
            reason or "undelivered (provider receipt)",
            now,
            from_states=RECEIPT_STATES,
            failed_at=now,
            **accepted,
        )
    raise InvalidInput(f"a provider event is 'sent', 'delivered' or 'failed', not {state!r}")


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


def contacts_many(
    person_ids: Collection[int], channels: Collection[Channel] = tuple(Channel)
) -> dict[int, dict[Channel, str]]:
    """`contacts` for many people: one read of their phone and email identities, and each
    other channel through its bulk resolver (else its one-person resolver). Only
    `channels` are looked up."""
    found: dict[int, dict[Channel, str]] = {person: {} for person in person_ids}
    if not found:
        return found
    kinds = {Channel.SMS: IdentityKind.PHONE.value, Channel.EMAIL: IdentityKind.EMAIL.value}
    wanted_kinds = [kinds[c] for c in channels if c in kinds and c not in _resolvers]
    if wanted_kinds:
        for member_id, kind, value in db.session.execute(
            sa.select(MemberIdentity.member_id, MemberIdentity.kind, MemberIdentity.value)
            .where(any_of(MemberIdentity.member_id, found), MemberIdentity.kind.in_(wanted_kinds))
            .order_by(MemberIdentity.id)
        ):
            found[member_id][Channel.SMS if kind == IdentityKind.PHONE.value else Channel.EMAIL] = (
                value
            )
    for channel in channels:
        if channel in _bulk_resolvers:
            resolved = _bulk_resolvers[channel](list(found))
        elif channel in _resolvers:
            resolved = {p: v for p in found if (v := _resolvers[channel](p)) is not None}
        else:
            continue
        for person, destinations in found.items():
            if person in resolved:
                destinations[channel] = resolved[person]
            else:
                destinations.pop(channel, None)
    return found


def balances(person_ids: Collection[int]) -> dict[int, int]:
    """Each person's points balance (what `member_balance(...).balance` says) in one read."""
    from loyalty.ledger.models import AccountKind, LedgerAccount

    found: dict[int, int] = {}
    if not person_ids:
        return found
    for member_id, balance in db.session.execute(
        sa.select(LedgerAccount.member_id, LedgerAccount.balance).where(
            any_of(LedgerAccount.member_id, person_ids),
            LedgerAccount.kind.in_(
                [AccountKind.MEMBER_POINTS.value, AccountKind.MEMBER_DEBT.value]
            ),
        )
    ):
        found[member_id] = found.get(member_id, 0) + balance
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


@dataclass(frozen=True)
class References:
    """The tiers, coupons, offers and stores that messages' templates name, read once for
    a chunk of messages (plain dicts: templates never see ORM objects)."""

    tiers_by_id: dict[int, dict[str, Any]] = field(default_factory=dict)
    tiers_by_code: dict[str, dict[str, Any]] = field(default_factory=dict)
    coupons: dict[int, dict[str, Any]] = field(default_factory=dict)
    offers: dict[int, dict[str, Any]] = field(default_factory=dict)
    stores: dict[str, dict[str, Any]] = field(default_factory=dict)


def _ids_in(variable_sets: Sequence[Mapping[str, Any]], key: str, kind: type) -> set[Any]:
    return {v[key] for v in variable_sets if isinstance(v.get(key), kind)}


def read_references(
    variable_sets: Sequence[Mapping[str, Any]], tier_ids: Collection[int]
) -> References:
    """One read per kind for every message in `variable_sets` (their `tier_code`,
    `coupon_id`, `offer_id` and `store_id`) and the people's `tier_ids`."""
    from loyalty.coupons.models import CouponCode, CouponOffer
    from loyalty.stores.models import Store
    from loyalty.tiers.models import Tier

    def tier(row: Tier) -> dict[str, Any]:
        return {"code": row.code, "name": row.name}

    references = References()
    tier_codes = _ids_in(variable_sets, "tier_code", str)
    if tier_ids or tier_codes:
        for row in db.session.scalars(
            sa.select(Tier).where(sa.or_(any_of(Tier.id, tier_ids), any_of(Tier.code, tier_codes)))
        ):
            references.tiers_by_id[row.id] = references.tiers_by_code[row.code] = tier(row)
    offer_ids = _ids_in(variable_sets, "offer_id", int)
    coupon_ids = _ids_in(variable_sets, "coupon_id", int)
    if coupon_ids:
        for code in db.session.scalars(
            sa.select(CouponCode).where(any_of(CouponCode.id, coupon_ids))
        ):
            references.coupons[code.id] = {
                "code": code.code,
                "expires_at": code.expires_at.isoformat() if code.expires_at else None,
                "offer_id": code.offer_id,
            }
            offer_ids.add(code.offer_id)
    if offer_ids:
        offers = sa.select(CouponOffer).where(any_of(CouponOffer.id, offer_ids))
        for offer in db.session.scalars(offers):
            references.offers[offer.id] = {"id": offer.id, "name": offer.name}
    store_ids = _ids_in(variable_sets, "store_id", str)
    if store_ids:
        for store in db.session.scalars(sa.select(Store).where(any_of(Store.id, store_ids))):
            references.stores[store.id] = {"id": store.id, "name": store.name}
    return references


def template_variables(
    message: Message,
    person: Member | None,
    now: datetime,
    needs: frozenset[str] | None = None,
    balance: int | None = None,
    references: References | None = None,
) -> dict[str, Any]:
    """What a template sees: the message's own variables plus member, balance, tier,
    coupon, offer and store, read now (plain dicts; never ORM objects in a sandbox). A
    chunk passes its `balance` and `references`, read once for all its messages."""
    from loyalty.ledger.operations import member_balance

    values: dict[str, Any] = dict(message.variables or {})
    if references is None:
        tier_ids = [person.tier_id] if person is not None and person.tier_id else []
        references = read_references([values], tier_ids)
    values["now"] = now.isoformat()
    if person is not None:
        values["member"] = {
            "id": person.id,
            "name": person.name,
            "locale": person.locale,
            "timezone": person.timezone,
        }
        # Read only what the template uses (every read is a round trip per message).
        if balance is not None and (needs is None or "balance" in needs):
            values["balance"] = balance  # read for the whole chunk (`balances`)
        elif needs is None or "balance" in needs:
            try:
                values["balance"] = member_balance(person.id).balance
            except NotFound:  # no ledger accounts yet
                values["balance"] = 0
        if needs is None or "tier" in needs:
            values.setdefault("tier", references.tiers_by_id.get(person.tier_id))
    else:
        values.setdefault("member", {})
    if isinstance(values.get("tier_code"), str) and values["tier_code"] in references.tiers_by_code:
        values["tier"] = references.tiers_by_code[values["tier_code"]]
    if isinstance(values.get("coupon_id"), int) and values["coupon_id"] in references.coupons:
        coupon = references.coupons[values["coupon_id"]]
        values["coupon"] = {"code": coupon["code"], "expires_at": coupon["expires_at"]}
        values.setdefault("offer_id", coupon["offer_id"])
    if isinstance(values.get("offer_id"), int) and values["offer_id"] in references.offers:
        values["offer"] = references.offers[values["offer_id"]]
    if isinstance(values.get("store_id"), str) and values["store_id"] in references.stores:
        values["store"] = references.stores[values["store_id"]]
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
    marketing: bool = False,
) -> tuple[templates.ResolvedTemplate, templates.Rendered]:
    """Render a template (stored, shipped, or a draft `source`) on a real member's data,
    as the send would: the admin preview. `marketing`: with the opt-out line a marketing
    send adds (its link shown as a placeholder: a preview signs no unsubscribe token)."""
    from loyalty.members.resolution import get_member

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
    if marketing:
        rendered = templates.with_opt_out(rendered, channel, resolved.locale, _preview_link())
    return resolved, rendered


def _preview_link() -> str:
    from flask import current_app

    from notifications.unsubscribe import PATH

    base = current_app.extensions["omniloyal.settings"].public_base_url or ""
    return base + PATH.replace("<token>", "…")


def queue_test_send(
    key: str,
    channel: Channel,
    *,
    member_id: int,
    to: str,
    variables: Mapping[str, Any],
    now: datetime,
    actor: str,
    marketing: bool = False,
) -> Message:
    """Queue a test send of a template to `to`, rendered with a real member's data. It is
    not the member's message (no member id: their history and consent are not involved).
    `marketing`: it shows the marketing opt-out line (an SMS's reply STOP; a mail has no
    member's link to carry, so it goes without)."""
    import uuid

    from loyalty.members.resolution import get_member

    person = get_member(member_id)
    channel = Channel(channel)
    templates.resolve(key, channel, person.locale)  # 404 now rather than a failed message
    message = queue_message(
        member_id=None,
        channel=channel,
        template=key,
        purpose=Purpose.TRANSACTIONAL,
        dedupe_key=f"test-send:{uuid.uuid4().hex}",
        variables={
            **variables,
            PREVIEW_MEMBER: person.id,
            "test_send_by": actor[:100],
            **({TEST_SEND_MARKETING: True} if marketing else {}),
        },
        now=now,
        destination=to,
    )
    assert message is not None  # a fresh dedupe key
    return message


def _is_urgent(message: Message) -> bool:
    return message.template in URGENT_TEMPLATES or message.destination_override is not None


def _move_many(
    to_state: MessageState,
    changes: Sequence[dict[str, Any]],
    now: datetime,
    *,
    from_states: tuple[str, ...],
) -> None:
    """`_transition` for many messages whose rows this transaction holds (locked by the
    claim or by `_lock_ours`): one executemany UPDATE, one INSERT of the transitions.
    `changes`: {"id", "reason", **columns}, the same columns in each."""
    if not changes:
        return
    table = Message.__table__
    columns = [key for key in changes[0] if key not in ("id", "reason")]
    params = [
        {
            "m_id": change["id"],
            "m_reason": change["reason"][:MAX_REASON] if change["reason"] else None,
            **{f"m_{column}": change[column] for column in columns},
        }
        for change in changes
    ]
    states = table.c.state.in_(
        [sa.literal_column(f"'{MessageState(s).value}'") for s in from_states]
    )
    if is_postgres():
        _move_set_based(to_state, params, ["id", "reason", *columns], now, states)
    else:
        statement = (
            sa.update(table)
            .where(table.c.id == sa.bindparam("m_id"), states)
            .values(
                state=to_state.value,
                updated_at=now,
                reason=sa.bindparam("m_reason"),
                **{column: sa.bindparam(f"m_{column}") for column in columns},
            )
        )
        db.session.execute(statement, params)
    db.session.execute(
        sa.insert(MessageTransition.__table__),
        [
            {"message_id": p["m_id"], "to_state": to_state.value, "reason": p["m_reason"],
             "at": now}
            for p in params
        ],
    )  # fmt: skip


def _array_type(column: sa.Column[Any]) -> Any:
    from sqlalchemy.dialects import postgresql

    if isinstance(column.type, sa.Integer) or column.name == "id":
        return postgresql.ARRAY(postgresql.BIGINT)
    if isinstance(column.type, UTCDateTime):
        return postgresql.ARRAY(postgresql.TIMESTAMP(timezone=True))
    return postgresql.ARRAY(postgresql.TEXT)


def _move_set_based(
    to_state: MessageState,
    params: Sequence[dict[str, Any]],
    columns: Sequence[str],
    now: datetime,
    states: Any,
) -> None:
    """PostgreSQL: the chunk's moves as ONE UPDATE ... FROM unnest(arrays) (an executemany
    runs one UPDATE per row on the server); a column with one value for the whole chunk
    is written as a constant."""
    table = Message.__table__
    constants: dict[str, Any] = {}
    varying = ["id"]
    for column in columns[1:]:
        values = {repr(p[f"m_{column}"]) for p in params}
        if len(values) == 1:
            constants[column] = params[0][f"m_{column}"]
        else:
            varying.append(column)
    rows = sa.select(
        *[
            sa.func.unnest(sa.bindparam(f"a_{c}", type_=_array_type(table.c[c]))).label(c)
            for c in varying
        ]
    ).subquery("chunk")
    db.session.execute(
        sa.update(table)
        .where(table.c.id == rows.c.id, states)
        .values(
            state=to_state.value,
            updated_at=now,
            **constants,
            **{c: rows.c[c] for c in varying if c != "id"},
        ),
        {f"a_{c}": [p[f"m_{c}"] for p in params] for c in varying},
    )


@dataclass
class _Chunk:
    """What a claimed chunk's messages need, read once for the chunk."""

    people: dict[int, Member]
    destinations: dict[int, dict[Channel, str]]
    balances: dict[int, int]
    references: References
    templates: dict[Any, templates.ResolvedTemplate] = field(default_factory=dict)


def _read_chunk(messages: Sequence[Message], people: dict[int, Member]) -> _Chunk:
    persons = {person.id for person in people.values()}
    channels = {Channel(m.channel) for m in messages if m.destination_override is None}
    return _Chunk(
        people=people,
        destinations=contacts_many(persons, channels) if channels else {},
        balances=balances(persons),
        references=read_references(
            [m.variables or {} for m in messages],
            {person.tier_id for person in people.values() if person.tier_id},
        ),
    )


def _prepare_chunk(
    messages: Sequence[Message],
    providers: Mapping[Channel, Provider],
    now: datetime,
    chunk: _Chunk,
    stats: SendStats,
) -> list[Claimed]:
    """Resolve each message's destination and render it; move the chunk to `sending` in
    one executemany (those without a destination: `suppressed`; a template that fails:
    `failed`). The rows are locked by the claim, so every move lands."""
    sending, suppressed, failed = [], [], []
    claimed = []
    for message in messages:
        provider = providers[Channel(message.channel)]
        person = chunk.people.get(message.member_id) if message.member_id is not None else None
        destination = message.destination_override
        if destination is None and person is not None:
            destination = chunk.destinations.get(person.id, {}).get(Channel(message.channel))
        if destination is None:
            suppressed.append(
                {"id": message.id, "reason": f"no {message.channel} destination on file"}
            )
            continue
        # A test send to an administrator's address renders with a real member's data.
        context_person = person or _preview_member(message)
        locale = (context_person.locale if context_person else None) or message.locale or "en"
        timezone = (context_person.timezone if context_person else None) or "UTC"
        try:
            resolved = templates.resolve(
                message.template, Channel(message.channel), locale, chunk.templates
            )
            balance = chunk.balances.get(person.id, 0) if person is not None else None
            rendered = templates.render(
                resolved,
                template_variables(
                    message,
                    context_person,
                    now,
                    templates.needs(resolved.source),
                    balance,
                    chunk.references,
                ),
                locale=locale,
                timezone=timezone,
            )
        except (NotFound, InvalidInput) as error:
            failed.append({"id": message.id, "reason": str(error), "failed_at": now})
            continue
        attempts = message.attempts + 1
        outgoing = OutgoingMessage(
            message_id=message.id,
            channel=Channel(message.channel),
            to=destination,
            text=rendered.body,
            subject=rendered.subject,
            html=rendered.html,
            marketing=message.purpose == Purpose.MARKETING.value,
            member_id=person.id if person is not None else None,
        )
        for hook in _outgoing_hooks:
            outgoing = hook(message, outgoing)
        if outgoing.marketing or (message.variables or {}).get(TEST_SEND_MARKETING) is True:
            # after the hooks: the email line carries the unsubscribe link they add; added
            # to what is kept and to what goes out (a hook may have filled in the text)
            footer = (outgoing.channel, resolved.locale, outgoing.unsubscribe_url)
            rendered = templates.with_opt_out(rendered, *footer)
            out = templates.Rendered(None, outgoing.text, outgoing.html, None)
            out = templates.with_opt_out(out, *footer)
            outgoing = replace(outgoing, text=out.body, html=out.html)
        sending.append(
            {
                "id": message.id,
                "reason": f"attempt {attempts} via {provider.name}",
                "attempts": attempts,
                "sending_since": now,
                "destination": destination,
                "subject": rendered.subject,
                "body": rendered.body,
                "html": rendered.html,
                "sms_segments": rendered.sms_segments,
                "template_version": resolved.version,
                "locale": resolved.locale,
                "provider": provider.name,
            }
        )
        claimed.append(Claimed(message.id, attempts, message.member_id, outgoing, provider))
    _move_many(MessageState.SUPPRESSED, suppressed, now, from_states=DUE_STATES)
    _move_many(MessageState.FAILED, failed, now, from_states=DUE_STATES)
    _move_many(MessageState.SENDING, sending, now, from_states=DUE_STATES)
    stats.suppressed += len(suppressed)
    stats.failed += len(failed)
    return claimed


def claim_due(
    now: datetime,
    *,
    limit: int,
    settings: Any,
    providers: Mapping[Channel, Provider],
    redis: Any,
    stats: SendStats,
) -> list[Claimed] | None:
    """Claim up to `limit` due messages as one chunk (the caller commits, then sends):
    one SELECT ... FOR UPDATE SKIP LOCKED, the policies judged for the whole chunk, the
    provider's tokens taken, the chunk's people, destinations and balances read once, and
    every state change written in bulk. Returns the claims (perhaps [] when every message
    looked at was suppressed, deferred or waits for tokens), or None when no due message is
    free (nothing due, or all of it another worker's claim)."""
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
        return None
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
    judge = policies.Evaluator(
        ((m.member_id, Purpose(m.purpose)) for m in rows),
        now=now,
        policy=policies.from_settings(settings),
    )
    suppressed, deferred, to_send = [], [], []
    for message in rows:
        channel = Channel(message.channel)
        if budget[channel] <= 0:
            continue
        verdict = judge(
            member_id=message.member_id,
            channel=channel,
            purpose=Purpose(message.purpose),
            urgent=_is_urgent(message),
        )
        if verdict.action == "suppress":
            suppressed.append({"id": message.id, "reason": verdict.reason})
            continue
        if verdict.action == "defer":
            if (
                message.state != MessageState.DEFERRED.value
                or message.next_attempt_at != verdict.until
            ):
                deferred.append(
                    {"id": message.id, "reason": verdict.reason, "next_attempt_at": verdict.until}
                )
            stats.deferred += 1
            continue
        budget[channel] -= 1
        to_send.append(message)
    _move_many(MessageState.SUPPRESSED, suppressed, now, from_states=DUE_STATES)
    _move_many(MessageState.DEFERRED, deferred, now, from_states=DUE_STATES)
    stats.suppressed += len(suppressed)
    if not to_send:
        return []
    return _prepare_chunk(to_send, providers, now, _read_chunk(to_send, judge.people), stats)


def send_chunk(claims: Sequence[Claimed]) -> list[SendResult]:
    """Call the providers (no transaction is open): each provider's messages of the chunk
    in one `send_many`. Results in the order of `claims`. A provider raising is a
    transient failure: retried with backoff."""
    results: list[SendResult | None] = [None] * len(claims)
    by_provider: dict[int, list[int]] = defaultdict(list)
    for position, claim_ in enumerate(claims):
        by_provider[id(claim_.provider)].append(position)
    for positions in by_provider.values():
        provider = claims[positions[0]].provider
        answers = send_many(provider, [claims[p].outgoing for p in positions])
        for position, answer in zip(positions, answers, strict=True):
            results[position] = answer
    return [result for result in results if result is not None]


def send(claimed: Claimed) -> SendResult:
    """One claimed message through its provider (no transaction open)."""
    return send_chunk([claimed])[0]


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


def _lock_ours(claims: Sequence[Claimed]) -> set[int]:
    """The claimed messages still in our claim (`sending`, the attempt we made), locked
    until the commit: one statement for the chunk. A message another worker recovered
    after our lease ran out is not ours any more and is left alone."""
    if not claims:
        return set()
    table = Message.__table__
    query = sa.select(table.c.id, table.c.attempts).where(
        any_of(table.c.id, [c.message_id for c in claims]),
        table.c.state == constant(MessageState.SENDING.value),
    )
    if is_postgres():
        query = query.with_for_update()
    current = dict(db.session.execute(query).all())
    return {c.message_id for c in claims if current.get(c.message_id) == c.attempts}


def record_results(
    claims: Sequence[Claimed],
    results: Sequence[SendResult],
    now: datetime,
    *,
    max_attempts: int,
    stats: SendStats,
) -> None:
    """Record what the providers said for a chunk, where the messages are still in our
    claim: one lock of the chunk, then each outcome's moves in bulk; consent revoked and
    `on_gone` hooks told per message concerned (rare)."""
    # Lock order: a person before their messages, so an opt-out can't race a merge.
    for member_id in sorted(
        {c.member_id for c, r in zip(claims, results, strict=True)
         if r.outcome is Outcome.UNSUBSCRIBED and c.member_id is not None}
    ):  # fmt: skip
        lock_current_member(member_id)
    ours = _lock_ours(claims)
    sent, retried, failed = [], [], []
    unsubscribed, gone = [], []
    for claimed, result in zip(claims, results, strict=True):
        if claimed.message_id not in ours:
            continue
        outcome = result.outcome
        if outcome is Outcome.ACCEPTED:
            sent.append(
                {"id": claimed.message_id, "reason": "accepted by the provider", "sent_at": now,
                 "sending_since": None, "provider_message_id": result.provider_message_id}
            )  # fmt: skip
            continue
        if outcome is Outcome.RETRY and claimed.attempts < max_attempts:
            retried.append(
                {"id": claimed.message_id,
                 "reason": f"retry: {_why(result, 'transient failure')}",
                 "sending_since": None,
                 "next_attempt_at": now + retry_delay(claimed.attempts, result.retry_after_seconds)}
            )  # fmt: skip
            continue
        if outcome is Outcome.RETRY:
            why = _why(result, "transient failure")
            reason = f"gave up after {claimed.attempts} attempts: {why}"
        elif outcome is Outcome.UNSUBSCRIBED:
            reason = f"recipient unsubscribed at the provider ({_why(result, 'opt-out')})"
            unsubscribed.append((claimed, result))
        elif outcome is Outcome.GONE:
            reason = f"destination no longer exists ({_why(result, 'gone')})"
            gone.append(claimed)
        else:
            reason = _why(result, "permanent failure")
        failed.append(
            {"id": claimed.message_id, "reason": reason, "failed_at": now, "sending_since": None}
        )
    sending = (MessageState.SENDING.value,)
    _move_many(MessageState.SENT, sent, now, from_states=sending)
    _move_many(MessageState.DEFERRED, retried, now, from_states=sending)
    _move_many(MessageState.FAILED, failed, now, from_states=sending)
    stats.sent += len(sent)
    stats.retried += len(retried)
    stats.failed += len(failed)
    for claimed, result in unsubscribed:
        if claimed.member_id is None:
            continue
        # The provider will refuse this destination from now on (SMS STOP blocks every
        # message from our sender): both purposes off, recorded as the provider's doing.
        for purpose in Purpose:
            record_consent(
                claimed.member_id, claimed.outgoing.channel, purpose, False,
                source=ConsentSource.PROVIDER.value, now=now,
                actor=f"provider:{claimed.provider.name}", place=result.error_code,
            )  # fmt: skip
    for claimed in gone:
        for handler in _gone_handlers.get(claimed.outgoing.channel, []):
            handler(claimed.member_id, claimed.outgoing.to, now)


def record_result(
    claimed: Claimed, result: SendResult, now: datetime, *, max_attempts: int, stats: SendStats
) -> None:
    """Record what the provider said for one message, if it is still in our claim."""
    record_results([claimed], [result], now, max_attempts=max_attempts, stats=stats)


def release_claims(claims: Sequence[Claimed], now: datetime) -> None:
    """Give back claims this run will not send (its time budget is spent): due at once,
    and the attempt they were charged refunded (no commit)."""
    ours = _lock_ours(claims)
    _move_many(
        MessageState.DEFERRED,
        [
            {"id": c.message_id, "reason": "released unsent: the run's time budget was spent",
             "attempts": c.attempts - 1, "sending_since": None, "next_attempt_at": now}
            for c in claims
            if c.message_id in ours
        ],
        now,
        from_states=(MessageState.SENDING.value,),
    )  # fmt: skip


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
    chunk: int = SEND_CHUNK,
    time_budget: float = 50.0,
) -> SendStats:
    """Recover, then claim, send and record chunk after chunk until nothing is due (or
    only rate-limited messages are), or the time budget is spent. An edge: it commits.
    The loop is `loyalty.batches.run_claimed`: claim a chunk (commit), `send_many` per
    provider with no transaction open, record the chunk under the claim (commit)."""
    from loyalty.batches import run_claimed

    stats = SendStats()
    stats.recovered = recover_orphans(
        clock(), lease=timedelta(seconds=settings.notify_sending_lease_seconds), providers=providers
    )

    def claim() -> list[Claimed] | None:
        limited_before = stats.rate_limited
        claims = claim_due(
            clock(), limit=chunk, settings=settings, providers=providers, redis=redis, stats=stats
        )
        if claims == [] and stats.rate_limited > limited_before:
            return None  # the rest waits for tokens: a later run continues at the provider's pace
        return claims

    run_claimed(
        claim,
        send_chunk,
        lambda claims, results: record_results(
            claims, results, clock(), max_attempts=settings.notify_max_attempts, stats=stats
        ),
        release=lambda claims: release_claims(claims, clock()),
        deadline=time.monotonic() + time_budget,
    )
    db.session.commit()
    return stats


__all__ = [
    "Claimed",
    "Draft",
    "SendStats",
    "build_providers",
    "claim_due",
    "create_messages",
    "destination_resolver",
    "member_destination",
    "on_gone",
    "outgoing_hook",
    "queue_message",
    "record_provider_event",
    "record_result",
    "record_results",
    "recover_orphans",
    "send",
    "send_chunk",
    "send_due",
]
