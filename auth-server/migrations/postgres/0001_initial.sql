-- Tollgate authorization server: initial schema (PostgreSQL).
-- Times are Unix seconds. Secrets are never stored: only their hashes.

CREATE TABLE clients (
    client_id     TEXT PRIMARY KEY NOT NULL,
    name          TEXT NOT NULL,
    -- SHA-256 (hex) of the generated secret; NULL for a public client.
    secret_hash   TEXT,
    -- JSON array; compared by exact string match (RFC 9700 §2.1).
    redirect_uris TEXT NOT NULL,
    -- Space-delimited grant types the client may use.
    grant_types   TEXT NOT NULL,
    -- Space-delimited scopes the client may ask for.
    scope         TEXT NOT NULL,
    -- The resource its access tokens are for (`aud`).
    audience      TEXT NOT NULL,
    created_at    BIGINT NOT NULL
);

CREATE TABLE users (
    subject       TEXT PRIMARY KEY NOT NULL,
    username      TEXT NOT NULL UNIQUE,
    -- argon2id PHC string.
    password_hash TEXT NOT NULL,
    created_at    BIGINT NOT NULL
);

-- One authorization a resource owner gave a client: the family every refresh
-- token rotated from it belongs to.
CREATE TABLE grants (
    grant_id   TEXT PRIMARY KEY NOT NULL,
    client_id  TEXT NOT NULL REFERENCES clients (client_id) ON DELETE CASCADE,
    subject    TEXT NOT NULL,
    scope      TEXT NOT NULL,
    audience   TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    revoked_at BIGINT
);

CREATE TABLE authorization_codes (
    -- SHA-256 (hex) of the code.
    code_hash      TEXT PRIMARY KEY NOT NULL,
    client_id      TEXT NOT NULL REFERENCES clients (client_id) ON DELETE CASCADE,
    subject        TEXT NOT NULL,
    redirect_uri   TEXT NOT NULL,
    scope          TEXT NOT NULL,
    -- PKCE S256 challenge (RFC 7636 §4.2).
    code_challenge TEXT NOT NULL,
    issued_at      BIGINT NOT NULL,
    expires_at     BIGINT NOT NULL,
    -- Set once, atomically, by the one redemption that succeeds.
    redeemed_at    BIGINT,
    grant_id       TEXT
);

CREATE TABLE refresh_tokens (
    -- SHA-256 (hex) of the token.
    token_hash TEXT PRIMARY KEY NOT NULL,
    grant_id   TEXT NOT NULL REFERENCES grants (grant_id) ON DELETE CASCADE,
    client_id  TEXT NOT NULL,
    scope      TEXT NOT NULL,
    issued_at  BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    -- Set when the token is rotated: a used refresh token is spent.
    used_at    BIGINT
);
CREATE INDEX refresh_tokens_by_grant ON refresh_tokens (grant_id);

CREATE TABLE signing_keys (
    kid         TEXT PRIMARY KEY NOT NULL,
    alg         TEXT NOT NULL,
    -- Base64 PKCS#8 private key.
    private_key TEXT NOT NULL,
    public_jwk  TEXT NOT NULL,
    created_at  BIGINT NOT NULL
);
