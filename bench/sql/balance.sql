-- What GET /v1/me/balance sends (bench/results/balance_statements.sql): one SELECT of the
-- member's three accounts (loyalty.ledger.operations.member_balance), in autocommit: no
-- BEGIN, no ROLLBACK. The member token is checked without the database.
\set member random(:first_member, :last_member)
SELECT ledger_accounts.kind, ledger_accounts.balance, ledger_accounts.held
FROM ledger_accounts WHERE ledger_accounts.member_id = :member;
