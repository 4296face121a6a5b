-- Identifiers compare byte by byte. Under the database's default collation (a libc locale
-- such as C.UTF-8 or fr_FR.UTF-8), every text comparison in a B-tree copies both strings
-- and calls strcoll, and a journey's insert and terms checks make hundreds of them: in its
-- identity-key, journey-id and job indexes. These columns hold opaque identifiers that are
-- only compared for equality (never sorted for people to read), and under a deterministic
-- collation equality is byte equality anyway, so "C" changes no answer, only the cost.
-- The indexes on these columns are rebuilt. SQLite compares TEXT bytewise already (BINARY).
ALTER TABLE journeys
    ALTER COLUMN operator_journey_id    TYPE VARCHAR(256) COLLATE "C",
    ALTER COLUMN operator_trip_id       TYPE VARCHAR(256) COLLATE "C",
    ALTER COLUMN driver_identity_key    TYPE TEXT COLLATE "C",
    ALTER COLUMN passenger_identity_key TYPE TEXT COLLATE "C";

ALTER TABLE jobs
    ALTER COLUMN kind    TYPE TEXT COLLATE "C",
    ALTER COLUMN subject TYPE TEXT COLLATE "C";

ALTER TABLE cee_applications
    ALTER COLUMN identity_key    TYPE TEXT COLLATE "C",
    ALTER COLUMN driving_license TYPE TEXT COLLATE "C",
    ALTER COLUMN last_name_trunc TYPE TEXT COLLATE "C",
    ALTER COLUMN phone_trunc     TYPE TEXT COLLATE "C";

ALTER TABLE incentives
    ALTER COLUMN beneficiary_key TYPE TEXT COLLATE "C";
