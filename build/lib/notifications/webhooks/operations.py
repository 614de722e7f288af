"""Outgoing webhooks: subscriptions, the outbox consumer that queues deliveries, and the
delivery job that signs and sends them (see docs/architecture.md, "Outgoing webhooks").

    outbox relay -> consumer `notifications.webhooks` (in the relay's record transaction)
                    one `pending` delivery per active subscription to the topic,
                    UNIQUE (subscription, event): a redelivered event adds nothing
    deliver-webhooks job, round after round:
      1 claim   (commit)  due deliveries of active subscriptions, FOR UPDATE SKIP LOCKED,
                          attempts + 1, leased, a claim token; the URL and secrets read here
      2 POST              no transaction open; signed; connect/read timeouts
      3 record  (commit)  2xx -> succeeded; otherwise back off, or `failed` after the last
                          attempt (the subscription is disabled after too many in a row);
                          recorded only under the claim token
"""

from __future__ import annotations

import http.client
import json
import logging
import random
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from loyalty import outbox
from loyalty.clock import utcnow
from loyalty.db import constant, db, is_postgres, upsert_insert
from loyalty.errors import Conflict, InvalidInput, NotFound
from notifications.webhooks import signing, targets
from notifications.webhooks.models import (
    SubscriptionStatus,
    WebhookDelivery,
    WebhookDeliveryStatus,
    WebhookSubscription,
)

log = logging.getLogger(__name__)

CONSUMER = "notifications.webhooks"
# The outbox topics an integrator may subscribe to (every topic the service emits).
TOPICS = frozenset(
    {
        "member.enrolled",
        "member.updated",
        "member.blocked",
        "member.unblocked",
        "member.merged",
        "member.erased",
        "members.imported",
        "points.earned",
        "points.burned",
        "points.burn_reversed",
        "points.adjusted",
        "points.reversed",
        "points.released",
        "points.expired",
        "points.expiring",
        "points.merged",
        "points.merged_away",
        "tier.changed",
        "coupon.issued",
        "coupon.held",
        "coupon.redeemed",
        "coupon.rolled_back",
    }
)
WILDCARD = "*"
BACKOFF_BASE = timedelta(seconds=30)
BACKOFF_CAP = timedelta(hours=1)
LEASE = timedelta(minutes=5)  # far above the HTTP timeout: a live worker keeps its claims
CLAIM_CHUNK = 10  # x the HTTP timeout stays well inside the lease
TIME_BUDGET = 60.0  # seconds per job run; the next scheduled run continues
MAX_ERROR = 500
RETENTION = timedelta(days=30)  # finished deliveries stay visible this long


@dataclass(frozen=True)
class DeliveryPolicy:
    """From the settings: attempts per delivery, failed deliveries in a row before the
    subscription is disabled, the HTTP timeout, and whether private targets are allowed."""

    max_attempts: int
    disable_after: int
    timeout_seconds: float
    allow_private: bool


def policy_from(settings: Any) -> DeliveryPolicy:
    return DeliveryPolicy(
        max_attempts=settings.webhook_max_attempts,
        disable_after=settings.webhook_disable_after,
        timeout_seconds=settings.webhook_timeout_seconds,
        allow_private=settings.webhook_allow_private_targets,
    )


# --- subscriptions --------------------------------------------------------------------------


def check_topics(topics: list[str]) -> list[str]:
    unknown = sorted(set(topics) - TOPICS - {WILDCARD})
    if unknown:
        raise InvalidInput(
            f"unknown event type(s): {', '.join(unknown)}; known: {', '.join(sorted(TOPICS))}",
            field="topics",
        )
    return sorted(set(topics))


def create_subscription(
    *,
    url: str,
    topics: list[str],
    description: str | None,
    actor: str,
    now: datetime,
    allow_private: bool,
) -> WebhookSubscription:
    """A new active subscription with a fresh secret (the caller shows it once)."""
    subscription = WebhookSubscription(
        url=targets.check_url(url, allow_private=allow_private),
        topics=check_topics(topics),
        description=description,
        secret=signing.new_secret(),
        status=SubscriptionStatus.ACTIVE.value,
        consecutive_failures=0,
        created_by=actor,
        created_at=now,
        updated_at=now,
    )
    db.session.add(subscription)
    db.session.flush()
    return subscription


def get_subscription(subscription_id: int, *, lock: bool = False) -> WebhookSubscription:
    query = sa.select(WebhookSubscription).where(WebhookSubscription.id == subscription_id)
    if lock:
        query = query.with_for_update()
    found = db.session.scalar(query)
    if found is None:
        raise NotFound(f"no webhook subscription {subscription_id}")
    return found


