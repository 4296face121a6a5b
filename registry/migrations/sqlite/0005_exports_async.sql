-- The reference's asynchronous export (POST /{v}/exports, docs/lifecycle.md); see the
-- PostgreSQL migration 0008 for the columns. Timestamps are INTEGER unix milliseconds (UTC);
-- the uuid and the JSON columns are TEXT.
CREATE TABLE exports (
    uuid              TEXT PRIMARY KEY,
    target            TEXT NOT NULL,
    status            TEXT NOT NULL,
    owner_operator_id INTEGER,
    created_by        TEXT NOT NULL,
    tz                TEXT NOT NULL,
    start_at          INTEGER NOT NULL,
    end_at            INTEGER NOT NULL,
    operator_ids      TEXT NOT NULL,
    recipients        TEXT NOT NULL,
    file_name         TEXT,
    row_count         INTEGER,
    byte_count        INTEGER,
    error             TEXT,
    created_at        INTEGER NOT NULL,
    started_at        INTEGER,
    completed_at      INTEGER,
    expires_at        INTEGER
);
