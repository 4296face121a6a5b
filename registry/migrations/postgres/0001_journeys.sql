-- Journeys as received from operators. One row per (operator, operator_journey_id).
CREATE TABLE journeys (
    journey_id             BIGSERIAL PRIMARY KEY,
    uuid                   UUID NOT NULL UNIQUE,
    operator_id            BIGINT NOT NULL,
    operator_journey_id    VARCHAR(256) NOT NULL,
    operator_trip_id       VARCHAR(256) NOT NULL,
    operator_class         CHAR(1) NOT NULL CHECK (operator_class IN ('A', 'B', 'C')),
    start_datetime         TIMESTAMPTZ NOT NULL,
    start_lat              DOUBLE PRECISION NOT NULL,
    start_lon              DOUBLE PRECISION NOT NULL,
    end_datetime           TIMESTAMPTZ NOT NULL,
    end_lat                DOUBLE PRECISION NOT NULL,
    end_lon                DOUBLE PRECISION NOT NULL,
    distance               INTEGER NOT NULL,
    driver_identity_key    CHAR(64) NOT NULL,
    passenger_identity_key CHAR(64) NOT NULL,
    payload                JSONB NOT NULL,
    created_at             TIMESTAMPTZ NOT NULL,
    acquisition_status     TEXT NOT NULL,
    fraud_status           TEXT NOT NULL DEFAULT 'pending',
    anomaly_status         TEXT NOT NULL DEFAULT 'pending',
    terms_violation_labels JSONB NOT NULL DEFAULT '[]',
    fraud_error_labels     JSONB NOT NULL DEFAULT '[]',
    anomaly_error_details  JSONB NOT NULL DEFAULT '[]',
    CONSTRAINT journeys_operator_journey_key UNIQUE (operator_id, operator_journey_id)
);

-- Listings and exports by period.
CREATE INDEX journeys_operator_start_idx ON journeys (operator_id, start_datetime);
-- Terms checks: a person's journeys around a date.
CREATE INDEX journeys_driver_start_idx ON journeys (driver_identity_key, start_datetime);
CREATE INDEX journeys_passenger_start_idx ON journeys (passenger_identity_key, start_datetime);
