"""Issue 7 item 4: one clock, injected into every component the runtime wires."""

from __future__ import annotations

from pathlib import Path

from suishen.app.runtime import build_runtime
from suishen.app.settings import Settings

FAKE_NOW = 1_700_000_123.0  # not today: a component reading time.time would differ


async def test_every_component_sees_the_injected_clock(tmp_path: Path) -> None:
    runtime = await build_runtime(Settings(data_dir=tmp_path), clock=lambda: FAKE_NOW)
    try:
        assert runtime.now() == FAKE_NOW
        partner, _ = await runtime.partners.register(
            name="Library", scenes=["library"], attributes=[], rate_limit_per_second=None
        )
        assert partner.created_at == int(FAKE_NOW)
        subject = await runtime.subjects.enroll("clock-citizen")
        assert subject.created_at == int(FAKE_NOW)
        keyset = runtime.keys.view("codes").keyset
        assert keyset.keys and all(key.created_at == int(FAKE_NOW) for key in keyset.keys)
        # single use: an entry expires on the injected clock, not the wall clock
        assert await runtime.state.first_use(b"k|c", ttl_seconds=60) is True
        assert await runtime.state.first_use(b"k|c", ttl_seconds=60) is False
    finally:
        await runtime.close()
