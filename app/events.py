"""The change feed, applied in this process: events published by any process (through
Redis pub/sub and its stream, or in memory on the embedded default) update the caches
that the hot path reads — the suspended set and cached attributes (``subject``), the key
views (``keys``), revoked devices' credentials (``device``), fare tables (``fares``),
enterprises and their agencies (``enterprise``),
everything after a gap in the feed (``resync``). A periodic re-read is the safety net
behind the feed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from suishen.app.observability import Metrics
from suishen.app.services.devices import DeviceService
from suishen.app.services.enterprises import EnterpriseService
from suishen.app.services.keys import KeyManager
from suishen.app.services.subjects import SubjectService
from suishen.app.services.transit import TransitService
from suishen.app.storage.base import Event, StateBackend
from suishen.errors import BackendUnavailable

log = logging.getLogger("suishen.events")
DEVICE_RELOAD_SECONDS = 300.0


class EventDispatcher:
    """Routes change-feed events to the services whose caches they invalidate."""

    def __init__(
        self,
        *,
        keys: KeyManager,
        subjects: SubjectService,
        metrics: Metrics,
        refresh_seconds: float,
        devices: DeviceService | None = None,
        transit: TransitService | None = None,
        enterprises: EnterpriseService | None = None,
    ) -> None:
        self._transit = transit
        self._enterprises = enterprises
        self._keys = keys
        self._devices = devices
        self._subjects = subjects
        self._metrics = metrics
        self._refresh_seconds = refresh_seconds
        self._task: asyncio.Task[None] | None = None

    def start(self, state: StateBackend) -> None:
        """Receive ``state``'s events from now on and start the periodic re-read.
        (The backend's own :meth:`~StateBackend.start` opens the feed.)"""
        state.subscribe(self.apply)
        self._task = asyncio.create_task(self._refresh_loop(), name="key-refresh")

    async def close(self) -> None:
        """Stop the periodic re-read."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def apply(self, event: Event) -> None:
        """Apply one event in this process (unknown kinds are counted and ignored)."""
        self._metrics.events.labels(event.kind).inc()
        if event.kind == "subject":
            await self._subjects.apply(event)
        elif event.kind == "keys":
            await self._keys.refresh(event.data.get("name"))
        elif event.kind == "device" and self._devices is not None:
            await self._devices.apply(event)
        elif event.kind == "fares" and self._transit is not None:
            await self._transit.apply(event)
        elif event.kind == "enterprise" and self._enterprises is not None:
            await self._enterprises.apply(event)
        elif event.kind == "resync":
            await self.resync()

    async def resync(self, *, periodic: bool = False) -> None:
        """Re-read keys, the suspended set and revoked devices' credentials (after a gap
        in the feed, and periodically — the revoked credentials then at most every
        :data:`DEVICE_RELOAD_SECONDS`, a heavy read at city scale)."""
        try:
            await self._keys.refresh()
            await self._subjects.load_suspended()
            if self._devices is not None:
                await self._devices.load_revoked(
                    max_age=DEVICE_RELOAD_SECONDS if periodic else None)
            if self._transit is not None:
                await self._transit.load()
            if self._enterprises is not None:
                await self._enterprises.load()
        except BackendUnavailable:
            log.warning("resync deferred: database unavailable")

    async def _refresh_loop(self) -> None:
        while True:
            await asyncio.sleep(self._refresh_seconds)
            with contextlib.suppress(BackendUnavailable):
                await self.resync(periodic=True)
