-- Venues and check-ins (issue 11 part B, SPEC.md §6.3). ``info`` is the venue's public
-- information as JSON text, ``code`` the signed venue code printed on its poster.
CREATE TABLE IF NOT EXISTS venues (
    venue_id      TEXT PRIMARY KEY,
    name          TEXT NOT NULL,
    address       TEXT NOT NULL,
    kind          TEXT NOT NULL,
    enterprise_id TEXT,
    info          TEXT NOT NULL,
    code          TEXT NOT NULL,
    created_at    INTEGER NOT NULL,
    revoked_at    INTEGER
);
CREATE INDEX IF NOT EXISTS venues_revoked ON venues (revoked_at) WHERE revoked_at IS NOT NULL;

-- One row per check-in (a citizen scanned a venue code), append-only.
CREATE TABLE IF NOT EXISTS checkins (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    at_ms          INTEGER NOT NULL,
    subject_handle BLOB NOT NULL,
    venue_id       TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS checkins_subject ON checkins (subject_handle, id);
CREATE INDEX IF NOT EXISTS checkins_venue ON checkins (venue_id, at_ms);
