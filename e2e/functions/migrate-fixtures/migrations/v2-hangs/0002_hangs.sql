-- Fixture: a migration that would run far past any deadline.
ALTER TABLE accounts ADD COLUMN slow text;
SELECT pg_sleep(600);
