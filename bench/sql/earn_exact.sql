-- The statements POST /v1/orders sends for one new order of a member named by id, one for
-- one (bench/results/earn_statements.sql is the capture this was translated from):
-- BEGIN, idempotency claim, member row lock (merges resolved in the same statement), order
-- row, member account lock, the ledger transaction with its lot in one statement (a CTE),
-- then the entry (one JSON parameter), the balance (arrays) and the points.earned event in
-- one statement, the order's lines (one JSON parameter), its final values and the
-- order.posted event in one statement, idempotency response, COMMIT. The API key, store,
-- tiers and earning rules come from per-process caches; an order naming its member by id
-- needs no order-id lookup (the order row's unique key finds a repeat).
-- Differences: the JSON rows are built with jsonb_build_object (the API sends each as one
-- JSON parameter); the entry and the balance UPDATE find the points account by (member_id,
-- kind), and the UPDATE adds (the API sets the value it computed under the same row lock);
-- constant JSON bodies.
-- Variables (pgbench -D): first_member, last_member, api_client, key_prefix, store_id,
-- issued_account, actor. pgbench reads ":word" as a variable even inside a string literal,
-- so literals here never have a colon right before a letter or digit.
\set member random(:first_member, :last_member)
\set n random(1, 9000000000000000)
\set points random(50, 400)
BEGIN;
INSERT INTO idempotency_keys (scope, key, fingerprint, created_at)
VALUES ('client:' || :api_client::text, 'k' || :n::text,
  '7fee58b6722af54ab68397e21208ed119c17d289b0a0b3384302e72d36dbe729', now())
ON CONFLICT (scope, key) DO NOTHING RETURNING idempotency_keys.id;
SELECT members.* FROM members WHERE members.id = (SELECT coalesce(m.merged_into_id, m.id)
  FROM members AS m WHERE m.id = :member) FOR NO KEY UPDATE;
INSERT INTO orders (client_id, external_id, channel, store_id, member_id, member_enrolled,
  currency, subtotal_minor, discount_minor, total_minor, refunded_minor, occurred_at, status,
  points_earned, points_reversed, fingerprint, breakdown, coupons, created_at, updated_at)
VALUES (:api_client, 'o' || :n::text, 'store', :store_id, :member, false, 'EUR', 10597, 0, 10597, 0,
  now(), 'posted', 0, 0, '253085cc10067a5d38f7b981ecfa865636131dbd3d620550d7c7283aa8c7cb09',
  '[]', '[]', now(), now())
ON CONFLICT (client_id, external_id) DO NOTHING
RETURNING orders.id \gset order_
SELECT ledger_accounts.id, ledger_accounts.member_id, ledger_accounts.kind,
  ledger_accounts.code, ledger_accounts.balance, ledger_accounts.held
FROM ledger_accounts WHERE ledger_accounts.member_id = :member
ORDER BY ledger_accounts.id FOR NO KEY UPDATE;
WITH new_tx AS (
  INSERT INTO ledger_transactions (member_id, kind, cause_type, cause_ref, amount, reverses_id,
    actor, reason, details, created_at)
  VALUES (:member, 'earn', 'order', 'order:' || :order_id::text, :points, NULL, :actor,
    NULL, jsonb_build_object('order_id', 'o' || :n::text, 'client_id', :api_client::bigint), now())
  RETURNING ledger_transactions.id
)
INSERT INTO point_lots (member_id, status, amount, remaining, earned_at, available_at,
  expires_at, cause_type, cause_ref, expired_points, reversed_points, source_transaction_id)
SELECT :member, 'available', :points, :points, now(), NULL, now() + interval '2 years',
  'order', 'order:' || :order_id::text, 0, 0, new_tx.id
FROM new_tx
RETURNING point_lots.id AS lot_id, point_lots.source_transaction_id AS tx_id \gset
WITH entries AS (
  INSERT INTO ledger_entries (transaction_id, from_account_id, to_account_id, amount, lot_id,
    created_at)
  SELECT e.*, now() FROM jsonb_to_recordset(jsonb_build_array(jsonb_build_object(
    'transaction_id', :tx_id::bigint, 'from_account_id', :issued_account::bigint,
    'to_account_id',
    (SELECT id FROM ledger_accounts WHERE member_id = :member AND kind = 'member_points'),
    'amount', :points::bigint, 'lot_id', :lot_id::bigint)))
    AS e(transaction_id bigint, from_account_id bigint, to_account_id bigint, amount bigint,
      lot_id bigint)
), balances AS (
  UPDATE ledger_accounts SET balance = ledger_accounts.balance + b.delta
  FROM unnest(ARRAY[(SELECT id FROM ledger_accounts WHERE member_id = :member AND kind = 'member_points')]::bigint[],
    ARRAY[:points]::bigint[]) AS b(id, delta)
  WHERE ledger_accounts.id = b.id
)
INSERT INTO outbox_events (topic, member_id, payload, occurred_at, dispatched_at)
VALUES ('points.earned', :member,
  jsonb_build_object('transaction_id', :tx_id::bigint, 'points', :points::bigint,
    'kind', 'earn', 'cause', jsonb_build_object('type', 'order', 'ref', 'order:' || :order_id::text)),
  now(), NULL);
WITH inserted_lines AS (
  INSERT INTO order_lines (order_id, index, sku, category, quantity, unit_price_minor,
    discount_minor, refunded_quantity, refunded_minor)
  SELECT l.* FROM jsonb_to_recordset(jsonb_build_array(
    jsonb_build_object('order_id', :order_id::bigint, 'index', 0, 'sku', 'SKU-1', 'category', 'shoes',
      'quantity', 1, 'unit_price_minor', 8999, 'discount_minor', 0, 'refunded_quantity', 0,
      'refunded_minor', 0),
    jsonb_build_object('order_id', :order_id::bigint, 'index', 1, 'sku', 'SKU-SOCKS',
      'category', 'accessories', 'quantity', 2, 'unit_price_minor', 799, 'discount_minor', 0,
      'refunded_quantity', 0, 'refunded_minor', 0)))
    AS l(order_id bigint, index int, sku varchar(64), category varchar(64), quantity int,
      unit_price_minor bigint, discount_minor bigint, refunded_quantity int, refunded_minor bigint)
), finished_order AS (
  UPDATE orders SET discount_minor = 0, total_minor = 10597, points_earned = :points,
    pending_until = NULL, coupons = '[]',
    breakdown = '[{"rule_id": 1, "name": "1 point per EUR", "kind": "base_rate", "points": 104}, {"rule_id": 2, "name": "Shoes x2", "kind": "multiplier", "points": 89}, {"rule_id": 3, "name": "Socks bonus", "kind": "bonus", "points": 10}]',
    ledger_transaction_id = :tx_id
  WHERE orders.id = :order_id
)
INSERT INTO outbox_events (topic, member_id, payload, occurred_at, dispatched_at)
VALUES ('order.posted', :member,
  jsonb_build_object('order_id', :order_id::bigint, 'channel', 'store', 'store_id', :store_id::text,
    'total_minor', 10597, 'refunded_minor', 0, 'status', 'posted'),
  now(), NULL);
UPDATE idempotency_keys SET status_code = 201,
  response_body = convert_to(repeat('{"breakdown": [], "points_earned": 203} ', 15), 'UTF8')
WHERE idempotency_keys.scope = 'client:' || :api_client::text AND idempotency_keys.key = 'k' || :n::text;
COMMIT;
