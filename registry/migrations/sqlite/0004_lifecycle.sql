-- The journey lifecycle (docs/lifecycle.md): durable jobs, incentive campaigns, the
-- incentives computed at 48 h and the monthly funding calls. Timestamps are INTEGER unix
-- milliseconds (UTC); JSON columns are TEXT.

-- Work to do at a given time, one row per (kind, subject). SQLite has one process: a claim
-- is an UPDATE inside BEGIN IMMEDIATE.
CREATE TABLE jobs (
    id           INTEGER PRIMARY KEY,
    kind         TEXT NOT NULL,
    subject      TEXT NOT NULL,
    run_at       INTEGER NOT NULL,
    attempts     INTEGER NOT NULL DEFAULT 0,
    locked_by    TEXT,
    locked_until INTEGER,
    last_error   TEXT,
    done_at      INTEGER,
    created_at   INTEGER NOT NULL,
    CONSTRAINT jobs_kind_subject_key UNIQUE (kind, subject)
);
CREATE INDEX jobs_due_idx ON jobs (run_at) WHERE done_at IS NULL;

ALTER TABLE journeys ADD COLUMN finalized_at INTEGER;

CREATE TABLE campaigns (
    id                       INTEGER PRIMARY KEY,
    name                     TEXT NOT NULL,
    start_at                 INTEGER NOT NULL,
    end_at                   INTEGER NOT NULL,
    operator_classes         TEXT NOT NULL,
    amount_per_km            INTEGER NOT NULL,
    min_distance             INTEGER NOT NULL,
    max_distance             INTEGER NOT NULL,
    area                     TEXT,
    max_per_person_per_day   INTEGER,
    max_per_person_per_month INTEGER,
    budget                   INTEGER,
    created_at               INTEGER NOT NULL
);

CREATE TABLE incentives (
    id               INTEGER PRIMARY KEY,
    journey_id       INTEGER NOT NULL REFERENCES journeys (journey_id),
    campaign_id      INTEGER NOT NULL REFERENCES campaigns (id),
    beneficiary_key  TEXT NOT NULL,
    start_datetime   INTEGER NOT NULL,
    amount           INTEGER NOT NULL,
    computed_at      INTEGER NOT NULL,
    CONSTRAINT incentives_journey_campaign_key UNIQUE (journey_id, campaign_id)
);
CREATE INDEX incentives_campaign_beneficiary_idx ON incentives (campaign_id, beneficiary_key, start_datetime);

CREATE TABLE funding_calls (
    id        INTEGER PRIMARY KEY,
    month     TEXT NOT NULL UNIQUE,
    issued_at INTEGER NOT NULL
);
CREATE TABLE funding_call_lines (
    funding_call_id INTEGER NOT NULL REFERENCES funding_calls (id),
    operator_id     INTEGER NOT NULL,
    campaign_id     INTEGER NOT NULL REFERENCES campaigns (id),
    journey_id      INTEGER NOT NULL REFERENCES journeys (journey_id),
    amount          INTEGER NOT NULL,
    PRIMARY KEY (funding_call_id, journey_id, campaign_id)
);
