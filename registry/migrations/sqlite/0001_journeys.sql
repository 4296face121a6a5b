-- Journeys as received from operators. One row per (operator, operator_journey_id).
-- Timestamps are INTEGER unix milliseconds (UTC) so that range queries sort correctly;
-- JSON columns are TEXT.
CREATE TABLE journeys (
    journey_id             INTEGER PRIMARY KEY,
    uuid                   TEXT NOT NULL UNIQUE,
    operator_id            INTEGER NOT NULL,
    operator_journey_id    TEXT NOT NULL,
    operator_trip_id       TEXT NOT NULL,
    operator_class         TEXT NOT NULL CHECK (operator_class IN ('A', 'B', 'C')),
    start_datetime         INTEGER NOT NULL,
    start_lat              REAL NOT NULL,
    start_lon              REAL NOT NULL,
    end_datetime           INTEGER NOT NULL,
    end_lat                REAL NOT NULL,
    end_lon                REAL NOT NULL,
    distance               INTEGER NOT NULL,
    driver_identity_key    TEXT NOT NULL,
    passenger_identity_key TEXT NOT NULL,
    payload                TEXT NOT NULL,
    created_at             INTEGER NOT NULL,
    acquisition_status     TEXT NOT NULL,
    fraud_status           TEXT NOT NULL DEFAULT 'pending',
    anomaly_status         TEXT NOT NULL DEFAULT 'pending',
    terms_violation_labels TEXT NOT NULL DEFAULT '[]',
    fraud_error_labels     TEXT NOT NULL DEFAULT '[]',
    anomaly_error_details  TEXT NOT NULL DEFAULT '[]',
    CONSTRAINT journeys_operator_journey_key UNIQUE (operator_id, operator_journey_id)
);

-- Listings and exports by period.
CREATE INDEX journeys_operator_start_idx ON journeys (operator_id, start_datetime);
-- Terms checks: a person's journeys around a date.
CREATE INDEX journeys_driver_start_idx ON journeys (driver_identity_key, start_datetime);
CREATE INDEX journeys_passenger_start_idx ON journeys (passenger_identity_key, start_datetime);
