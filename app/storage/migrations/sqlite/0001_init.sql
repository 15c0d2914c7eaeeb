CREATE TABLE IF NOT EXISTS subjects (
    sub         TEXT PRIMARY KEY,
    handle      BLOB NOT NULL UNIQUE,
    status      TEXT NOT NULL CHECK (status IN ('active', 'suspended')),
    attributes  TEXT NOT NULL DEFAULT '{}',
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS subjects_suspended ON subjects (status) WHERE status = 'suspended';

CREATE TABLE IF NOT EXISTS partners (
    client_id   TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    scenes      TEXT NOT NULL,
    attributes  TEXT NOT NULL,
    rate_limit_per_second INTEGER,
    secret_hash TEXT NOT NULL,
    created_at  INTEGER NOT NULL
);

CREATE TABLE IF NOT EXISTS keysets (
    name        TEXT PRIMARY KEY,
    version     INTEGER NOT NULL,
    body        TEXT NOT NULL,
    updated_at  INTEGER NOT NULL
);

CREATE TABLE IF NOT EXISTS audit (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    at_ms          INTEGER NOT NULL,
    partner_id     TEXT NOT NULL,
    partner_name   TEXT NOT NULL,
    scene          TEXT NOT NULL,
    checkpoint     TEXT,
    direction      TEXT,
    reason         TEXT NOT NULL,
    subject_handle BLOB,
    kid            TEXT,
    request_id     TEXT
);
CREATE INDEX IF NOT EXISTS audit_subject ON audit (subject_handle, id);
