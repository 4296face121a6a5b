-- One PostgreSQL role per service, each owning its own schema and nothing else, so that a
-- compromised registry cannot read auth-service's keys, users or credentials (issue 26,
-- finding 3). docs/operations.md, "Database roles".
--
-- Run by the postgres image once, on a new data directory (compose.yaml mounts it into
-- /docker-entrypoint-initdb.d), as the superuser in the database POSTGRES_DB. On an existing
-- deployment run it by hand (docs/operations.md): it is safe to run again, and hands
-- existing schemas and what they hold to their service's role.
--
-- Passwords from the environment: RPC_AUTH_DB_PASSWORD, RPC_REGISTRY_DB_PASSWORD.
-- Names default to rpc_auth / rpc_registry and the schemas auth / registry (the services'
-- defaults); psql -v auth_role=... -v registry_role=... -v auth_schema=...
-- -v registry_schema=... change them (tests/tests/e2e/database_roles.rs runs this file).

\set ON_ERROR_STOP on
\if :{?auth_role}
\else
  \set auth_role rpc_auth
\endif
\if :{?registry_role}
\else
  \set registry_role rpc_registry
\endif
\if :{?auth_schema}
\else
  \set auth_schema auth
\endif
\if :{?registry_schema}
\else
  \set registry_schema registry
\endif
\getenv auth_password RPC_AUTH_DB_PASSWORD
\getenv registry_password RPC_REGISTRY_DB_PASSWORD
\if :{?auth_password}
\else
  \echo 'RPC_AUTH_DB_PASSWORD must be set'
  SELECT 1 / 0 AS "RPC_AUTH_DB_PASSWORD must be set";
\endif
\if :{?registry_password}
\else
  \echo 'RPC_REGISTRY_DB_PASSWORD must be set'
  SELECT 1 / 0 AS "RPC_REGISTRY_DB_PASSWORD must be set";
\endif

BEGIN;

-- The roles: they log in, and may do nothing else beyond what is granted below.
SELECT format('CREATE ROLE %I', name) FROM (VALUES (:'auth_role'), (:'registry_role')) AS r (name)
WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = name) \gexec
ALTER ROLE :"auth_role" LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS
    PASSWORD :'auth_password';
ALTER ROLE :"registry_role" LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS
    PASSWORD :'registry_password';

-- Nobody creates anything outside their schema: no new schemas, no temporary tables, nothing
-- in public.
REVOKE ALL ON DATABASE :"DBNAME" FROM PUBLIC;
GRANT CONNECT ON DATABASE :"DBNAME" TO :"auth_role", :"registry_role";
REVOKE CREATE ON SCHEMA public FROM PUBLIC;

-- Each schema is its service's: it owns it and everything in it. An owner's schema is
-- closed to every other role (no USAGE granted), so neither reads the other's tables.
CREATE SCHEMA IF NOT EXISTS :"auth_schema" AUTHORIZATION :"auth_role";
CREATE SCHEMA IF NOT EXISTS :"registry_schema" AUTHORIZATION :"registry_role";
ALTER SCHEMA :"auth_schema" OWNER TO :"auth_role";
ALTER SCHEMA :"registry_schema" OWNER TO :"registry_role";
REVOKE ALL ON SCHEMA :"auth_schema" FROM PUBLIC;
REVOKE ALL ON SCHEMA :"registry_schema" FROM PUBLIC;

-- A schema made before the roles (its tables owned by the superuser): hand over what it
-- holds. Sequences of serial columns follow their table.
SELECT format('ALTER TABLE %I.%I OWNER TO %I', n.nspname, c.relname, o.role)
FROM pg_class c
JOIN pg_namespace n ON n.oid = c.relnamespace
JOIN (VALUES (:'auth_schema', :'auth_role'), (:'registry_schema', :'registry_role'))
    AS o (schema, role) ON o.schema = n.nspname
WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f')
   OR (c.relkind = 'S' AND NOT EXISTS (
        SELECT FROM pg_depend d WHERE d.objid = c.oid AND d.deptype IN ('a', 'i')))
\gexec
SELECT format('ALTER ROUTINE %s OWNER TO %I', p.oid::regprocedure, o.role)
FROM pg_proc p
JOIN pg_namespace n ON n.oid = p.pronamespace
JOIN (VALUES (:'auth_schema', :'auth_role'), (:'registry_schema', :'registry_role'))
    AS o (schema, role) ON o.schema = n.nspname
\gexec

COMMIT;
