-- The terms checks find a person's journeys by identity key and start. An identity key is 64
-- hex characters (a SHA-256, checked by the validation), and the two person indexes held it
-- whole: about 100 bytes an entry, 110 MB per million journeys for each index, which outgrow
-- PostgreSQL's buffer cache long before the table does and make every insert and every count
-- compare 64-byte strings. They now hold the key's first 64 bits as a bigint: 24 bytes an
-- entry, about a quarter of the size. Two keys sharing those 64 bits meet in the index only;
-- the queries compare the whole key too (`driver_identity_key = $k`), on the row they read
-- anyway for the other terms conditions. SQLite keeps its text indexes.
--
-- Building the indexes reads the whole table; on a registry already holding millions of
-- journeys, apply it in a maintenance window.
CREATE FUNCTION identity_prefix(key TEXT) RETURNS BIGINT
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    AS $$ SELECT ('x' || left(key, 16))::bit(64)::bigint $$;

DROP INDEX journeys_driver_time_idx;
DROP INDEX journeys_passenger_time_idx;
CREATE INDEX journeys_driver_prefix_idx ON journeys (identity_prefix(driver_identity_key), start_datetime);
CREATE INDEX journeys_passenger_prefix_idx ON journeys (identity_prefix(passenger_identity_key), start_datetime);
