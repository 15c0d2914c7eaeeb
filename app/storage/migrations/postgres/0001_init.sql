-- Suishen schema, PostgreSQL flavour of sqlite/0001_init.sql (same tables and columns).
-- Applied by PostgresDatabase.migrate() in one transaction under an advisory lock;
-- the schema is taken from search_path, so no table name is schema-qualified here.

CREATE TABLE IF NOT EXISTS subjects (
    sub         text PRIMARY KEY,
    handle      bytea NOT NULL,
    status      text NOT NULL CHECK (status IN ('active', 'suspended')),
    attributes  jsonb NOT NULL DEFAULT '{}'::jsonb,
    created_at  bigint NOT NULL,
    updated_at  bigint NOT NULL,
    CONSTRAINT subjects_handle_key UNIQUE (handle)
);
-- Few citizens are suspended; start-up loads exactly those.
CREATE INDEX IF NOT EXISTS subjects_suspended ON subjects (status) WHERE status = 'suspended';

CREATE TABLE IF NOT EXISTS partners (
    client_id   text PRIMARY KEY,
    name        text NOT NULL,
    scenes      text[] NOT NULL,
    attributes  text[] NOT NULL,
    rate_limit_per_second integer,
    secret_hash text NOT NULL,
    created_at  bigint NOT NULL
);

CREATE TABLE IF NOT EXISTS keysets (
    name        text PRIMARY KEY,
    version     bigint NOT NULL,
    body        jsonb NOT NULL,
    updated_at  bigint NOT NULL
);

CREATE TABLE IF NOT EXISTS audit (
    id             bigserial PRIMARY KEY,
    at_ms          bigint NOT NULL,
    partner_id     text NOT NULL,
    partner_name   text NOT NULL,
    scene          text NOT NULL,
    checkpoint     text,
    direction      text,
    reason         text NOT NULL,
    subject_handle bytea,
    kid            text,
    request_id     text
);
-- "My verifications, newest first, page by id": an index-only walk backwards.
CREATE INDEX IF NOT EXISTS audit_subject ON audit (subject_handle, id);
