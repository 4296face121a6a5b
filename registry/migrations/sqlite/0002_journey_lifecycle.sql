-- Full journeys API: normalised phones, updates, cancellations, and indexes for the terms
-- checks. Phones are E.164 (`phone_trunc`: E.164 without its last two digits). Timestamps
-- are INTEGER unix milliseconds.
ALTER TABLE journeys ADD COLUMN driver_phone TEXT;
ALTER TABLE journeys ADD COLUMN driver_phone_trunc TEXT;
ALTER TABLE journeys ADD COLUMN passenger_phone TEXT;
ALTER TABLE journeys ADD COLUMN passenger_phone_trunc TEXT;
ALTER TABLE journeys ADD COLUMN updated_at INTEGER;
ALTER TABLE journeys ADD COLUMN canceled_at INTEGER;
ALTER TABLE journeys ADD COLUMN cancel_code TEXT;
ALTER TABLE journeys ADD COLUMN cancel_message TEXT;

-- Terms checks read a person's journeys by start (same Paris day) and by start and end (too
-- close to another trip).
DROP INDEX journeys_driver_start_idx;
DROP INDEX journeys_passenger_start_idx;
CREATE INDEX journeys_driver_time_idx ON journeys (driver_identity_key, start_datetime, end_datetime);
CREATE INDEX journeys_passenger_time_idx ON journeys (passenger_identity_key, start_datetime, end_datetime);

-- What a journey looked like before each update or cancellation. Append-only.
CREATE TABLE journey_revisions (
    id          INTEGER PRIMARY KEY,
    journey_id  INTEGER NOT NULL REFERENCES journeys (journey_id),
    kind        TEXT NOT NULL CHECK (kind IN ('update', 'cancel')),
    revised_at  INTEGER NOT NULL,
    body        TEXT NOT NULL
);
CREATE INDEX journey_revisions_journey_idx ON journey_revisions (journey_id);

CREATE TRIGGER journey_revisions_no_update BEFORE UPDATE ON journey_revisions
BEGIN
    SELECT RAISE(ABORT, 'journey_revisions is append-only');
END;
CREATE TRIGGER journey_revisions_no_delete BEFORE DELETE ON journey_revisions
BEGIN
    SELECT RAISE(ABORT, 'journey_revisions is append-only');
END;
