"""Member profiles: kept current from outbox events (orders, refunds, points, tiers,
merges), rebuildable from scratch, rolling windows refreshed as time passes."""

from __future__ import annotations

from datetime import timedelta

import sqlalchemy as sa

from campaigns import profiles
from campaigns.models import MemberCategoryPurchase, MemberProfile, MemberTag
from loyalty import outbox
from loyalty.auth import scopes
from loyalty.batches import BatchCursor
from loyalty.clock import utcnow
from loyalty.db import db
from loyalty.ledger.operations import member_balance
from loyalty.members.merge import merge_members
from loyalty.outbox.events import Event
from loyalty.outbox.models import OutboxEvent
from loyalty.outbox.relay import relay_batch
from loyalty.tiers.operations import create_tier
from tests.earning.factories import base_rate, order_body
from tests.factories import idem


def relay() -> None:
    relay_batch(utcnow(), max_attempts=3)


def profile(person_id: int) -> MemberProfile | None:
    db.session.expire_all()
    return db.session.get(MemberProfile, person_id)


def categories(person_id: int) -> set[tuple[str, str]]:
    rows = db.session.execute(
        sa.select(MemberCategoryPurchase.category, MemberCategoryPurchase.channel).where(
            MemberCategoryPurchase.person_id == person_id
        )
    ).all()
    return {tuple(row) for row in rows}


def post(client, headers, member_id, *lines, **more):
    body = order_body({"member_id": member_id}, *lines, **more)
    response = client.post("/v1/orders", json=body, headers=idem(headers))
    assert response.status_code == 201, response.json
    return body["order_id"]


def test_orders_refunds_and_points_reach_the_profile_through_the_outbox(client, make):
    pos = make.api_key(scopes.ORDERS_WRITE)
    make.store("S1")
    base_rate(points=1, per_minor=100)
    member = make.member(attributes={"tags": ["vip", " press "]})
    relay()
    assert profile(member.id).orders_lifetime == 0  # enrolment alone writes the row

    post(client, pos, member.id, ("A", "shoes", 1, 5_000), channel="online")
    second = post(
        client, pos, member.id, ("P", "phones", 1, 20_000), channel="store", store_id="S1"
    )
    relay()
    row = profile(member.id)
    assert (row.orders_lifetime, row.spend_lifetime_minor) == (2, 25_000)
    assert (row.orders_30d, row.spend_30d_minor, row.orders_365d) == (2, 25_000, 2)
    assert (row.first_order_channel, row.last_order_channel) == ("online", "store")
    assert (row.favourite_store_id, row.last_order_store_id) == ("S1", "S1")
    assert (row.online_orders, row.store_orders) == (1, 1)
    assert (
        row.points_balance
        == member_balance(member.id).available + member_balance(member.id).held
        == 250
    )
    assert categories(member.id) == {("shoes", "online"), ("phones", "store")}
    tags = set(db.session.scalars(sa.select(MemberTag.tag).where(MemberTag.person_id == member.id)))
    assert tags == {"vip", "press"}

    # A full refund of the phone order: it no longer counts, nor does its category.
    response = client.post(
        f"/v1/orders/{second}/refunds",
        json={"refund_id": "R1", "lines": [{"index": 0, "quantity": 1}]},
        headers=idem(pos),
    )
    assert response.status_code in (200, 201), response.json
    relay()
    row = profile(member.id)
    assert (row.orders_lifetime, row.spend_lifetime_minor) == (1, 5_000)
    assert categories(member.id) == {("shoes", "online")}


def test_an_order_that_earns_no_points_still_counts(client, make):
    """No earning rule: no ledger event, but the order.posted event refreshes the row."""
    pos = make.api_key(scopes.ORDERS_WRITE)
    member = make.member()
    post(client, pos, member.id, ("A", "books", 1, 1_200))
    relay()
    assert profile(member.id).orders_lifetime == 1


def test_a_merge_folds_the_merged_members_history_into_the_survivors_profile(client, make):
    pos = make.api_key(scopes.ORDERS_WRITE)
    survivor, merged = make.member(), make.member()
    post(client, pos, survivor.id, ("A", "shoes", 1, 1_000))
    post(client, pos, merged.id, ("B", "phones", 1, 3_000), channel="app")
    relay()
    merge_members(survivor.id, merged.id, reason=None, now=utcnow(), actor="test")
    db.session.commit()
    relay()
    row = profile(survivor.id)
    assert (row.orders_lifetime, row.spend_lifetime_minor) == (2, 4_000)
    assert categories(survivor.id) == {("shoes", "online"), ("phones", "app")}
    assert profile(merged.id) is None  # a merged id is not a person


def test_tier_since_is_the_time_of_the_tier_change(client, make):
    pos = make.api_key(scopes.ORDERS_WRITE)
    create_tier({"code": "gold", "name": "Gold", "rank": 1, "threshold": 10}, now=utcnow())
    db.session.commit()
    base_rate(points=1, per_minor=100)
    member = make.member()
    before = utcnow()
    post(client, pos, member.id, ("A", "shoes", 1, 5_000))
    relay()
    row = profile(member.id)
    assert row.tier_since is not None and row.tier_since >= before - timedelta(seconds=1)


