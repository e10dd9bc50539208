-- Housekeeping: the periodic purge deletes records by expiry (see
-- `Housekeeping::purge_expired`); these indexes keep that from scanning whole
-- tables. Grants are found through the existing by-grant indexes.
CREATE INDEX authorization_codes_by_expiry ON authorization_codes (expires_at);
CREATE INDEX refresh_tokens_by_expiry ON refresh_tokens (expires_at);
CREATE INDEX access_tokens_by_expiry ON access_tokens (expires_at);
CREATE INDEX device_codes_by_expiry ON device_codes (expires_at);
CREATE INDEX grants_by_creation ON grants (created_at);
