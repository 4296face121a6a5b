-- Signing-key rotation. `retired_at` now also holds a planned retirement: a key verifies
-- until then. Application tokens never expire, so a rotation keeps an old key published
-- while a live application's token was signed with it, unless the rotation says otherwise
-- (`keep_for_applications` false: an emergency rotation after a key leak).

ALTER TABLE signing_keys ADD COLUMN keep_for_applications BOOLEAN NOT NULL DEFAULT TRUE;
ALTER TABLE applications ADD COLUMN kid TEXT;
CREATE INDEX applications_kid ON applications (kid) WHERE revoked_at IS NULL;

-- Before this migration a deployment had exactly one key: it signed every application.
UPDATE applications SET kid = (SELECT kid FROM signing_keys ORDER BY created_at DESC LIMIT 1)
WHERE kid IS NULL;
