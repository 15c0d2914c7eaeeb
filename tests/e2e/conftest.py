"""Fixtures for end-to-end tests: the private (stoppable) PostgreSQL and Redis."""

from tests.contract.servers import (  # noqa: F401 - fixtures re-exported for this folder
    private_postgres,
    private_postgres_server,
    private_redis,
    private_redis_server,
)
