-- Mutual-TLS client authentication (RFC 8705 §2.1, `tls_client_auth`): the DNS
-- name a client's TLS certificate must carry; NULL for clients that
-- authenticate otherwise.
ALTER TABLE clients ADD COLUMN tls_client_auth_san_dns TEXT;
