-- 0002 created an index for a listing route that does not exist. An unused index still costs
-- every insert and update, so it goes; a listing route will bring the index its query needs.
-- (Applied migrations are never edited: sqlx checks their checksums.)
DROP INDEX users_created_at_id_idx;
