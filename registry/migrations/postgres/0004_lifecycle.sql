-- The journey lifecycle (docs/lifecycle.md): durable jobs, incentive campaigns, the
-- incentives computed at 48 h and the monthly funding calls.

-- Work to do at a given time. One row per (kind, subject): a journey's checks at 24 h and
-- its final pass at 48 h (subject = journey_id), a month's funding call (subject = YYYY-MM).
-- A runner claims due rows for a lease (`locked_by`, `locked_until`); several registry
-- replicas claim with FOR UPDATE SKIP LOCKED. A job's work and its `done_at` commit together.
CREATE TABLE jobs (
    id           BIGSERIAL PRIMARY KEY,
    kind         TEXT NOT NULL,
    subject      TEXT NOT NULL,
    run_at       TIMESTAMPTZ NOT NULL,
    attempts     INTEGER NOT NULL DEFAULT 0,
    locked_by    TEXT,
    locked_until TIMESTAMPTZ,
    last_error   TEXT,
    done_at      TIMESTAMPTZ,
    created_at   TIMESTAMPTZ NOT NULL,
    CONSTRAINT jobs_kind_subject_key UNIQUE (kind, subject)
);
CREATE INDEX jobs_due_idx ON jobs (run_at) WHERE done_at IS NULL;

-- When the journey's status became final (48 h after its start); NULL before.
ALTER TABLE journeys ADD COLUMN finalized_at TIMESTAMPTZ;

-- Incentive campaigns, defined by registry admins. Amounts in cents, distances in metres.
CREATE TABLE campaigns (
    id                       BIGSERIAL PRIMARY KEY,
    name                     TEXT NOT NULL,
    start_at                 TIMESTAMPTZ NOT NULL,
    end_at                   TIMESTAMPTZ NOT NULL,
    -- JSON array of operator classes, e.g. ["B","C"].
    operator_classes         JSONB NOT NULL,
    amount_per_km            BIGINT NOT NULL,
    min_distance             BIGINT NOT NULL,
    max_distance             BIGINT NOT NULL,
    -- GeoJSON Polygon or MultiPolygon geometry; NULL: everywhere.
    area                     JSONB,
    max_per_person_per_day   BIGINT,
    max_per_person_per_month BIGINT,
    budget                   BIGINT,
    created_at               TIMESTAMPTZ NOT NULL
);

-- What a campaign pays for a journey, computed once at 48 h. The beneficiary is the driver.
CREATE TABLE incentives (
    id               BIGSERIAL PRIMARY KEY,
    journey_id       BIGINT NOT NULL REFERENCES journeys (journey_id),
    campaign_id      BIGINT NOT NULL REFERENCES campaigns (id),
    beneficiary_key  TEXT NOT NULL,
    -- The journey's start, kept here for the caps' day and month windows.
    start_datetime   TIMESTAMPTZ NOT NULL,
    amount           BIGINT NOT NULL,
    computed_at      TIMESTAMPTZ NOT NULL,
    CONSTRAINT incentives_journey_campaign_key UNIQUE (journey_id, campaign_id)
);
CREATE INDEX incentives_campaign_beneficiary_idx ON incentives (campaign_id, beneficiary_key, start_datetime);

-- A month's funding call, issued on the 6th of the following month (Europe/Paris), and its
-- lines: a snapshot, so a journey canceled after the issue stays in it.
CREATE TABLE funding_calls (
    id        BIGSERIAL PRIMARY KEY,
    month     TEXT NOT NULL UNIQUE,
    issued_at TIMESTAMPTZ NOT NULL
);
CREATE TABLE funding_call_lines (
    funding_call_id BIGINT NOT NULL REFERENCES funding_calls (id),
    operator_id     BIGINT NOT NULL,
    campaign_id     BIGINT NOT NULL REFERENCES campaigns (id),
    journey_id      BIGINT NOT NULL REFERENCES journeys (journey_id),
    amount          BIGINT NOT NULL,
    PRIMARY KEY (funding_call_id, journey_id, campaign_id)
);
