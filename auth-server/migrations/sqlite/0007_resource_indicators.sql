-- Resource indicators (RFC 8707).

-- Resource URIs a client may ask tokens for, besides its default audience
-- (JSON array).
ALTER TABLE clients ADD COLUMN resources TEXT NOT NULL DEFAULT '[]';

-- The audience an authorization code's tokens are for (the requested resource,
-- or the client's default).
ALTER TABLE authorization_codes ADD COLUMN audience TEXT;
