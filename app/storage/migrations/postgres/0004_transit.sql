-- Transit journeys (issue 10), PostgreSQL flavour of sqlite/0004_transit.sql.
CREATE TABLE IF NOT EXISTS fare_tables (
    network     text PRIMARY KEY,
    body        text NOT NULL,
    updated_at  bigint NOT NULL
);

CREATE TABLE IF NOT EXISTS journeys (
    id               bigserial PRIMARY KEY,
    at_ms            bigint NOT NULL,
    subject_handle   bytea NOT NULL,
    network          text NOT NULL,
    operator         text NOT NULL,
    status           text NOT NULL,
    fare             bigint NOT NULL CHECK (fare >= 0),
    entry_checkpoint text,
    entered_at       bigint,
    exit_checkpoint  text,
    exited_at        bigint,
    offline          boolean NOT NULL DEFAULT false
);
CREATE INDEX IF NOT EXISTS journeys_subject ON journeys (subject_handle, id);
CREATE INDEX IF NOT EXISTS journeys_at ON journeys (at_ms);
