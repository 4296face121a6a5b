-- Same tables as migrations/postgres, in SQLite's types (uuids as 16-byte BLOBs, times as
-- RFC 3339 TEXT, as sqlx encodes them).

CREATE TABLE operators (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    name        TEXT NOT NULL,
    siret       TEXT NOT NULL UNIQUE,
    created_at  TEXT NOT NULL
);

CREATE TABLE users (
    id             BLOB PRIMARY KEY,
    email          TEXT NOT NULL UNIQUE,
    password_hash  TEXT NOT NULL,
    role           TEXT NOT NULL,
    operator_id    INTEGER REFERENCES operators (id),
    first_name     TEXT NOT NULL,
    last_name      TEXT NOT NULL,
    created_at     TEXT NOT NULL
);
CREATE INDEX users_operator ON users (operator_id);

CREATE TABLE applications (
    uuid         BLOB PRIMARY KEY,
    name         TEXT NOT NULL,
    operator_id  INTEGER NOT NULL REFERENCES operators (id),
    created_by   BLOB NOT NULL,
    created_at   TEXT NOT NULL,
    revoked_at   TEXT
);
CREATE INDEX applications_operator ON applications (operator_id);

CREATE TABLE signing_keys (
    kid          TEXT PRIMARY KEY,
    private_der  BLOB NOT NULL,
    created_at   TEXT NOT NULL,
    retired_at   TEXT
);

CREATE TABLE blacklist (
    id            BLOB PRIMARY KEY,
    kind          TEXT NOT NULL,
    value         TEXT NOT NULL,
    target_kind   TEXT NOT NULL,
    target_value  TEXT NOT NULL,
    reason        TEXT NOT NULL,
    created_by    TEXT NOT NULL,
    created_at    TEXT NOT NULL,
    expires_at    TEXT,
    lifted_at     TEXT,
    lifted_by     TEXT
);
CREATE INDEX blacklist_active ON blacklist (lifted_at);

CREATE TABLE audit (
    id      INTEGER PRIMARY KEY AUTOINCREMENT,
    at      TEXT NOT NULL,
    actor   TEXT NOT NULL,
    role    TEXT,
    action  TEXT NOT NULL,
    target  TEXT NOT NULL,
    detail  TEXT NOT NULL
);

CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit
BEGIN
    SELECT RAISE(ABORT, 'audit is append-only');
END;
CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit
BEGIN
    SELECT RAISE(ABORT, 'audit is append-only');
END;
