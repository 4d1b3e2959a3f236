-- Sessions that sit idle are closed by the server, so that connections come back to the
-- database from environments that no longer use them.
--
-- Lambda freezes an execution environment between invocations and reclaims an idle one after
-- some minutes (undocumented; five to fifteen are commonly seen) by destroying it: its
-- connection is never closed, no FIN reaches the server, and without this the session would
-- hold a connection slot and a backend until TCP keepalive noticed, hours later. Every
-- connection a reclaimed environment held counts against max_connections meanwhile.
--
-- 5 minutes, the shortest reclaim commonly seen: a session idle that long belongs to an
-- environment that is about to be reclaimed, or is not, and then pays one reconnect on its
-- next request (TCP, TLS and SCRAM: about 24 ms at in-region distances, `make bench`'s init
-- split), which the function makes within that request (db/connection.rs: after a quiet spell
-- the connection is checked first). RDS Proxy's own client idle timeout is set to match
-- (template.yaml); its connections to the database are closed the same way when idle, and it
-- opens new ones as it needs them.
--
-- A database-level default, like 0005's: it reaches every role, the clones a multi-user
-- rotation makes included. An operator's psql session may `SET idle_session_timeout = 0`.
DO $$
BEGIN
    EXECUTE format('ALTER DATABASE %I SET idle_session_timeout = %L', current_database(), '5min');
END
$$;
