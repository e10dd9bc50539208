-- Device authorization grant (RFC 8628).
CREATE TABLE device_codes (
    -- SHA-256 (hex) of the device code: the device's secret.
    device_code_hash TEXT PRIMARY KEY NOT NULL,
    -- What the person types (normalised: upper case, no separators).
    user_code        TEXT NOT NULL UNIQUE,
    client_id        TEXT NOT NULL REFERENCES clients (client_id) ON DELETE CASCADE,
    scope            TEXT NOT NULL,
    created_at       BIGINT NOT NULL,
    expires_at       BIGINT NOT NULL,
    -- Seconds the device must wait between polls; grows on slow_down.
    poll_interval    BIGINT NOT NULL,
    last_polled_at   BIGINT,
    -- pending, approved, denied or redeemed.
    status           TEXT NOT NULL,
    subject          TEXT
);
