-- Transit journeys (issue 10, SPEC.md §6.2): one fare table per network (the validated
-- JSON as PUT /v1/admin/fares/{network} took it) and the durable journey records.
CREATE TABLE IF NOT EXISTS fare_tables (
    network     TEXT PRIMARY KEY,
    body        TEXT NOT NULL,
    updated_at  INTEGER NOT NULL
);

-- One row per closed journey (or bus tap). ``at_ms`` is when it was closed: the day a
-- journey is settled on (UTC). Times of entry and exit are seconds since the epoch.
CREATE TABLE IF NOT EXISTS journeys (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    at_ms            INTEGER NOT NULL,
    subject_handle   BLOB NOT NULL,
    network          TEXT NOT NULL,
    operator         TEXT NOT NULL,
    status           TEXT NOT NULL,
    fare             INTEGER NOT NULL CHECK (fare >= 0),
    entry_checkpoint TEXT,
    entered_at       INTEGER,
    exit_checkpoint  TEXT,
    exited_at        INTEGER,
    offline          INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS journeys_subject ON journeys (subject_handle, id);
CREATE INDEX IF NOT EXISTS journeys_at ON journeys (at_ms);
