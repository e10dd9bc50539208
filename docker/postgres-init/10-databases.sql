-- One database per service: each keeps its own schema and migration history
-- (sqlx records applied migrations per database), as separate microservices
-- should. Run once, when the PostgreSQL data directory is first initialised.
CREATE DATABASE tollgate_auth;
CREATE DATABASE tollgate_resource;
CREATE DATABASE tollgate_notes;
