-- The bare ceiling for redeeming one shared code: the statement that takes a use and
-- inserts the redemption (the redemption INSERT with the conditional UPDATE as its CTE, as
-- POST /v1/coupons/redeem sends it), in one durable transaction (redeem_hot.sql has every
-- statement the endpoint sends). \gset aborts the client if no use was left.
-- pgbench reads ":word" as a variable even inside a string literal.
-- Variables: first_code (the code's id), api_client, store_id, offer_id, version_id, actor.
\set code_id :first_code
\set n random(1, 9000000000000000)
BEGIN;
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
COMMIT;