def update_subscription(
    subscription_id: int, changes: dict[str, Any], *, now: datetime, allow_private: bool
) -> WebhookSubscription:
    """Change URL, topics, description or status. Enabling again starts the failure count
    afresh; its waiting deliveries go out again."""
    subscription = get_subscription(subscription_id, lock=True)
    if "url" in changes:
        subscription.url = targets.check_url(changes["url"], allow_private=allow_private)
    if "topics" in changes:
        subscription.topics = check_topics(changes["topics"])
    if "description" in changes:
        subscription.description = changes["description"]
    if "status" in changes and changes["status"] != subscription.status:
        subscription.status = changes["status"]
        subscription.consecutive_failures = 0
        subscription.disabled_reason = (
            "disabled by an operator" if changes["status"] == SubscriptionStatus.DISABLED else None
        )
    subscription.updated_at = now
    return subscription


def rotate_secret(
    subscription_id: int, *, keep_previous_for: timedelta, now: datetime
) -> WebhookSubscription:
    """A new secret (shown once). The previous one keeps signing beside it (a second v1)
    for `keep_previous_for`, so receivers can switch without missing a delivery."""
    subscription = get_subscription(subscription_id, lock=True)
    if keep_previous_for > timedelta(0):
        subscription.previous_secret = subscription.secret
        subscription.previous_secret_expires_at = now + keep_previous_for
    else:
        subscription.previous_secret = None
        subscription.previous_secret_expires_at = None
    subscription.secret = signing.new_secret()
    subscription.updated_at = now
    return subscription


def delete_subscription(subscription_id: int) -> None:
    """Remove the subscription and its deliveries (delivered or waiting)."""
    subscription = get_subscription(subscription_id, lock=True)
    db.session.execute(
        sa.delete(WebhookDelivery).where(WebhookDelivery.subscription_id == subscription.id)
    )
    db.session.delete(subscription)


def retry_delivery(delivery_id: int, *, now: datetime) -> WebhookDelivery:
    """Send a failed delivery again, with all its attempts (409 unless it failed)."""
    delivery = db.session.scalar(
        sa.select(WebhookDelivery).where(WebhookDelivery.id == delivery_id).with_for_update()
    )
    if delivery is None:
        raise NotFound(f"no webhook delivery {delivery_id}")
    if delivery.status != WebhookDeliveryStatus.FAILED:
        raise Conflict(f"webhook delivery {delivery_id} is {delivery.status}, not failed")
    delivery.status = WebhookDeliveryStatus.PENDING.value
    delivery.attempts = 0
    delivery.next_attempt_at = now
    delivery.done_at = None
    delivery.updated_at = now
    return delivery


# --- the outbox consumer --------------------------------------------------------------------


def event_body(event: outbox.Event) -> str:
    """What the receiver gets: the event's id, type, time and payload (ids and amounts,
    never personal data: a receiver that needs a contact reads it over the API)."""
    document = {
        "id": event.id,
        "type": event.topic,
        "occurred_at": event.occurred_at.isoformat(),
        "member_id": event.member_id,
        "data": event.payload,
    }
    return json.dumps(document, sort_keys=True, separators=(",", ":"))


def queue_deliveries(event: outbox.Event, now: datetime) -> int:
    """One pending delivery per active subscription to the event's topic (no commit). A
    second call for the same event adds nothing (UNIQUE (subscription, event))."""
    subscriptions = db.session.execute(
        sa.select(WebhookSubscription.id, WebhookSubscription.topics).where(
            WebhookSubscription.status == constant(SubscriptionStatus.ACTIVE.value)
        )
    ).all()
    wanted = [row.id for row in subscriptions if {event.topic, WILDCARD} & set(row.topics)]
    if not wanted:
        return 0
    body = event_body(event)
    rows = [
        {
            "subscription_id": subscription_id,
            "event_id": event.id,
            "topic": event.topic,
            "body": body,
            "status": WebhookDeliveryStatus.PENDING.value,
            "attempts": 0,
            "next_attempt_at": now,
            "created_at": now,
            "updated_at": now,
        }
        for subscription_id in wanted
    ]
    table = WebhookDelivery.__table__
    result = db.session.execute(
        upsert_insert(table).on_conflict_do_nothing(index_elements=["subscription_id", "event_id"]),
        rows,
    )
    return max(result.rowcount or 0, 0)


@outbox.consumer(*sorted(TOPICS), name=CONSUMER)
def on_event(event: outbox.Event) -> None:
    """Queue the event's deliveries; they commit with the relay's `done` record. No HTTP
    here: the sends happen in the deliver-webhooks job, each with its own retries."""
    queue_deliveries(event, utcnow())


# --- the delivery job -----------------------------------------------------------------------


@dataclass(frozen=True)
class Claim:
    delivery_id: int
    token: str
    attempts: int
    subscription_id: int
    event_id: int
    url: str
    body: str
    secrets: tuple[str, ...]


