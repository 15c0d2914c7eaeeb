-- Offline codes (issue 9): devices, their slot credentials, and the trust-bundle version
-- log. A credential row is (slot, status index) -> device: the service never stores the
-- credential itself, only what revocation and refill need.
CREATE TABLE IF NOT EXISTS devices (
    device_id   TEXT PRIMARY KEY,
    sub         TEXT NOT NULL,
    name        TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    status      TEXT NOT NULL CHECK (status IN ('active', 'revoked')),
    revoked_at  INTEGER
);
CREATE INDEX IF NOT EXISTS devices_sub ON devices (sub);

CREATE TABLE IF NOT EXISTS credentials (
    device_id    TEXT NOT NULL REFERENCES devices (device_id),
    slot_start   INTEGER NOT NULL,
    slot_end     INTEGER NOT NULL,
    status_index INTEGER NOT NULL,
    kid          TEXT NOT NULL,
    device_key   BLOB NOT NULL UNIQUE,
    revoked      INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (slot_start, status_index),
    UNIQUE (device_id, slot_start)
);

-- The few revoked credentials (device revoked or citizen suspended), by slot: what a
-- bundle's status lists are built from.
CREATE INDEX IF NOT EXISTS credentials_revoked ON credentials (slot_start) WHERE revoked = 1;

-- Every change of what a trust bundle says gets a new version (revocation, suspension,
-- reactivation, key change, or the passing of time: 'tick'). ``keys`` is the version of
-- the code-signing key set that bundles of this version carry. trust_flips holds the
-- (slot, index) pairs a version revoked, so a delta is one range scan.
CREATE TABLE IF NOT EXISTS trust_versions (
    version  INTEGER PRIMARY KEY AUTOINCREMENT,
    at       INTEGER NOT NULL,
    kind     TEXT NOT NULL,
    keys     INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS trust_flips (
    version      INTEGER NOT NULL,
    slot_start   INTEGER NOT NULL,
    status_index INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS trust_flips_version ON trust_flips (version);
INSERT INTO trust_versions (at, kind) SELECT 0, 'init' WHERE NOT EXISTS (SELECT 1 FROM trust_versions);
