-- Same tables as migrations/postgres, in SQLite's types (uuids as 16-byte BLOBs, times as
-- RFC 3339 TEXT, as sqlx encodes them).

ALTER TABLE operators ADD COLUMN refresh_rotation BOOLEAN NOT NULL DEFAULT FALSE;

CREATE TABLE credentials (
    access_key   BLOB PRIMARY KEY,
    secret_hash  TEXT NOT NULL,
    operator_id  INTEGER NOT NULL REFERENCES operators (id),
    role         TEXT NOT NULL,
    created_by   TEXT NOT NULL,
    created_at   TEXT NOT NULL,
    revoked_at   TEXT
);
CREATE INDEX credentials_operator ON credentials (operator_id);

CREATE TABLE token_families (
    id            BLOB PRIMARY KEY,
    access_key    BLOB NOT NULL REFERENCES credentials (access_key),
    created_at    TEXT NOT NULL,
    last_used_at  TEXT NOT NULL,
    revoked_at    TEXT
);
CREATE INDEX token_families_credential ON token_families (access_key);

CREATE TABLE refresh_tokens (
    hash        TEXT PRIMARY KEY,
    family_id   BLOB NOT NULL REFERENCES token_families (id),
    created_at  TEXT NOT NULL,
    expires_at  TEXT NOT NULL,
    spent_at    TEXT
);
CREATE INDEX refresh_tokens_family ON refresh_tokens (family_id);

CREATE TABLE family_access_tokens (
    jti         TEXT PRIMARY KEY,
    family_id   BLOB NOT NULL REFERENCES token_families (id),
    expires_at  TEXT NOT NULL
);
CREATE INDEX family_access_tokens_family ON family_access_tokens (family_id);
