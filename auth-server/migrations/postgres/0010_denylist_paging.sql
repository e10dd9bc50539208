-- The denylist is read in pages, in (expires_at, jti) order: a keyset cursor
-- that seeks straight to the live rows. Expired rows stay until the purge
-- (AUTH_PURGE_RETENTION after they expire, 7 days by default), so a walk in
-- jti order would read a week of dead rows on every sync. This index also
-- serves the purge's `expires_at < cutoff`, so the one on expires_at alone goes.
CREATE INDEX revoked_access_tokens_by_expiry_jti ON revoked_access_tokens (expires_at, jti);
DROP INDEX revoked_access_tokens_by_expiry;
