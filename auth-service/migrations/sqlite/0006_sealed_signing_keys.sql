-- Signing keys are stored sealed (auth_service::kek): `sealed_key` is XChaCha20-Poly1305
-- under the key-encryption key named `kek`, with the kid as associated data. A row written
-- before this migration keeps its clear `private_der` until auth-service seals it at start;
-- a row is exactly one of the two. SQLite cannot drop a NOT NULL: the table is rebuilt
-- (nothing references it).

CREATE TABLE signing_keys_sealed (
    kid                    TEXT PRIMARY KEY,
    private_der            BLOB,
    sealed_key             BLOB,
    kek                    TEXT,
    created_at             TEXT NOT NULL,
    retired_at             TEXT,
    keep_for_applications  BOOLEAN NOT NULL DEFAULT TRUE,
    CHECK ((sealed_key IS NULL) = (kek IS NULL) AND (sealed_key IS NULL) <> (private_der IS NULL))
);
INSERT INTO signing_keys_sealed (kid, private_der, created_at, retired_at, keep_for_applications)
    SELECT kid, private_der, created_at, retired_at, keep_for_applications FROM signing_keys;
DROP TABLE signing_keys;
ALTER TABLE signing_keys_sealed RENAME TO signing_keys;
