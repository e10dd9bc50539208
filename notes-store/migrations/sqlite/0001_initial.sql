-- Tollgate notes store: the resource owners' notes. `owner` is the `sub` of the
-- exchanged token that wrote it, `written_by` its `act.sub`. Times are Unix seconds.

CREATE TABLE notes (
    id         TEXT PRIMARY KEY NOT NULL,
    owner      TEXT NOT NULL,
    title      TEXT NOT NULL,
    body       TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    written_by TEXT NOT NULL
);

CREATE INDEX notes_by_owner ON notes (owner, created_at);
