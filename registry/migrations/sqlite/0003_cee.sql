-- CEE applications (energy-saving certificates). One row per application, never deleted:
-- an operator's delete sets `deleted_at` (kept for audit) and the row stops blocking.
-- `datetime` is the operation: the claimed journey's end (short) or the cost sharing (long).
-- Timestamps are INTEGER unix milliseconds (UTC).
CREATE TABLE cee_applications (
    id                    INTEGER PRIMARY KEY,
    uuid                  TEXT NOT NULL UNIQUE,
    operator_id           INTEGER NOT NULL,
    journey_type          TEXT NOT NULL CHECK (journey_type IN ('short', 'long')),
    journey_id            INTEGER REFERENCES journeys (journey_id),
    identity_key          TEXT NOT NULL,
    driving_license       TEXT NOT NULL,
    last_name_trunc       TEXT NOT NULL,
    phone_trunc           TEXT NOT NULL,
    datetime              INTEGER NOT NULL,
    application_timestamp INTEGER NOT NULL,
    token                 TEXT NOT NULL,
    created_at            INTEGER NOT NULL,
    deleted_at            INTEGER,
    CHECK ((journey_type = 'short') = (journey_id IS NOT NULL))
);

-- A journey is claimed by one live application at most.
CREATE UNIQUE INDEX cee_applications_journey_key ON cee_applications (journey_id)
    WHERE journey_id IS NOT NULL AND deleted_at IS NULL;
-- The cool-downs look a person up by each of their keys.
CREATE INDEX cee_applications_identity_idx ON cee_applications (identity_key);
CREATE INDEX cee_applications_licence_idx ON cee_applications (driving_license);
CREATE INDEX cee_applications_name_phone_idx ON cee_applications (last_name_trunc, phone_trunc);
