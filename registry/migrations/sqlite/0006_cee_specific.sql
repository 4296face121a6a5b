-- Specific CEE applications (rpc-behaviour §9.6): an operator's history of operations made
-- before the registry, sent by `POST /{v}/policies/cee/import`. They have no journey, no
-- driving licence and no token, and an identity key only once `POST .../import/identity`
-- gives them one. `kind` tells them from the applications registered through the API
-- ('standardized': every row until now, and still every registration).
--
-- SQLite cannot drop a NOT NULL or a CHECK in place: the table is rebuilt, same columns
-- plus `kind`, and its indexes recreated. Nothing references it.
CREATE TABLE cee_applications_v6 (
    id                    INTEGER PRIMARY KEY,
    uuid                  TEXT NOT NULL UNIQUE,
    operator_id           INTEGER NOT NULL,
    journey_type          TEXT NOT NULL CHECK (journey_type IN ('short', 'long')),
    journey_id            INTEGER REFERENCES journeys (journey_id),
    identity_key          TEXT,
    driving_license       TEXT,
    last_name_trunc       TEXT NOT NULL,
    phone_trunc           TEXT NOT NULL,
    datetime              INTEGER NOT NULL,
    application_timestamp INTEGER NOT NULL,
    token                 TEXT,
    created_at            INTEGER NOT NULL,
    deleted_at            INTEGER,
    kind                  TEXT NOT NULL CHECK (kind IN ('standardized', 'specific')),
    CONSTRAINT cee_applications_kind_shape CHECK (
        (kind = 'standardized'
            AND (journey_type = 'short') = (journey_id IS NOT NULL)
            AND identity_key IS NOT NULL
            AND driving_license IS NOT NULL
            AND token IS NOT NULL)
        OR (kind = 'specific'
            AND journey_id IS NULL
            AND driving_license IS NULL
            AND token IS NULL)
    )
);

INSERT INTO cee_applications_v6 (id, uuid, operator_id, journey_type, journey_id,
    identity_key, driving_license, last_name_trunc, phone_trunc, datetime,
    application_timestamp, token, created_at, deleted_at, kind)
SELECT id, uuid, operator_id, journey_type, journey_id, identity_key, driving_license,
    last_name_trunc, phone_trunc, datetime, application_timestamp, token, created_at,
    deleted_at, 'standardized'
FROM cee_applications;

DROP TABLE cee_applications;
ALTER TABLE cee_applications_v6 RENAME TO cee_applications;

-- As in 0003.
CREATE UNIQUE INDEX cee_applications_journey_key ON cee_applications (journey_id)
    WHERE journey_id IS NOT NULL AND deleted_at IS NULL;
CREATE INDEX cee_applications_identity_idx ON cee_applications (identity_key);
CREATE INDEX cee_applications_licence_idx ON cee_applications (driving_license);
CREATE INDEX cee_applications_name_phone_idx ON cee_applications (last_name_trunc, phone_trunc);

-- One live specific application per operator, type and person (name and phone), as the
-- reference's index: importing it again is a per-item "Conflict". A deleted one is kept for
-- audit and no longer counts.
CREATE UNIQUE INDEX cee_applications_specific_key
    ON cee_applications (operator_id, journey_type, last_name_trunc, phone_trunc)
    WHERE kind = 'specific' AND deleted_at IS NULL;
