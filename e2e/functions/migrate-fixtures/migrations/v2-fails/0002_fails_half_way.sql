-- Fixture: a migration that changes things, then fails; none of it may remain.
ALTER TABLE accounts ADD COLUMN email text;
UPDATE accounts SET email = 'changed@example.com';
CREATE TABLE audit (id bigint);
SELECT 1 / 0;
