"""Storage behind small repository interfaces (:mod:`suishen.app.storage.base`), one
implementation per backend: SQLite (embedded default) and PostgreSQL for durable data;
in-process and Redis for fast shared state (single use, rate limits, the change feed,
cached subjects)."""
