-- Audit records the database refused for their content (issue 8 item 1): set aside so
-- that one bad record never blocks the audit queue. ``record`` is the record as JSON
-- with every non-ASCII character escaped (so NUL and invalid text are storable).
CREATE TABLE IF NOT EXISTS audit_dead_letter (
    id        bigserial PRIMARY KEY,
    failed_at_ms bigint NOT NULL,
    error     text NOT NULL,
    record    text NOT NULL
);
