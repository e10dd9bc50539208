-- Signing-key rotation without a flag day: a key is published first and signs
-- only from `activate_at` on. Keys stored before this migration were active at
-- once.
ALTER TABLE signing_keys ADD COLUMN activate_at INTEGER;
UPDATE signing_keys SET activate_at = created_at WHERE activate_at IS NULL;
