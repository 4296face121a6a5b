-- Signals: a rule's finding about a credential (or an operator), kept open while the rule
-- keeps firing (auth_service::signals, docs/security.md "Signals"). Times are unix seconds.

CREATE TABLE signals (
    id           TEXT PRIMARY KEY,
    rule         TEXT NOT NULL,
    -- application, api_credential, user; operator for the rules about an operator.
    subject      TEXT NOT NULL,
    credential   TEXT NOT NULL,
    operator_id  BIGINT,
    -- The numbers and the window, as JSON; the latest firing's.
    evidence     TEXT NOT NULL,
    first_seen   BIGINT NOT NULL,
    last_seen    BIGINT NOT NULL,
    -- open, acknowledged, dismissed, blacklisted.
    state        TEXT NOT NULL,
    note         TEXT,
    updated_by   TEXT,
    updated_at   BIGINT NOT NULL
);
-- At most one signal per rule and credential is open or acknowledged: a rule that keeps
-- firing updates it.
CREATE UNIQUE INDEX signals_active ON signals (rule, subject, credential)
    WHERE state IN ('open', 'acknowledged');
CREATE INDEX signals_state ON signals (state, last_seen);
CREATE INDEX signals_operator ON signals (operator_id, last_seen);

-- Each evaluation period (its first second) is evaluated by one replica of auth-service:
-- the one that inserts it.
CREATE TABLE signal_runs (
    period_start  BIGINT PRIMARY KEY
);
