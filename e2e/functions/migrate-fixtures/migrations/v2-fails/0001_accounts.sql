-- Fixture: the schema a stack was created with.
CREATE TABLE accounts (id bigint PRIMARY KEY, name text NOT NULL);
INSERT INTO accounts VALUES (1, 'kept');
