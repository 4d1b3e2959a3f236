-- How far behind the writer the server that runs a statement is, in milliseconds: the reads a
-- read replica serves (users/reads.rs) return it beside their rows, in the same statement, and
-- a replica past DB_READER_MAX_LAG_MS leaves the read to the writer.
--
-- 0 on the writer (the reader endpoint of a cluster with no reader instance leads there), and
-- on a standby that has replayed all the WAL it has received. Otherwise, the time since the
-- last transaction it replayed committed on the writer: an overestimate after the writer was
-- idle (the last commit may be old, though the pending WAL is new). What the standby has not
-- received yet is not counted: on a healthy network, milliseconds. NULL when it cannot tell
-- (WAL pending, nothing replayed since the standby started).
--
-- On Aurora, whose readers apply the writer's changes from shared storage, not from a WAL
-- stream, PostgreSQL's receive and replay positions may both be NULL: then this answers 0, and
-- the bound rests on Aurora's own (AuroraReplicaLag, typically well under 100 ms).
--
-- PL/pgSQL, not SQL: a SQL function is inlined, and planned again with every statement that
-- calls it (unnamed statements are planned at each execution), where PL/pgSQL plans its body
-- once per session. Called once per statement, as a scalar subquery. Measured with pgbench
-- (unnamed statements, pg_stat_statements' planning and execution per call, three runs): the
-- read by id 15 to 21 µs alone, 25 to 35 µs with this function, 42 to 48 µs with the SQL one.
--
-- Expand-only: a new function, which nothing used before.
CREATE FUNCTION replica_lag_ms() RETURNS bigint
LANGUAGE plpgsql
AS $$
BEGIN
    RETURN CASE
        WHEN NOT pg_is_in_recovery() THEN 0
        WHEN pg_last_wal_receive_lsn() IS NOT DISTINCT FROM pg_last_wal_replay_lsn() THEN 0
        ELSE (extract(epoch FROM clock_timestamp() - pg_last_xact_replay_timestamp()) * 1000)::bigint
    END;
END
$$;
