-- Deactivated users can no longer sign in; their tokens are refused through the blacklist
-- entry (kind user) written in the same transaction. The row stays for the audit trail.

ALTER TABLE users ADD COLUMN disabled_at TIMESTAMPTZ;
