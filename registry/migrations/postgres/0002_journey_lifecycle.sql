-- Full journeys API: normalised phones, updates, cancellations, and indexes for the terms
-- checks. Phones are E.164 (`phone_trunc`: E.164 without its last two digits).
ALTER TABLE journeys
    ADD COLUMN driver_phone          TEXT,
    ADD COLUMN driver_phone_trunc    TEXT,
    ADD COLUMN passenger_phone       TEXT,
    ADD COLUMN passenger_phone_trunc TEXT,
    ADD COLUMN updated_at            TIMESTAMPTZ,
    ADD COLUMN canceled_at           TIMESTAMPTZ,
    ADD COLUMN cancel_code           TEXT,
    ADD COLUMN cancel_message        TEXT;

DROP INDEX journeys_driver_start_idx;
DROP INDEX journeys_passenger_start_idx;

-- Identity keys become TEXT: parameters are bound as text, and a CHAR(64) column compared
-- with text is cast to text, which no index on it can serve.
ALTER TABLE journeys
    ALTER COLUMN driver_identity_key TYPE TEXT,
    ALTER COLUMN passenger_identity_key TYPE TEXT;

-- Terms checks read a person's journeys by start (same Paris day) and by start and end (too
-- close to another trip): with the end in the index, the closeness test needs no heap fetch
-- for the journeys it rules out.
CREATE INDEX journeys_driver_time_idx ON journeys (driver_identity_key, start_datetime, end_datetime);
CREATE INDEX journeys_passenger_time_idx ON journeys (passenger_identity_key, start_datetime, end_datetime);

-- What a journey looked like before each update or cancellation: the journeys row holds only
-- the current version. Append-only.
CREATE TABLE journey_revisions (
    id          BIGSERIAL PRIMARY KEY,
    journey_id  BIGINT NOT NULL REFERENCES journeys (journey_id),
    kind        TEXT NOT NULL CHECK (kind IN ('update', 'cancel')),
    revised_at  TIMESTAMPTZ NOT NULL,
    -- The payload before an update, or the cancellation body.
    body        JSONB NOT NULL
);
CREATE INDEX journey_revisions_journey_idx ON journey_revisions (journey_id);

CREATE FUNCTION journey_revisions_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'journey_revisions is append-only';
END;
$$;
CREATE TRIGGER journey_revisions_no_update BEFORE UPDATE OR DELETE ON journey_revisions
    FOR EACH ROW EXECUTE FUNCTION journey_revisions_append_only();
