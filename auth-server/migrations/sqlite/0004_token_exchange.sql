-- Token exchange (RFC 8693): the audiences a client may exchange a subject's
-- token for (JSON array). Empty: the client may not exchange at all.
ALTER TABLE clients ADD COLUMN exchange_audiences TEXT NOT NULL DEFAULT '[]';
