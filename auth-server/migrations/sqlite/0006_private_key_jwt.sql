-- private_key_jwt client authentication (RFC 7523 §2.2, RFC 7521 §4.2).

-- The client's public keys (a JSON array of JWKs); NULL for other clients.
ALTER TABLE clients ADD COLUMN jwks TEXT;

-- Client assertions seen, kept until they expire: a `jti` is accepted once.
CREATE TABLE client_assertions (
    client_id  TEXT NOT NULL,
    jti        TEXT NOT NULL,
    expires_at INTEGER NOT NULL,
    PRIMARY KEY (client_id, jti)
);
