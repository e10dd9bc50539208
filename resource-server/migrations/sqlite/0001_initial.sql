-- Tollgate resource server: the resource owners' data. `owner` is the `sub` of
-- the access token that wrote it. Times are Unix seconds.

CREATE TABLE profiles (
    owner        TEXT PRIMARY KEY NOT NULL,
    display_name TEXT NOT NULL,
    email        TEXT NOT NULL,
    updated_at   INTEGER NOT NULL
);

CREATE TABLE notes (
    id         TEXT PRIMARY KEY NOT NULL,
    owner      TEXT NOT NULL,
    title      TEXT NOT NULL,
    body       TEXT NOT NULL,
    created_at INTEGER NOT NULL
);

CREATE INDEX notes_by_owner ON notes (owner, created_at);
