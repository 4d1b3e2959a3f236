-- Erasure: a deleted user leaves no copy of its email or name behind. The responses recorded for
-- idempotent creates held one each (0006); deleting a user now turns the responses of the
-- creates that made it into tombstones, in the same statement (users::delete): status 410, no
-- email, no name. A replay of such a create answers 410 Gone instead of the deleted user, and
-- never creates it again.
--
-- Expand-only: the columns may now be empty, and the delete finds a user's responses by index.
ALTER TABLE idempotent_responses
    ALTER COLUMN email DROP NOT NULL,
    ALTER COLUMN name DROP NOT NULL;

CREATE INDEX idempotent_responses_user_id_idx ON idempotent_responses (user_id);
