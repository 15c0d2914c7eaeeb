"""Process entry points behind ``suishen serve`` and ``suishen migrate``."""

from __future__ import annotations

import asyncio

from suishen.app.settings import Settings


def serve(*, host: str | None = None, port: int | None = None, workers: int | None = None) -> None:
    """Run the service under uvicorn (``SUISHEN_WORKERS`` processes; JSON logs).

    Settings are validated here first so that a production process with missing
    settings refuses to start with one clear line instead of a worker crash loop.
    """
    import uvicorn

    from suishen.app.observability import configure_logging

    settings = Settings()
    settings.check_posture()
    configure_logging(settings.log_level)
    uvicorn.run(
        "suishen.app.main:create_app",
        factory=True,
        host=host or settings.host,
        port=port or settings.port,
        workers=workers or settings.workers,
        log_config=None,
        log_level=settings.log_level,
        access_log=settings.access_log,
        proxy_headers=True,
        server_header=False,
        timeout_graceful_shutdown=15,
    )


def migrate() -> list[str]:
    """Apply pending database migrations; returns the names applied now."""
    from suishen.app.runtime import open_database

    async def run() -> list[str]:
        db = await open_database(Settings())
        try:
            return await db.migrate()
        finally:
            await db.close()

    return asyncio.run(run())
