"""Process entry points behind ``suishen serve`` and ``suishen migrate``."""

from __future__ import annotations

import asyncio
import atexit
import ipaddress
import os
import shutil
import sys
import tempfile

from suishen.app.settings import Settings
from suishen.errors import ConfigError

DEV_BANNER = """\
==================================================================================
WARNING: development posture listening on {host}, a non-loopback address.
POST /v1/dev/citizen-token mints a token for ANY citizen without authentication,
and anyone who can reach this address can read any citizen's history.
Set SUISHEN_ENV=production for a service on a network.
==================================================================================
"""


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback addresses (127.0.0.0/8, ::1)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_listen_address(settings: Settings, host: str) -> None:
    """Development posture listens on loopback only (like Vault's ``-dev`` server):
    refuse any other address unless ``SUISHEN_ALLOW_DEV_ON_NETWORK=true``, and then
    print a warning banner on every start."""
    if settings.production or is_loopback(host):
        return
    if not settings.allow_dev_on_network:
        raise ConfigError(
            f"development posture refuses to listen on {host} (not loopback): the "
            "development identity provider would be reachable from the network. Set "
            "SUISHEN_ENV=production, listen on 127.0.0.1, or set "
            "SUISHEN_ALLOW_DEV_ON_NETWORK=true to accept the risk"
        )
    sys.stderr.write(DEV_BANNER.format(host=host))
    sys.stderr.flush()


def start_metrics_listener(settings: Settings) -> int | None:
    """Serve ``/metrics`` on its own listener (``SUISHEN_METRICS_HOST``:
    ``SUISHEN_METRICS_PORT``, loopback by default), never on the public port.

    Runs in the ``suishen serve`` process itself, which is uvicorn's supervisor when
    there are several workers: prometheus-client's multiprocess mode (a fresh
    ``PROMETHEUS_MULTIPROC_DIR`` set up here, inherited by the workers) lets this one
    listener report the sum over every worker. Must run before prometheus_client is
    imported. Returns the port, or None when no metrics port is set.
    """
    if settings.metrics_port is None:
        return None
    if "prometheus_client" in sys.modules and "PROMETHEUS_MULTIPROC_DIR" not in os.environ:
        raise ConfigError("metrics listener: prometheus_client imported too early")
    if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        folder = tempfile.mkdtemp(prefix="suishen-metrics-")
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = folder
        atexit.register(shutil.rmtree, folder, True)
    from prometheus_client import CollectorRegistry, start_http_server
    from prometheus_client.multiprocess import MultiProcessCollector

    registry = CollectorRegistry()
    MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    start_http_server(settings.metrics_port, addr=settings.metrics_host, registry=registry)
    return settings.metrics_port


def serve(*, host: str | None = None, port: int | None = None, workers: int | None = None) -> None:
    """Run the service under uvicorn (``SUISHEN_WORKERS`` processes; JSON logs).

    Settings are validated here first so that a production process with missing
    settings refuses to start with one clear line instead of a worker crash loop.
    """
    settings = Settings()
    settings.check_posture()
    listen = host or settings.host
    check_listen_address(settings, listen)
    start_metrics_listener(settings)
    import uvicorn

    from suishen.app.observability import configure_logging

    configure_logging(settings.log_level)
    uvicorn.run(
        "suishen.app.main:create_served_app",
        factory=True,
        host=listen,
        port=port or settings.port,
        workers=workers or settings.workers,
        log_config=None,
        log_level=settings.log_level,
        # One access line per request: EdgeMiddleware writes it (SUISHEN_ACCESS_LOG);
        # uvicorn's own access log would be a second line.
        access_log=False,
        proxy_headers=True,
        server_header=False,
        timeout_graceful_shutdown=15,
        # Slow clients are bounded (issue 8 item 7); a proxy in front adds header and
        # body read timeouts (deploy/nginx.conf).
        limit_concurrency=settings.limit_concurrency,
        timeout_keep_alive=settings.keep_alive_seconds,
        h11_max_incomplete_event_size=settings.max_header_bytes,
    )


def migrate() -> list[str]:
    """Apply pending database migrations; returns the names applied now."""
    from suishen.app.storage.factory import open_database

    async def run() -> list[str]:
        db = await open_database(Settings())
        try:
            return await db.migrate()
        finally:
            await db.close()

    return asyncio.run(run())
