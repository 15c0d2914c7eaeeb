-- Offline gate uploads (issue 10), PostgreSQL flavour of sqlite/0007_gate_events.sql.
CREATE TABLE IF NOT EXISTS gate_events (
    id             bigserial PRIMARY KEY,
    partner_id     text NOT NULL,
    gate           text NOT NULL,
    use_key        bytea NOT NULL,
    subject_handle bytea NOT NULL,
    scene          text NOT NULL,
    direction      text,
    checkpoint     text,
    decided_at     bigint NOT NULL,
    received_at    bigint NOT NULL,
    UNIQUE (partner_id, gate, use_key)
);
CREATE INDEX IF NOT EXISTS gate_events_subject ON gate_events (subject_handle, scene);
CREATE INDEX IF NOT EXISTS gate_events_use ON gate_events (use_key);
CREATE INDEX IF NOT EXISTS journeys_subject_network ON journeys (subject_handle, network);

ALTER TABLE audit ADD COLUMN IF NOT EXISTS offline boolean NOT NULL DEFAULT false;
