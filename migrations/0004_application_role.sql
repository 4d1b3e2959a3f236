-- The API's own privileges, as a group role: it may read and change rows of the application's
-- tables, nothing else (no DDL, no other schemas, no roles). The functions log in as a member
-- of it (the `migrate` function creates that login role from its own secret); the owner that
-- runs these migrations is never used by the API.
--
-- Roles belong to the whole cluster, so creating it must tolerate its existing already,
-- including when another database's migrations create it at the same moment.
DO $$
BEGIN
    CREATE ROLE users_api_app NOLOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE;
EXCEPTION
    WHEN duplicate_object OR unique_violation THEN NULL;
END
$$;

-- PostgreSQL 15 and later already deny this; older servers let every role create objects here.
REVOKE CREATE ON SCHEMA public FROM PUBLIC;

-- The application's tables by name: `_sqlx_migrations`, in the same schema, stays the owner's.
GRANT USAGE ON SCHEMA public TO users_api_app;
GRANT SELECT, INSERT, UPDATE, DELETE ON users TO users_api_app;

-- Tables that later migrations create get the same grants.
ALTER DEFAULT PRIVILEGES IN SCHEMA public
    GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO users_api_app;
