-- What GET /v1/me/balance sends (bench/results/balance_statements.sql): SQLAlchemy's
-- pool_pre_ping on checkout, psycopg's BEGIN, the member's three accounts
-- (loyalty.ledger.operations.member_balance), and the ROLLBACK the pool sends when the
-- session ends. The member token is checked without the database.
\set member random(:first_member, :last_member)
SELECT 1;
BEGIN;
SELECT ledger_accounts.kind, ledger_accounts.balance, ledger_accounts.held
FROM ledger_accounts WHERE ledger_accounts.member_id = :member;
ROLLBACK;
