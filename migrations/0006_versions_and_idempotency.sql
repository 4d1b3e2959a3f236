-- A version per user, for strong ETags and conditional writes (If-Match). It moves on every
-- real change, by the same trigger that keeps `updated_at` (an UPDATE that changes nothing
-- changes neither). Expand-only: existing rows start at 1 and old code that never reads the
-- column keeps working.
ALTER TABLE users ADD COLUMN version BIGINT NOT NULL DEFAULT 1;

-- `updated_at` also moves strictly forward: now() is the transaction's start, and two changes
-- in the same microsecond (or a clock stepping back) must not look like no change.
CREATE OR REPLACE FUNCTION set_updated_at() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    NEW.updated_at := greatest(now(), OLD.updated_at + interval '1 microsecond');
    NEW.version := OLD.version + 1;
    RETURN NEW;
END;
$$;

-- Idempotent creates (`POST /users` with an `Idempotency-Key`). A key belongs to the caller
-- (the token's subject), so two clients cannot collide or read each other's responses.
--
-- The claim is taken first, in the same statement as the insert: a concurrent request with the
-- same key waits on this primary key, then finds it taken and answers 409, while the user and
-- the response it would have recorded are never written.
CREATE TABLE idempotency_keys (
    subject       TEXT        NOT NULL,
    key           TEXT        NOT NULL CHECK (char_length(key) BETWEEN 1 AND 255),
    -- SHA-256 of the request body in canonical JSON: a replay must send the same request.
    request_hash  BYTEA       NOT NULL CHECK (octet_length(request_hash) = 32),
    created_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    expires_at    TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (subject, key)
);

-- Keys past their expiry are purged a few at a time by the creates that add keys
-- (users::create_idempotently), oldest first.
CREATE INDEX idempotency_keys_expires_at_idx ON idempotency_keys (expires_at);

-- The response a claimed key answered with: the created user as it was then (a replay returns
-- that body even after the user changed or was deleted). A separate table because one
-- statement cannot insert the claim and then change the same row.
CREATE TABLE idempotent_responses (
    subject     TEXT        NOT NULL,
    key         TEXT        NOT NULL,
    status      SMALLINT    NOT NULL,
    user_id     BIGINT      NOT NULL,
    email       TEXT        NOT NULL,
    name        TEXT        NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL,
    updated_at  TIMESTAMPTZ NOT NULL,
    version     BIGINT      NOT NULL,
    PRIMARY KEY (subject, key),
    FOREIGN KEY (subject, key) REFERENCES idempotency_keys ON DELETE CASCADE
);
