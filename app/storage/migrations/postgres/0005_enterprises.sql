-- Enterprises and their agents (issue 11), PostgreSQL flavour of
-- sqlite/0005_enterprises.sql.
CREATE TABLE IF NOT EXISTS enterprises (
    enterprise_id text PRIMARY KEY,
    name          text NOT NULL,
    uscc          text NOT NULL,
    status        text NOT NULL CHECK (status IN ('active', 'suspended')),
    attributes    jsonb NOT NULL,
    created_at    bigint NOT NULL,
    updated_at    bigint NOT NULL
);

CREATE TABLE IF NOT EXISTS agencies (
    handle        bytea PRIMARY KEY,
    enterprise_id text NOT NULL REFERENCES enterprises (enterprise_id) ON DELETE CASCADE,
    agent_sub     text NOT NULL,
    agent_handle  bytea NOT NULL,
    created_at    bigint NOT NULL,
    UNIQUE (enterprise_id, agent_sub)
);

ALTER TABLE partners ADD COLUMN IF NOT EXISTS enterprise_attributes text[] NOT NULL
    DEFAULT '{}';
