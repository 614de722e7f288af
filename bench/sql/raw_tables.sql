-- Tables for the minimal "insert a ledger entry and update a balance" ceiling
-- (PRODUCT.md "Targets"): one balance row per member, an append-only entry table.
-- :members is set with psql -v.
CREATE TABLE raw_balances (
    member_id bigint PRIMARY KEY,
    balance bigint NOT NULL DEFAULT 0 CHECK (balance >= 0)
);
CREATE TABLE raw_entries (
    id bigserial PRIMARY KEY,
    member_id bigint NOT NULL REFERENCES raw_balances (member_id),
    amount bigint NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX ON raw_entries (member_id);
INSERT INTO raw_balances (member_id) SELECT g FROM generate_series(1, :members) AS g;
VACUUM ANALYZE raw_balances;
