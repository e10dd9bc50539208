-- Revocation (RFC 7009), replay detection (RFC 6749 §4.1.2, RFC 9700 §4.14.2)
-- and what resource servers deny.

-- Every access token minted for a grant, so revoking the grant can deny them.
-- (Client-credentials tokens have no grant and are not recorded: that path
-- writes nothing. They can still be revoked one by one.)
CREATE TABLE access_tokens (
    jti        TEXT PRIMARY KEY NOT NULL,
    grant_id   TEXT NOT NULL REFERENCES grants (grant_id) ON DELETE CASCADE,
    expires_at BIGINT NOT NULL
);
CREATE INDEX access_tokens_by_grant ON access_tokens (grant_id);

-- Revoked access tokens, kept until they expire: the list resource servers
-- fetch and deny.
CREATE TABLE revoked_access_tokens (
    jti        TEXT PRIMARY KEY NOT NULL,
    expires_at BIGINT NOT NULL,
    revoked_at BIGINT NOT NULL
);
CREATE INDEX revoked_access_tokens_by_expiry ON revoked_access_tokens (expires_at);

-- Set when a redeemed code is presented again before its grant was written,
-- so the grant is born revoked.
ALTER TABLE authorization_codes ADD COLUMN replayed_at BIGINT;
