-- The pending device authorizations of one client are counted on every device
-- authorization request (the per-client cap, docs/security.md "Limits").
CREATE INDEX device_codes_pending_by_client ON device_codes (client_id, status, expires_at);
