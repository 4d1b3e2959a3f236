-- How far behind the writer the server that runs a statement is, in milliseconds: the reads a
-- read replica serves (users/reads.rs) return it beside their rows, in the same statement, and
-- a replica further behind than DB_READER_MAX_LAG_MS, or that cannot tell, leaves the read to
-- the writer. NULL means "cannot tell".
--
-- - On the writer, 0 (the reader endpoint of a cluster with no reader instance leads there).
-- - On Aurora, whose readers apply the writer's changes from shared storage rather than a WAL
--   stream: this reader's `replica_lag_in_msec` in `aurora_replica_status()`, the instance
--   named by `aurora_db_instance_identifier()`. Both are Aurora's documented functions; this
--   branch could not be run here (no Aurora).
-- - On a PostgreSQL standby that streams from the primary: 0 once it has replayed all the WAL
--   it has received; otherwise the time since the last transaction it replayed committed on
--   the primary: an overestimate after the primary was idle (the last commit may be old,
--   though the pending WAL is new). What the standby has not received yet is not counted: on a
--   healthy network, milliseconds; a primary gone silent is noticed after
--   `wal_receiver_timeout` (60 s), when the receiver stops.
-- - On a standby with no WAL receiver (cut off from the primary, or restarting it), NULL: its
--   data may be any age.
--
-- The commit times are the primary's clock and `clock_timestamp()` the standby's: clocks
-- apart by more than the bound would blur it (AWS keeps instances within a millisecond).
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
    IF NOT pg_is_in_recovery() THEN
        RETURN 0;
    END IF;
    IF to_regproc('aurora_replica_status') IS NOT NULL THEN
        RETURN (
            SELECT replica_lag_in_msec::bigint
            FROM aurora_replica_status()
            WHERE server_id = aurora_db_instance_identifier()
        );
    END IF;
    IF NOT EXISTS (SELECT FROM pg_stat_wal_receiver) THEN
        RETURN NULL;
    END IF;
    IF pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn() THEN
        RETURN 0;
    END IF;
    RETURN (extract(epoch FROM clock_timestamp() - pg_last_xact_replay_timestamp()) * 1000)::bigint;
END
$$;
