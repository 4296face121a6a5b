-- Signing keys are stored sealed (auth_service::kek): `sealed_key` is XChaCha20-Poly1305
-- under the key-encryption key named `kek`, with the kid as associated data. A row written
-- before this migration keeps its clear `private_der` until auth-service seals it at start;
-- a row is exactly one of the two.

ALTER TABLE signing_keys ADD COLUMN sealed_key BYTEA;
ALTER TABLE signing_keys ADD COLUMN kek TEXT;
ALTER TABLE signing_keys ALTER COLUMN private_der DROP NOT NULL;
ALTER TABLE signing_keys ADD CONSTRAINT signing_keys_sealed_or_clear CHECK (
    (sealed_key IS NULL) = (kek IS NULL) AND (sealed_key IS NULL) <> (private_der IS NULL)
);