@dataclass
class DeliveryStats:
    succeeded: int = 0
    retrying: int = 0
    failed: int = 0
    disabled: int = 0
    lost: int = 0

    @property
    def worked(self) -> int:
        return self.succeeded + self.retrying + self.failed + self.lost


def backoff_delay(attempts: int, rng: Callable[[], float] = random.random) -> timedelta:
    """30 s, 1 min, 2 min ... capped at 1 h, with equal jitter (half fixed, half random)."""
    ceiling = min(BACKOFF_CAP, BACKOFF_BASE * 2 ** min(max(attempts - 1, 0), 20))
    return ceiling / 2 + ceiling / 2 * rng()


def claim(now: datetime, *, limit: int = CLAIM_CHUNK) -> list[Claim]:
    """Claim up to `limit` due deliveries of active subscriptions (no commit)."""
    d = WebhookDelivery.__table__
    s = WebhookSubscription.__table__
    due = (
        sa.select(d.c.id)
        .join(s, s.c.id == d.c.subscription_id)
        .where(
            d.c.status == constant(WebhookDeliveryStatus.PENDING.value),
            d.c.next_attempt_at <= now,
            s.c.status == constant(SubscriptionStatus.ACTIVE.value),
        )
        .order_by(d.c.next_attempt_at, d.c.id)
        .limit(limit)
    )
    if is_postgres():
        due = due.with_for_update(of=d, skip_locked=True)
    token = secrets.token_hex(16)
    claimed = db.session.execute(
        sa.update(d)
        .where(d.c.id.in_(due.scalar_subquery()))
        .values(
            attempts=d.c.attempts + 1,
            next_attempt_at=now + LEASE,
            claim_token=token,
            updated_at=now,
        )
        .returning(d.c.id, d.c.attempts, d.c.subscription_id, d.c.event_id, d.c.body)
    ).all()
    if not claimed:
        return []
    subscriptions = {
        row.id: row
        for row in db.session.execute(
            sa.select(s).where(s.c.id.in_({row.subscription_id for row in claimed}))
        )
    }
    found = []
    for row in sorted(claimed, key=lambda r: r.id):
        sub = subscriptions[row.subscription_id]
        signing_secrets = [sub.secret]
        if sub.previous_secret and (sub.previous_secret_expires_at or now) > now:
            signing_secrets.append(sub.previous_secret)
        found.append(
            Claim(
                row.id,
                token,
                row.attempts,
                sub.id,
                row.event_id,
                sub.url,
                row.body,
                tuple(signing_secrets),
            )
        )
    return found


