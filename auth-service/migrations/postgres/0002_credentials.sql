-- API credentials (CONTRACT §3.2), their refresh-token families, and the per-operator choice
-- of refresh-token rotation.

ALTER TABLE operators ADD COLUMN refresh_rotation BOOLEAN NOT NULL DEFAULT FALSE;

CREATE TABLE credentials (
    access_key   UUID PRIMARY KEY,
    secret_hash  TEXT NOT NULL,              -- argon2id PHC string of the secret key
    operator_id  BIGINT NOT NULL REFERENCES operators (id),
    role         TEXT NOT NULL,
    created_by   TEXT NOT NULL,
    created_at   TIMESTAMPTZ NOT NULL,
    revoked_at   TIMESTAMPTZ
);
CREATE INDEX credentials_operator ON credentials (operator_id);

-- One family per `POST /api/v1/auth/token/`: every refresh token and access token it mints.
CREATE TABLE token_families (
    id            UUID PRIMARY KEY,
    access_key    UUID NOT NULL REFERENCES credentials (access_key),
    created_at    TIMESTAMPTZ NOT NULL,
    last_used_at  TIMESTAMPTZ NOT NULL,      -- also the row every issue and revoke locks first
    revoked_at    TIMESTAMPTZ
);
CREATE INDEX token_families_credential ON token_families (access_key);

CREATE TABLE refresh_tokens (
    hash        TEXT PRIMARY KEY,            -- hex SHA-256 of the opaque token; never the token
    family_id   UUID NOT NULL REFERENCES token_families (id),
    created_at  TIMESTAMPTZ NOT NULL,
    expires_at  TIMESTAMPTZ NOT NULL,
    spent_at    TIMESTAMPTZ                  -- set when rotated; presenting it again is reuse
);
CREATE INDEX refresh_tokens_family ON refresh_tokens (family_id);

CREATE TABLE family_access_tokens (
    jti         TEXT PRIMARY KEY,
    family_id   UUID NOT NULL REFERENCES token_families (id),
    expires_at  TIMESTAMPTZ NOT NULL
);
CREATE INDEX family_access_tokens_family ON family_access_tokens (family_id);
