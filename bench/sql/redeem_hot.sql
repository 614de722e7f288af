-- The statements POST /v1/coupons/redeem sends for one code (captured in
-- bench/results/hot_statements.sql), one for one: BEGIN (the API key comes from a
-- per-process cache), idempotency claim, the code with its offer, terms and any
-- redemption for this order, the redemption row's INSERT with the conditional UPDATE that
-- takes a use as its CTE, the outbox event with the uncapped offer's counter (one stripe of 16, an upsert) as
-- a CTE of the same statement, the idempotency response, COMMIT.
-- Differences: the code is found by id rather than by its text (both one unique-index
-- probe; pgbench can't pick distinct strings), so the INSERT takes the code's text from
-- the updated row; the JSON bodies are constants of the same size.
-- pgbench reads ":word" as a variable even inside a string literal, so literals here
-- never have a colon right before a letter or digit.
-- Every client redeems the same shared code (first_code is its id): all wait in turn for
-- its row lock, which each holds until its COMMIT is flushed.
-- Variables: first_code, key_prefix, api_client, store_id, offer_id, version_id, actor.
\set code_id :first_code
\set n random(1, 9000000000000000)
\set stripe random(0, 15)
BEGIN;
INSERT INTO idempotency_keys (scope, key, fingerprint, created_at)
VALUES ('client:' || :api_client::text, 'r' || :n::text,
  '3472d6398b3474abd0f9e7bc7f0436df9718028e339133871f142c6649bc2623', now())
ON CONFLICT (scope, key) DO NOTHING RETURNING idempotency_keys.id;
SELECT coupon_codes.id, coupon_codes.code, coupon_codes.status, coupon_codes.max_uses,
  coupon_codes.uses, coupon_codes.member_id, coupon_codes.expires_at,
  coupon_codes.source_type, coupon_codes.source_ref, coupon_codes.campaign_id,
  coupon_offers.id AS id_1, coupon_offers.name, coupon_offers.status AS status_1,
  coupon_offers.version, coupon_offer_versions.id AS id_2, coupon_offers.max_redemptions,
  coupon_offers.budget_minor, coupon_offers.per_member_limit,
  coupon_offers.redemptions_count, coupon_offers.discount_spent_minor,
  coupon_offer_versions.terms, coupon_redemptions.id AS id_3
FROM coupon_codes
JOIN coupon_offers ON coupon_offers.id = coupon_codes.offer_id
JOIN coupon_offer_versions ON coupon_offer_versions.offer_id = coupon_offers.id
  AND coupon_offer_versions.version = coupon_offers.version
LEFT OUTER JOIN coupon_redemptions ON coupon_redemptions.code_id = coupon_codes.id
  AND coupon_redemptions.order_ref = 'r' || :n::text
  AND coupon_redemptions.status IN ('held', 'redeemed')
WHERE coupon_codes.id = :code_id;
WITH taken AS (
  UPDATE coupon_codes SET uses = coupon_codes.uses + 1
  WHERE coupon_codes.id = :code_id AND coupon_codes.status = 'active'
    AND (coupon_codes.max_uses IS NULL OR coupon_codes.uses < coupon_codes.max_uses)
  RETURNING coupon_codes.id, coupon_codes.code
)
INSERT INTO coupon_redemptions (code_id, code, offer_id, offer_version_id, offer_version,
  status, checkout_ref, order_ref, order_id, member_id, client_id, store_id, channel,
  currency, discount_minor, line_discounts, bonus_points, points_multiplier_pct,
  counted_offer, counted_member, source_type, source_ref, campaign_id, expires_at,
  created_at, redeemed_at, closed_at, actor, rollback_reason, metadata)
SELECT taken.id, taken.code, :offer_id, :version_id, 1, 'redeemed',
  md5('c' || :n::text), 'r' || :n::text, NULL, NULL, :api_client, :store_id, 'store', 'EUR',
  1058, '{"0": 899, "1": 159}', 0, 100, false, false, NULL, NULL, NULL, NULL,
  now(), now(), NULL, :actor, NULL, NULL
FROM taken
RETURNING coupon_redemptions.id, coupon_redemptions.code \gset taken_
WITH counted AS (
  INSERT INTO coupon_offer_counters (offer_id, stripe, redemptions, discount_minor)
  SELECT c.* FROM jsonb_to_recordset(jsonb_build_array(jsonb_build_object('offer_id',
    :offer_id::bigint, 'stripe', :stripe::int, 'redemptions', 1, 'discount_minor', 1058)))
    AS c(offer_id bigint, stripe smallint, redemptions bigint, discount_minor bigint)
  ON CONFLICT (offer_id, stripe) DO UPDATE SET
    redemptions = coupon_offer_counters.redemptions + excluded.redemptions,
    discount_minor = coupon_offer_counters.discount_minor + excluded.discount_minor
)
INSERT INTO outbox_events (topic, member_id, payload, occurred_at, dispatched_at)
VALUES ('coupon.redeemed', NULL,
  jsonb_build_object('checkout_ref', md5('c' || :n::text), 'order_ref', 'r' || :n::text,
    'codes', jsonb_build_array(:taken_code::text), 'store_id', :store_id::text,
    'channel', 'store', 'discount_minor', 1058, 'client_id', :api_client::bigint),
  now(), NULL);
UPDATE idempotency_keys SET status_code = 201,
  response_body = convert_to(repeat('{"bonus_points": 0, "checkout_ref": "x"} ', 21), 'UTF8')
WHERE idempotency_keys.scope = 'client' || ':' || :api_client::text
  AND idempotency_keys.key = 'r' || :n::text;
COMMIT;
