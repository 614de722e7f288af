-- The balance statement GET /v1/me/balance sends (bench/results/balance_statements.sql):
-- one SELECT of the member's three accounts, merges followed inside it
-- (loyalty.ledger.operations.member_balance), in autocommit: no BEGIN, no ROLLBACK. This
-- is "the single statement a balance read needs" the target is measured against. The API
-- sends one more before it, on its own autocommit connection: the token holder's status,
-- token epoch and issuing client (a revoked token or app is refused at once).
\set member random(:first_member, :last_member)
SELECT ledger_accounts.member_id, ledger_accounts.kind, ledger_accounts.balance,
  ledger_accounts.held
FROM ledger_accounts WHERE ledger_accounts.member_id = (SELECT coalesce(members.merged_into_id,
  members.id) FROM members WHERE members.id = :member);
