-- How credentials are used, as gateway replicas report it (gateway `usage`, docs/security.md
-- "Usage records"). Credential ids are the token's `sub` as text; times are unix seconds
-- (`_ms`: milliseconds).

-- Requests per credential, route class and outcome: per minute (`span` 60), rolled up per
-- hour (`span` 3600) after `usage.minutes_kept_days`, deleted after `usage.kept_days`.
CREATE TABLE credential_usage (
    subject      TEXT NOT NULL,
    credential   TEXT NOT NULL,
    operator_id  BIGINT,
    span         INTEGER NOT NULL,
    bucket       BIGINT NOT NULL,
    class        TEXT NOT NULL,
    outcome      TEXT NOT NULL,
    requests     BIGINT NOT NULL,
    bytes_in     BIGINT NOT NULL,
    bytes_out    BIGINT NOT NULL,
    PRIMARY KEY (subject, credential, span, bucket, class, outcome)
);
CREATE INDEX credential_usage_bucket ON credential_usage (span, bucket);
CREATE INDEX credential_usage_operator ON credential_usage (operator_id, bucket);

-- The client networks (IPv4 /24, IPv6 /48) each credential is used from, per hour.
CREATE TABLE credential_networks (
    subject     TEXT NOT NULL,
    credential  TEXT NOT NULL,
    hour        BIGINT NOT NULL,
    network     TEXT NOT NULL,
    requests    BIGINT NOT NULL,
    PRIMARY KEY (subject, credential, hour, network)
);
CREATE INDEX credential_networks_hour ON credential_networks (hour);

-- The last request of each credential: when, from which network, with which user agent.
CREATE TABLE credential_last_used (
    subject      TEXT NOT NULL,
    credential   TEXT NOT NULL,
    operator_id  BIGINT,
    at_ms        BIGINT NOT NULL,
    network      TEXT NOT NULL,
    user_agent   TEXT,
    PRIMARY KEY (subject, credential)
);
CREATE INDEX credential_last_used_operator ON credential_last_used (operator_id);

-- The batches applied, so one sent again after a lost answer adds nothing.
CREATE TABLE usage_batches (
    replica      TEXT NOT NULL,
    seq          BIGINT NOT NULL,
    received_at  BIGINT NOT NULL,
    PRIMARY KEY (replica, seq)
);
CREATE INDEX usage_batches_received ON usage_batches (received_at);

-- One row, updated first by each upkeep: replicas of auth-service take turns.
CREATE TABLE usage_upkeep (
    id      INTEGER PRIMARY KEY,
    ran_at  BIGINT NOT NULL
);
INSERT INTO usage_upkeep (id, ran_at) VALUES (1, 0);
