-- The journey's payload is kept as the JSON text the registry wrote, not as jsonb. No query
-- looks inside it (the fields that are searched or checked have columns of their own); it is
-- read back whole, to revise a journey. jsonb cost every insert a parse into its binary form
-- and made the stored value a third larger (about 1 000 bytes against 770 for a typical
-- journey), in the row and in the WAL. `json` checks the text is valid JSON and stores it as
-- is. SQLite stores it as TEXT already. The change rewrites the table under an exclusive lock:
-- on a registry already holding millions of journeys, apply it in a maintenance window.
ALTER TABLE journeys ALTER COLUMN payload TYPE json USING payload::json;
