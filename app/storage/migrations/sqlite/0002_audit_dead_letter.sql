-- Audit records the database refused for their content (issue 8 item 1): set aside so
-- that one bad record never blocks the audit queue. ``record`` is the record as JSON
-- with every non-ASCII character escaped.
CREATE TABLE IF NOT EXISTS audit_dead_letter (
    id        INTEGER PRIMARY KEY AUTOINCREMENT,
    failed_at_ms INTEGER NOT NULL,
    error     TEXT NOT NULL,
    record    TEXT NOT NULL
);
