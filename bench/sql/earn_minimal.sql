-- The bare ceiling from PRODUCT.md: insert a ledger entry and update a balance, durably.
\set member random(1, :members)
\set amount random(1, 500)
BEGIN;
UPDATE raw_balances SET balance = balance + :amount WHERE member_id = :member;
INSERT INTO raw_entries (member_id, amount) VALUES (:member, :amount);
END;
