-- Lookups by id use the primary key and lookups by email use `users_email_lower_key`
-- (queries must compare `lower(email)` to hit it). Listing pages through users newest first
-- with a keyset cursor on (created_at, id), which this index serves without a sort.
CREATE INDEX users_created_at_id_idx ON users (created_at DESC, id DESC);
