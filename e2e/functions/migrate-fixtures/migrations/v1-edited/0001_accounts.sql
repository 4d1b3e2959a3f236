-- Fixture: the schema a stack was created with, edited after it was applied.
CREATE TABLE accounts (id bigint PRIMARY KEY, name text NOT NULL, edited boolean);
INSERT INTO accounts VALUES (1, 'kept');
