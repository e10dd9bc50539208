-- The notes moved to the notes store, the internal service behind this one.
DROP INDEX IF EXISTS notes_by_owner;
DROP TABLE IF EXISTS notes;
