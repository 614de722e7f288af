-- The raw ceiling for bulk code generation: one INSERT ... SELECT of :count random
-- 12-character codes (hex from md5(random()), upper-cased) into coupon_codes with the
-- same constant columns generate_codes writes, skipping any that exist.
-- Variables (psql --set): offer_id, count.
INSERT INTO coupon_codes (code, offer_id, batch_id, kind, status, max_uses, uses,
  expires_at, issued_at, source_type, source_ref, campaign_id, created_at)
SELECT upper(substr(md5(random()::text || g::text), 1, 12)), :offer_id, NULL, 'unique',
  'active', 1, 0, NULL, now(), NULL, NULL, NULL, now()
FROM generate_series(1, :count) AS g
ON CONFLICT (code) DO NOTHING;