@dataclass(frozen=True)
class Attempt:
    """The outcome of one POST: a status and body from the receiver, or an error."""

    status_code: int | None
    response_body: str | None
    error: str | None

    @property
    def succeeded(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


def send(claim_: Claim, policy: DeliveryPolicy, *, now_unix: float | None = None) -> Attempt:
    """Sign and POST one delivery. Called with no transaction open."""
    body = claim_.body.encode()
    timestamp = int(time.time() if now_unix is None else now_unix)
    headers = {
        signing.HEADER: signing.signature_header(list(claim_.secrets), timestamp, body),
        "Omniloyal-Event-Id": str(claim_.event_id),
        "Omniloyal-Delivery-Id": str(claim_.delivery_id),
    }
    try:
        answer = targets.post(
            claim_.url,
            body,
            headers,
            timeout=policy.timeout_seconds,
            allow_private=policy.allow_private,
        )
    except (OSError, http.client.HTTPException, targets.UnsafeTarget, ValueError) as error:
        # Refused, reset, timed out, TLS failure, not HTTP at all: a failed attempt.
        return Attempt(None, None, f"{type(error).__name__}: {error}"[:MAX_ERROR])
    error = None if 200 <= answer.status < 300 else f"HTTP {answer.status}"
    return Attempt(answer.status, answer.body, error)


def record(
    claim_: Claim,
    attempt: Attempt,
    now: datetime,
    policy: DeliveryPolicy,
    stats: DeliveryStats,
    rng: Callable[[], float] = random.random,
) -> None:
    """Record one attempt under the claim token (no commit)."""
    d = WebhookDelivery.__table__
    common = {
        "claim_token": None,
        "last_attempt_at": now,
        "last_status_code": attempt.status_code,
        "last_response_body": attempt.response_body,
        "last_error": attempt.error,
        "updated_at": now,
    }
    if attempt.succeeded:
        status, values = WebhookDeliveryStatus.SUCCEEDED, {"done_at": now}
    elif claim_.attempts >= policy.max_attempts:
        status, values = WebhookDeliveryStatus.FAILED, {"done_at": now}
    else:
        status = WebhookDeliveryStatus.PENDING
        values = {"next_attempt_at": now + backoff_delay(claim_.attempts, rng)}
    moved = db.session.execute(
        sa.update(d)
        .where(
            d.c.id == claim_.delivery_id,
            d.c.claim_token == claim_.token,
            d.c.status == constant(WebhookDeliveryStatus.PENDING.value),
        )
        .values(status=status.value, **common, **values)
    ).rowcount
    if moved != 1:
        stats.lost += 1
        return
    if status == WebhookDeliveryStatus.PENDING:
        stats.retrying += 1
    elif status == WebhookDeliveryStatus.SUCCEEDED:
        stats.succeeded += 1
        _count_failure(claim_.subscription_id, reset=True, now=now, policy=policy)
    else:
        stats.failed += 1
        if _count_failure(claim_.subscription_id, reset=False, now=now, policy=policy):
            stats.disabled += 1


def _count_failure(
    subscription_id: int, *, reset: bool, now: datetime, policy: DeliveryPolicy
) -> bool:
    """A success resets the subscription's run of failed deliveries; a failed delivery adds
    one, and disables the subscription when the run reaches the limit. True if disabled."""
    s = WebhookSubscription.__table__
    if reset:
        db.session.execute(
            sa.update(s)
            .where(s.c.id == subscription_id, s.c.consecutive_failures > 0)
            .values(consecutive_failures=0)
        )
        return False
    row = db.session.execute(
        sa.update(s)
        .where(s.c.id == subscription_id)
        .values(consecutive_failures=s.c.consecutive_failures + 1)
        .returning(s.c.consecutive_failures, s.c.status)
    ).first()
    if (
        row is None
        or row.status != SubscriptionStatus.ACTIVE
        or row.consecutive_failures < policy.disable_after
    ):
        return False
    db.session.execute(
        sa.update(s)
        .where(s.c.id == subscription_id)
        .values(
            status=SubscriptionStatus.DISABLED.value,
            disabled_reason=f"{row.consecutive_failures} deliveries in a row failed",
            updated_at=now,
        )
    )
    log.warning("webhook subscription %s disabled after failed deliveries", subscription_id)
    return True


def release(claims: list[Claim], now: datetime) -> None:
    """Give back claims this run will not send (its budget is spent): due at once, and the
    attempt they were charged is refunded (no commit)."""
    d = WebhookDelivery.__table__
    for claim_ in claims:
        db.session.execute(
            sa.update(d)
            .where(d.c.id == claim_.delivery_id, d.c.claim_token == claim_.token)
            .values(attempts=d.c.attempts - 1, next_attempt_at=now, claim_token=None)
        )


def deliver_due(
    policy: DeliveryPolicy,
    *,
    clock: Callable[[], datetime] = utcnow,
    limit: int = CLAIM_CHUNK,
    time_budget: float = TIME_BUDGET,
) -> DeliveryStats:
    """Claim, send and record due deliveries until none is due or the budget is spent
    (commits each step; the HTTP calls run with no transaction open)."""
    stats = DeliveryStats()
    deadline = time.monotonic() + time_budget
    while time.monotonic() < deadline:
        claims = claim(clock(), limit=limit)
        db.session.commit()
        if not claims:
            break
        for position, claim_ in enumerate(claims):
            if time.monotonic() > deadline:
                release(claims[position:], clock())
                db.session.commit()
                return stats
            attempt = send(claim_, policy)
            record(claim_, attempt, clock(), policy, stats)
            db.session.commit()
    return stats


def purge_finished_chunk(now: datetime, *, retention: timedelta, limit: int) -> int:
    """Delete up to `limit` deliveries that succeeded or failed longer than `retention`
    ago, oldest first (no commit)."""
    d = WebhookDelivery.__table__
    due = (
        sa.select(d.c.id)
        .where(
            d.c.status.in_(
                [
                    constant(WebhookDeliveryStatus.SUCCEEDED.value),
                    constant(WebhookDeliveryStatus.FAILED.value),
                ]
            ),
            d.c.done_at < now - retention,
        )
        .order_by(d.c.done_at)
        .limit(limit)
    )
    return db.session.execute(sa.delete(d).where(d.c.id.in_(due))).rowcount or 0


def deliveries_page(
    subscription_id: int, *, status: str | None, before_id: int | None, limit: int
) -> list[WebhookDelivery]:
    get_subscription(subscription_id)
    query = (
        sa.select(WebhookDelivery)
        .where(WebhookDelivery.subscription_id == subscription_id)
        .order_by(WebhookDelivery.id.desc())
        .limit(limit)
    )
    if status is not None:
        query = query.where(WebhookDelivery.status == status)
    if before_id is not None:
        query = query.where(WebhookDelivery.id < before_id)
    return list(db.session.scalars(query))
