-- Offline gate uploads (issue 10, POST /v1/gate-events): every tap an offline gate
-- accepted and the service re-verified. One row per (partner, gate, use): ``use_key``
-- names what the code's signatures cover (kid and cti of a personal code, credential,
-- iat and counter of an offline code) with the scene and direction, never the code's
-- text, so a re-sent (or re-signed) entry is a duplicate. ``gate`` is the checkpoint
-- ('' when the gate gave none). The same use at two gates is two rows: a duplicate use,
-- fared once by the pairing (docs/transit.md).
CREATE TABLE IF NOT EXISTS gate_events (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    partner_id     TEXT NOT NULL,
    gate           TEXT NOT NULL,
    use_key        BLOB NOT NULL,
    subject_handle BLOB NOT NULL,
    scene          TEXT NOT NULL,
    direction      TEXT,
    checkpoint     TEXT,
    decided_at     INTEGER NOT NULL,
    received_at    INTEGER NOT NULL,
    UNIQUE (partner_id, gate, use_key)
);
CREATE INDEX IF NOT EXISTS gate_events_subject ON gate_events (subject_handle, scene);
CREATE INDEX IF NOT EXISTS gate_events_use ON gate_events (use_key);
CREATE INDEX IF NOT EXISTS journeys_subject_network ON journeys (subject_handle, network);

-- Verification history rows uploaded by offline gates are marked (GET /v1/me/verifications).
ALTER TABLE audit ADD COLUMN offline INTEGER NOT NULL DEFAULT 0;
