-- Enterprises and their agents (issue 11, SPEC.md §6.3). ``attributes`` is the JSON
-- object the operator gave (legal_representative, business_scope, licences).
CREATE TABLE IF NOT EXISTS enterprises (
    enterprise_id TEXT PRIMARY KEY,
    name          TEXT NOT NULL,
    uscc          TEXT NOT NULL,
    status        TEXT NOT NULL CHECK (status IN ('active', 'suspended')),
    attributes    TEXT NOT NULL,
    created_at    INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL
);

-- One agency per (enterprise, agent): the random 10-byte handle an enterprise code
-- carries (blinded per code), and the agent's own subject handle. Removing the agent
-- deletes the row: its codes are refused from then on.
CREATE TABLE IF NOT EXISTS agencies (
    handle        BLOB PRIMARY KEY,
    enterprise_id TEXT NOT NULL REFERENCES enterprises (enterprise_id) ON DELETE CASCADE,
    agent_sub     TEXT NOT NULL,
    agent_handle  BLOB NOT NULL,
    created_at    INTEGER NOT NULL,
    UNIQUE (enterprise_id, agent_sub)
);

-- The enterprise attributes a partner may see (a JSON list of names).
ALTER TABLE partners ADD COLUMN enterprise_attributes TEXT NOT NULL DEFAULT '[]';
