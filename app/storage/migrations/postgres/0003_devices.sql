-- Offline codes (issue 9), PostgreSQL flavour of sqlite/0003_devices.sql.
CREATE TABLE IF NOT EXISTS devices (
    device_id   text PRIMARY KEY,
    sub         text NOT NULL,
    name        text NOT NULL,
    created_at  bigint NOT NULL,
    status      text NOT NULL CHECK (status IN ('active', 'revoked')),
    revoked_at  bigint
);
CREATE INDEX IF NOT EXISTS devices_sub ON devices (sub);

CREATE TABLE IF NOT EXISTS credentials (
    device_id    text NOT NULL REFERENCES devices (device_id),
    slot_start   bigint NOT NULL,
    slot_end     bigint NOT NULL,
    status_index bigint NOT NULL,
    kid          text NOT NULL,
    device_key   bytea NOT NULL UNIQUE,
    revoked      boolean NOT NULL DEFAULT false,
    PRIMARY KEY (slot_start, status_index),
    UNIQUE (device_id, slot_start)
);

CREATE INDEX IF NOT EXISTS credentials_revoked ON credentials (slot_start) WHERE revoked;

-- Versions are allocated under an advisory lock (see postgres_devices.py), so they
-- commit in order: a reader that sees version N has seen every flip up to N.
CREATE TABLE IF NOT EXISTS trust_versions (
    version  bigint PRIMARY KEY,
    at       bigint NOT NULL,
    kind     text NOT NULL,
    keys     bigint NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS trust_flips (
    version      bigint NOT NULL,
    slot_start   bigint NOT NULL,
    status_index bigint NOT NULL
);
CREATE INDEX IF NOT EXISTS trust_flips_version ON trust_flips (version);
INSERT INTO trust_versions (version, at, kind) VALUES (1, 0, 'init') ON CONFLICT DO NOTHING;
