-- The reference's asynchronous export (POST /{v}/exports, docs/lifecycle.md): one row per
-- export asked for. Its file is built by an `export` job (jobs table, subject = uuid) written
-- in the same transaction as the row, mailed by an `export_notify` job and deleted by an
-- `export_expiry` job when its retention period ends.
CREATE TABLE exports (
    uuid              UUID PRIMARY KEY,
    -- 'operator' (asked by an operator's user or application) or 'opendata' (registry staff).
    target            TEXT NOT NULL,
    -- pending, running, success, failure, expired.
    status            TEXT NOT NULL,
    -- The operator of whoever asked; NULL for registry staff. Only that operator (and
    -- registry staff) may read the export.
    owner_operator_id BIGINT,
    -- The credential's id (application uuid, user id): never a name or an address.
    created_by        TEXT NOT NULL,
    tz                TEXT NOT NULL,
    start_at          TIMESTAMPTZ NOT NULL,
    end_at            TIMESTAMPTZ NOT NULL,
    -- JSON array of operator ids; [] = every operator.
    operator_ids      JSONB NOT NULL,
    -- JSON array of addresses to mail: personal data, emptied once mailed and at expiry.
    recipients        JSONB NOT NULL,
    -- The zip's name in the exports directory, once built.
    file_name         TEXT,
    row_count         BIGINT,
    byte_count        BIGINT,
    -- Why the file could not be built (logged in full; this says what kind of failure).
    error             TEXT,
    created_at        TIMESTAMPTZ NOT NULL,
    started_at        TIMESTAMPTZ,
    completed_at      TIMESTAMPTZ,
    expires_at        TIMESTAMPTZ
);