def _rows() -> dict[int, dict]:
    db.session.expire_all()
    ignored = {"refreshed_at"}
    return {
        row.person_id: {
            c.name: getattr(row, c.name)
            for c in MemberProfile.__table__.columns
            if c.name not in ignored
        }
        for row in db.session.scalars(sa.select(MemberProfile))
    }


def test_the_rebuild_command_writes_the_rows_the_consumer_keeps(app, client, make):
    pos = make.api_key(scopes.ORDERS_WRITE)
    make.store("S1")
    base_rate(points=1, per_minor=100)
    members = [make.member() for _ in range(5)]
    for n, member in enumerate(members):
        for k in range(n):
            post(client, pos, member.id, ("A", "shoes", 1, 1_000 * (k + 1)), channel="app")
    merge_members(members[1].id, members[2].id, reason=None, now=utcnow(), actor="test")
    db.session.commit()
    relay()
    profiles.score_rfm(utcnow())
    db.session.commit()
    kept, kept_categories = (
        _rows(),
        db.session.scalar(sa.select(sa.func.count()).select_from(MemberCategoryPurchase)),
    )
    for table in (MemberCategoryPurchase, MemberTag, MemberProfile):
        db.session.execute(sa.delete(table))
    db.session.commit()

    result = app.test_cli_runner().invoke(args=["campaigns", "rebuild-profiles", "--chunk", "2"])
    assert result.exit_code == 0, result.output
    assert "profiles rebuilt: 4 people" in result.output
    rebuilt = _rows()
    assert rebuilt == kept
    count = sa.select(sa.func.count()).select_from(MemberCategoryPurchase)
    assert db.session.scalar(count) == kept_categories


def test_rolling_windows_are_refreshed_when_their_oldest_order_leaves_them(client, make):
    pos = make.api_key(scopes.ORDERS_WRITE)
    member = make.member()
    post(client, pos, member.id, ("A", "shoes", 1, 1_000))
    relay()
    now = utcnow()
    assert profiles.stale_windows_chunk(BatchCursor(), now + timedelta(days=29)) == 0

    later = now + timedelta(days=31)
    assert profiles.stale_windows_chunk(BatchCursor(), later) == 1
    db.session.commit()
    row = profile(member.id)
    assert (row.orders_30d, row.orders_90d, row.orders_lifetime) == (0, 1, 1)
    assert row.window_30d_oldest_at is None
    assert profiles.stale_windows_chunk(BatchCursor(), later) == 0  # fresh now


def _order_events() -> list[Event]:
    rows = db.session.scalars(
        sa.select(OutboxEvent).where(OutboxEvent.topic == "order.posted").order_by(OutboxEvent.id)
    )
    return [Event(r.id, r.topic, r.member_id, r.payload, r.occurred_at) for r in rows]


def _statements_to_handle(events: list[Event]) -> int:
    executed = []

    def count(_conn: object, _cursor: object, statement: str, *_args: object) -> None:
        if not statement.startswith(("BEGIN", "SAVEPOINT", "RELEASE")):
            executed.append(statement)

    consumer = outbox.consumers.get("campaigns.profiles")
    sa.event.listen(db.engine, "before_cursor_execute", count)
    try:
        consumer.handle(events)
    finally:
        sa.event.remove(db.engine, "before_cursor_execute", count)
    db.session.rollback()
    return len(executed)


def test_the_profile_consumer_refreshes_a_relay_chunk_at_once(client, make):
    """The relay hands the consumer its chunk: the people's rows are deleted, written and
    given their categories and tags once for the chunk, so each more person costs only the
    one statement that reads their aggregates (not a set of statements per event)."""
    pos = make.api_key(scopes.ORDERS_WRITE)
    members = [make.member(attributes={"tags": ["vip"]}) for _ in range(12)]
    for member in members:
        post(client, pos, member.id, ("A", "shoes", 1, 1_000))
    consumer = outbox.consumers.get("campaigns.profiles")
    assert consumer is not None and consumer.batch
    events = _order_events()
    assert len(events) == 12

    few, many = _statements_to_handle(events[:2]), _statements_to_handle(events)
    assert many - few <= 10  # one aggregate read per additional person

    relay()
    assert all(profile(m.id).orders_lifetime == 1 for m in members)
    assert db.session.scalar(sa.select(sa.func.count()).select_from(MemberTag)) == 12


def test_a_chunk_naming_thousands_of_people_is_refreshed_in_bounded_slices(app, make):
    """Import events name thousands of members each, and the relay hands the consumer up to
    500 events at once: no statement carries more than a bounded list of ids."""
    member = make.member(attributes={"tags": ["vip"]})
    now = utcnow()
    events = [
        Event(
            n, "members.imported", None, {"member_ids": list(range(n * 2000, n * 2000 + 2000))}, now
        )
        for n in range(1, 4)
    ] + [Event(9, "member.updated", member.id, {}, now)]
    widest = []

    def measure(
        _conn: object, _cursor: object, _statement: str, parameters: object, *_: object
    ) -> None:
        widest.append(len(parameters) if isinstance(parameters, (tuple, list, dict)) else 0)

    sa.event.listen(db.engine, "before_cursor_execute", measure)
    try:
        outbox.consumers.get("campaigns.profiles").handle(events)
    finally:
        sa.event.remove(db.engine, "before_cursor_execute", measure)
    assert max(widest) <= 4 * profiles.CHUNK + 50
    assert profile(member.id) is not None
