-- Venues and check-ins (issue 11 part B), PostgreSQL flavour of sqlite/0006_venues.sql.
CREATE TABLE IF NOT EXISTS venues (
    venue_id      text PRIMARY KEY,
    name          text NOT NULL,
    address       text NOT NULL,
    kind          text NOT NULL,
    enterprise_id text,
    info          text NOT NULL,
    code          text NOT NULL,
    created_at    bigint NOT NULL,
    revoked_at    bigint
);
CREATE INDEX IF NOT EXISTS venues_revoked ON venues (revoked_at) WHERE revoked_at IS NOT NULL;

CREATE TABLE IF NOT EXISTS checkins (
    id             bigserial PRIMARY KEY,
    at_ms          bigint NOT NULL,
    subject_handle bytea NOT NULL,
    venue_id       text NOT NULL
);
CREATE INDEX IF NOT EXISTS checkins_subject ON checkins (subject_handle, id);
CREATE INDEX IF NOT EXISTS checkins_venue ON checkins (venue_id, at_ms);
