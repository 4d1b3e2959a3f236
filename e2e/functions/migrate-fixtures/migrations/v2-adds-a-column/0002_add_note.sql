-- Fixture: DDL that needs an exclusive lock on a table the API reads.
ALTER TABLE accounts ADD COLUMN note text;
