-- DPoP (RFC 9449). A client registered as requiring DPoP-bound access tokens
-- (§5.2, `dpop_bound_access_tokens`, 0 or 1), and the key a public client's
-- grant is bound to: the JWK SHA-256 thumbprint (RFC 7638) of the key its
-- first token request proved, which every refresh of the grant must prove
-- again (§5). NULL for grants not bound to a key.
ALTER TABLE clients ADD COLUMN dpop_bound_access_tokens BIGINT NOT NULL DEFAULT 0;
ALTER TABLE grants ADD COLUMN dpop_jkt TEXT;
