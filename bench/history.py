"""A retailer's history, seeded fast: INSERT ... SELECT generate_series, then VACUUM ANALYZE.

Used by `make bench` (a million members, ten million ledger entries, ...) and by
tests/performance/test_index_usage.py (tens of thousands of rows). The rows are what the
operations would have written: every member has its three accounts, an email identity and
a ledger whose transactions, entries and lots agree with the account balances (earns of
100 points, each followed by a burn of 50 from its lot); orders with a line, single-use
coupon codes each redeemed once for an order, captured point holds, idempotency records
inside their 48 h retention, and outbox events already dispatched to their consumers.

PostgreSQL only. Ids are given explicitly above each table's current maximum and the
sequences are moved past them, so the operations keep inserting after the seed. Foreign
keys are not checked row by row during the seed (`session_replication_role = replica`,
superuser only): the ids are consistent by construction, and the checks would triple the
time of a ten-million-row seed.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import sqlalchemy as sa

# Tables the history grows; the index-usage test asserts none of them is scanned.
GROWING_TABLES = (
    "members",
    "member_identities",
    "ledger_accounts",
    "ledger_transactions",
    "ledger_entries",
    "point_lots",
    "point_holds",
    "orders",
    "order_lines",
    "refunds",
    "coupon_codes",
    "coupon_redemptions",
    "idempotency_keys",
    "outbox_events",
)
EARN, BURN = 100, 50  # points per earn, and per burn taken from the lot just earned


@dataclass(frozen=True)
class HistoryScale:
    members: int
    entries: int  # ledger entries; one per transaction, `entries // members` per member
    orders: int
    redemptions: int  # single-use codes, each redeemed once for an order (<= orders)
    idempotency: int
    outbox: int
    holds: int  # captured point holds
    refunds: int  # partial refunds of the last orders (<= orders)

    @classmethod
    def retailer(cls, factor: float = 1.0) -> HistoryScale:
        """The issue's "real retailer": 1M members, 10M entries, 1M orders, redemptions,
        idempotency records (and 1M published events, 250k holds), times `factor`."""
        million = max(1, int(1_000_000 * factor))
        return cls(
            members=million,
            entries=10 * million,
            orders=million,
            redemptions=million,
            idempotency=million,
            outbox=million,
            holds=max(1, million // 4),
            refunds=max(1, million // 10),
        )

    @property
    def per_member(self) -> int:
        return max(1, self.entries // self.members)


@dataclass(frozen=True)
class SeedRefs:
    """Rows the seed points at, made beforehand through the operations."""

    client_id: int  # the API client the orders and idempotency records belong to
    store_id: str
    offer_id: int  # a coupon offer (version 1) for the redeemed codes
    offer_version_id: int
    issued_account_id: int
    redeemed_account_id: int


def _max_id(connection: sa.Connection, table: str) -> int:
    return int(connection.exec_driver_sql(f"SELECT coalesce(max(id), 0) FROM {table}").scalar())


def seed_history(
    connection: sa.Connection,
    scale: HistoryScale,
    refs: SeedRefs,
    *,
    say: Callable[[str], None] = lambda _: None,
) -> dict[str, float]:
    """Insert the history (committed by the caller) and return seconds per table."""
    timings: dict[str, float] = {}
    connection.exec_driver_sql("SET LOCAL session_replication_role = replica")
    connection.exec_driver_sql("SET LOCAL synchronous_commit = off")
    connection.exec_driver_sql("SET LOCAL maintenance_work_mem = '256MB'")
    base = {
        t: _max_id(connection, t)
        for t in (
            "members",
            "member_identities",
            "ledger_accounts",
            "ledger_transactions",
            "ledger_entries",
            "point_lots",
            "point_holds",
            "orders",
            "order_lines",
            "refunds",
            "coupon_codes",
            "coupon_redemptions",
            "idempotency_keys",
            "outbox_events",
        )
    }
    for table, sql in _statements(scale, refs, base):
        started = time.perf_counter()
        connection.exec_driver_sql(sql)
        timings[table] = time.perf_counter() - started
        say(f"  {table}: {timings[table]:.1f} s")
    for table in base:
        connection.exec_driver_sql(
            f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
            f"(SELECT coalesce(max(id), 0) + 1 FROM {table}), false)"
        )
    return timings


def _statements(scale: HistoryScale, refs: SeedRefs, base: dict[str, int]) -> list[tuple[str, str]]:
    m, t, earns = scale.members, scale.per_member, (scale.per_member + 1) // 2
    burns = scale.per_member // 2
    balance = EARN * earns - BURN * burns
    m0, a0, t0 = base["members"], base["ledger_accounts"], base["ledger_transactions"]
    l0, e0, o0 = base["point_lots"], base["ledger_entries"], base["orders"]
    c0, r0 = base["coupon_codes"], base["coupon_redemptions"]
    redemptions = min(scale.redemptions, scale.orders)
    refunded_from = scale.orders - min(scale.refunds, scale.orders)  # orders after it
    # member g (1..m): id m0+g, accounts a0+3g-2 (points), a0+3g-1 (pending), a0+3g (debt);
    # its j-th transaction (1..t): id t0+(g-1)*t+j, one entry with the same offset;
    # earn j (odd) makes lot l0+(g-1)*earns+(j+1)/2, burn j (even) takes from lot of j-1.
    tx_id = f"{t0} + (g - 1) * {t} + j"
    lot_id = f"{l0} + (g - 1) * {earns} + (j + 1) / 2"
    tx_at = f"now() - ({t} - j) * interval '20 days' - interval '1 day'"
    return [
        (
            "members",
            f"""INSERT INTO members (id, status, locale, timezone, attributes,
                enrolled_channel, enrolled_store_id, created_at, updated_at)
            SELECT {m0} + g, 'active', 'en', 'Europe/Paris', '{{}}', 'store',
                '{refs.store_id}', now() - interval '700 days', now() - interval '700 days'
            FROM generate_series(1, {m}) AS g""",
        ),
        (
            "member_identities",
            f"""INSERT INTO member_identities (id, member_id, kind, value, created_at)
            SELECT {base["member_identities"]} + g, {m0} + g, 'email',
                'history-' || ({m0} + g) || '@example.com', now() - interval '700 days'
            FROM generate_series(1, {m}) AS g""",
        ),
        (
            "ledger_accounts",
            f"""INSERT INTO ledger_accounts (id, member_id, kind, code, balance, held)
            SELECT {a0} + 3 * (g - 1) + k, {m0} + g,
                (ARRAY['member_points', 'member_pending', 'member_debt'])[k], NULL,
                CASE k WHEN 1 THEN {balance} ELSE 0 END, 0
            FROM generate_series(1, {m}) AS g, generate_series(1, 3) AS k""",
        ),
        (
            "ledger_transactions",
            f"""INSERT INTO ledger_transactions (id, member_id, kind, cause_type, cause_ref,
                amount, reverses_id, actor, reason, details, created_at)
            SELECT {tx_id}, {m0} + g,
                CASE WHEN mod(j, 2) = 1 THEN 'earn' ELSE 'burn' END,
                CASE WHEN mod(j, 2) = 1 THEN 'order' ELSE 'hold' END,
                CASE WHEN mod(j, 2) = 1 THEN 'order:h' ELSE 'hold:h' END || ({tx_id}),
                CASE WHEN mod(j, 2) = 1 THEN {EARN} ELSE -{BURN} END, NULL, 'history-seed', NULL,
                '{{}}', {tx_at}
            FROM generate_series(1, {m}) AS g, generate_series(1, {t}) AS j""",
        ),
        (
            "point_lots",
            f"""INSERT INTO point_lots (id, member_id, status, amount, remaining, earned_at,
                available_at, expires_at, source_transaction_id, cause_type, cause_ref)
            SELECT {lot_id}, {m0} + g, 'available', {EARN},
                CASE WHEN j < {t} THEN {EARN - BURN} ELSE {EARN} END, {tx_at}, NULL,
                {tx_at} + interval '730 days', {tx_id}, 'order', 'order:h' || ({tx_id})
            FROM generate_series(1, {m}) AS g, generate_series(1, {t}, 2) AS j""",
        ),
        (
            "ledger_entries",
            f"""INSERT INTO ledger_entries (id, transaction_id, from_account_id, to_account_id,
                amount, lot_id, created_at)
            SELECT {e0} + (g - 1) * {t} + j, {tx_id},
                CASE WHEN mod(j, 2) = 1 THEN {refs.issued_account_id} ELSE {a0} + 3 * g - 2 END,
                CASE WHEN mod(j, 2) = 1 THEN {a0} + 3 * g - 2 ELSE {refs.redeemed_account_id} END,
                CASE WHEN mod(j, 2) = 1 THEN {EARN} ELSE {BURN} END,
                {lot_id},  -- a burn takes from the lot of the earn before it
                {tx_at}
            FROM generate_series(1, {m}) AS g, generate_series(1, {t}) AS j""",
        ),
        (
            "point_holds",
            f"""INSERT INTO point_holds (id, member_id, client_id, store_id, reference, amount,
                captured, status, expires_at, created_at, closed_at, capture_transaction_id)
            SELECT {base["point_holds"]} + h, {m0} + 1 + mod(h - 1, {m}), {refs.client_id},
                '{refs.store_id}', 'basket-h' || h, {BURN}, {BURN}, 'captured',
                now() - interval '1 day', now() - interval '1 day' - interval '5 minutes',
                now() - interval '1 day', NULL
            FROM generate_series(1, {scale.holds}) AS h""",
        ),
        (
            "orders",
            f"""INSERT INTO orders (id, client_id, external_id, channel, store_id, member_id,
                member_enrolled, currency, subtotal_minor, discount_minor, total_minor,
                refunded_minor, occurred_at, status, points_earned, points_reversed,
                fingerprint, breakdown, coupons, created_at, updated_at)
            SELECT {o0} + k, {refs.client_id}, 'history-' || k, 'store', '{refs.store_id}',
                {m0} + 1 + mod(k - 1, {m}), false, 'EUR', 10000,
                CASE WHEN k <= {redemptions} THEN 1000 ELSE 0 END,
                CASE WHEN k <= {redemptions} THEN 9000 ELSE 10000 END, 0,
                now() - (mod(k, 300)) * interval '1 day', 'posted', {EARN}, 0, md5(k::text),
                '[]', '[]', now() - (mod(k, 300)) * interval '1 day',
                now() - (mod(k, 300)) * interval '1 day'
            FROM generate_series(1, {scale.orders}) AS k""",
        ),
        (
            "order_lines",
            f"""INSERT INTO order_lines (id, order_id, index, sku, category, quantity,
                unit_price_minor, discount_minor, refunded_quantity, refunded_minor)
            SELECT {base["order_lines"]} + k, {o0} + k, 0, 'SKU-' || (mod(k, 500)), 'shoes', 1,
                10000, CASE WHEN k <= {redemptions} THEN 1000 ELSE 0 END, 0, 0
            FROM generate_series(1, {scale.orders}) AS k""",
        ),
        (
            "refunds",
            f"""INSERT INTO refunds (id, order_id, external_id, client_id, fingerprint,
                amount_minor, lines, points_reversed, revoked_pending, revoked_available,
                clawed_back, forgiven, policy, ledger_transaction_id, created_at)
            SELECT {base["refunds"]} + k - {refunded_from}, {o0} + k, 'history-refund-' || k,
                {refs.client_id}, md5('refund' || k), 1000, '[]', 10, 0, 10, 0, 0,
                'cap-at-zero', NULL, now() - mod(k, 300) * interval '1 day'
            FROM generate_series({refunded_from} + 1, {scale.orders}) AS k""",
        ),
        (
            "coupon_codes",
            f"""INSERT INTO coupon_codes (id, code, offer_id, batch_id, kind, status, max_uses,
                uses, member_id, expires_at, issued_at, source_type, source_ref, campaign_id,
                reward_id, burn_transaction_id, created_at)
            SELECT {c0} + k, 'HIST' || lpad(k::text, 10, '0'), {refs.offer_id}, NULL,
                'unique', 'active', 1, 1, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
                now() - interval '300 days'
            FROM generate_series(1, {redemptions}) AS k""",
        ),
        (
            "coupon_redemptions",
            f"""INSERT INTO coupon_redemptions (id, code_id, code, offer_id, offer_version_id,
                offer_version, status, checkout_ref, order_ref, order_id, member_id,
                client_id, store_id, channel, currency, discount_minor, line_discounts,
                bonus_points, points_multiplier_pct, counted_offer, counted_member,
                source_type, source_ref, campaign_id, expires_at, created_at, redeemed_at,
                closed_at, actor)
            SELECT {r0} + k, {c0} + k, 'HIST' || lpad(k::text, 10, '0'), {refs.offer_id},
                {refs.offer_version_id}, 1, 'redeemed', md5('checkout' || k),
                'order:' || ({o0} + k), {o0} + k, {m0} + 1 + mod(k - 1, {m}), {refs.client_id},
                '{refs.store_id}', 'store', 'EUR', 1000, '{{"0": 1000}}', 0, 100, false,
                false, NULL, NULL, NULL, NULL, now() - (mod(k, 300)) * interval '1 day',
                now() - (mod(k, 300)) * interval '1 day', NULL, 'history-seed'
            FROM generate_series(1, {redemptions}) AS k""",
        ),
        (
            "idempotency_keys",
            f"""INSERT INTO idempotency_keys (id, scope, key, fingerprint, status_code,
                response_body, created_at)
            SELECT {base["idempotency_keys"]} + k, 'client:' || {refs.client_id},
                'history-' || k, md5(k::text), 201,
                convert_to(repeat('{{"points_earned": 100, "status": "posted"}} ', 8), 'UTF8'),
                now() - (mod(k, 2800)) * interval '1 minute'
            FROM generate_series(1, {scale.idempotency}) AS k""",
        ),
        (
            "outbox_events",
            f"""INSERT INTO outbox_events (id, topic, member_id, payload, occurred_at,
                dispatched_at)
            SELECT {base["outbox_events"]} + k, 'points.earned', {m0} + 1 + mod(k - 1, {m}),
                jsonb_build_object('points', {EARN}, 'kind', 'earn'),
                now() - interval '2 days', now() - interval '2 days'
            FROM generate_series(1, {scale.outbox}) AS k""",
        ),
    ]


def analyze(connection: sa.Connection) -> None:
    """What autovacuum would have done by now: statistics and the visibility map.

    VACUUM can't run inside a transaction: `connection` must be in autocommit."""
    for table in GROWING_TABLES:
        connection.exec_driver_sql(f"VACUUM (ANALYZE) {table}")
