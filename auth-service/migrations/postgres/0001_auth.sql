-- Operators, their users, application tokens, signing keys, the blacklist record and the
-- append-only audit log. PostgreSQL is the system of record.

CREATE TABLE operators (
    id          BIGSERIAL PRIMARY KEY,
    name        TEXT NOT NULL,
    siret       TEXT NOT NULL UNIQUE,
    created_at  TIMESTAMPTZ NOT NULL
);

CREATE TABLE users (
    id             UUID PRIMARY KEY,
    email          TEXT NOT NULL UNIQUE,          -- stored lower-cased
    password_hash  TEXT NOT NULL,                 -- argon2id PHC string
    role           TEXT NOT NULL,
    operator_id    BIGINT REFERENCES operators (id),
    first_name     TEXT NOT NULL,
    last_name      TEXT NOT NULL,
    created_at     TIMESTAMPTZ NOT NULL
);
CREATE INDEX users_operator ON users (operator_id);

CREATE TABLE applications (
    uuid         UUID PRIMARY KEY,
    name         TEXT NOT NULL,
    operator_id  BIGINT NOT NULL REFERENCES operators (id),
    created_by   UUID NOT NULL,
    created_at   TIMESTAMPTZ NOT NULL,
    revoked_at   TIMESTAMPTZ
);
CREATE INDEX applications_operator ON applications (operator_id);

CREATE TABLE signing_keys (
    kid          TEXT PRIMARY KEY,
    private_der  BYTEA NOT NULL,
    created_at   TIMESTAMPTZ NOT NULL,
    retired_at   TIMESTAMPTZ
);

CREATE TABLE blacklist (
    id            UUID PRIMARY KEY,
    kind          TEXT NOT NULL,        -- as asked: token, jti, application, credential, user, operator
    value         TEXT NOT NULL,        -- as shown; a raw token is kept only as its SHA-256
    target_kind   TEXT NOT NULL,        -- what gateways check (a token becomes its jti)
    target_value  TEXT NOT NULL,
    reason        TEXT NOT NULL,
    created_by    TEXT NOT NULL,
    created_at    TIMESTAMPTZ NOT NULL,
    expires_at    TIMESTAMPTZ,
    lifted_at     TIMESTAMPTZ,
    lifted_by     TEXT
);
CREATE INDEX blacklist_active ON blacklist (lifted_at);

CREATE TABLE audit (
    id      BIGSERIAL PRIMARY KEY,
    at      TIMESTAMPTZ NOT NULL,
    actor   TEXT NOT NULL,
    role    TEXT,
    action  TEXT NOT NULL,
    target  TEXT NOT NULL,
    detail  TEXT NOT NULL
);

CREATE FUNCTION audit_is_append_only() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'audit is append-only';
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER audit_append_only BEFORE UPDATE OR DELETE ON audit
    FOR EACH ROW EXECUTE FUNCTION audit_is_append_only();
