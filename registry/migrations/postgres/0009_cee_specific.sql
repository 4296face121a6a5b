-- Specific CEE applications (rpc-behaviour §9.6): an operator's history of operations made
-- before the registry, sent by `POST /{v}/policies/cee/import`. They have no journey, no
-- driving licence and no token, and an identity key only once `POST .../import/identity`
-- gives them one. `kind` tells them from the applications registered through the API
-- ('standardized': every row until now, and still every registration).
ALTER TABLE cee_applications
    ADD COLUMN kind TEXT NOT NULL DEFAULT 'standardized'
        CHECK (kind IN ('standardized', 'specific')),
    ALTER COLUMN identity_key DROP NOT NULL,
    ALTER COLUMN driving_license DROP NOT NULL,
    ALTER COLUMN token DROP NOT NULL;

-- Every writer names the kind.
ALTER TABLE cee_applications ALTER COLUMN kind DROP DEFAULT;

-- The shape of each kind; it replaces "short distance claims a journey, long does not",
-- which now holds for registrations only.
ALTER TABLE cee_applications
    DROP CONSTRAINT cee_applications_check,
    ADD CONSTRAINT cee_applications_kind_shape CHECK (
        (kind = 'standardized'
            AND (journey_type = 'short') = (journey_id IS NOT NULL)
            AND identity_key IS NOT NULL
            AND driving_license IS NOT NULL
            AND token IS NOT NULL)
        OR (kind = 'specific'
            AND journey_id IS NULL
            AND driving_license IS NULL
            AND token IS NULL)
    );

-- One live specific application per operator, type and person (name and phone), as the
-- reference's index: importing it again is a per-item "Conflict". A deleted one is kept for
-- audit and no longer counts.
CREATE UNIQUE INDEX cee_applications_specific_key
    ON cee_applications (operator_id, journey_type, last_name_trunc, phone_trunc)
    WHERE kind = 'specific' AND deleted_at IS NULL;
