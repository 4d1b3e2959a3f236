-- Per-session limits as the database's own defaults, so no connection has to send them.
--
-- The functions used to send them in the startup packet (`options=-c statement_timeout=…`),
-- which RDS Proxy refuses outright, and a `SET` after connecting would pin every session to
-- one database connection behind the proxy. A database-level default reaches every role that
-- logs in here, the application's login roles and the clones a multi-user rotation makes
-- included (a role-level default would not: it is not inherited through membership).
--
-- statement_timeout: an API request has a 10 s Lambda timeout; no statement may use half.
-- idle_in_transaction_session_timeout: a session frozen mid-transaction (a Lambda frozen
-- between invocations, a crashed client) releases its locks instead of holding them.
--
-- The `migrate` function sets its own limits on its session (derived from its deadline), and
-- an operator's `SET` in a psql session still wins. New sessions pick these up; change them
-- with a new migration.
DO $$
BEGIN
    EXECUTE format('ALTER DATABASE %I SET statement_timeout = %L', current_database(), '5s');
    EXECUTE format(
        'ALTER DATABASE %I SET idle_in_transaction_session_timeout = %L',
        current_database(),
        '10s'
    );
END
$$;
