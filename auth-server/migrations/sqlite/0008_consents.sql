-- Remembered consent: what a resource owner has approved for a client, so they
-- are not asked again, and can see and withdraw it.
CREATE TABLE consents (
    subject    TEXT NOT NULL,
    client_id  TEXT NOT NULL REFERENCES clients (client_id) ON DELETE CASCADE,
    scope      TEXT NOT NULL,
    granted_at INTEGER NOT NULL,
    PRIMARY KEY (subject, client_id)
);
CREATE INDEX grants_by_owner ON grants (subject, client_id);
