"""Cost of durable single use (issue 8 item 3): ``first_use`` per operation, in-memory
vs the SQLite file the embedded default keeps in its data directory.

    .venv/bin/python benchmarks/single_use_bench.py [N]
"""

from __future__ import annotations

import asyncio
import secrets
import sys
import tempfile
import time
from pathlib import Path

from suishen.app.storage.memory import MemoryState


async def _run(state: MemoryState, n: int) -> tuple[float, float]:
    keys = [secrets.token_bytes(24) for _ in range(n)]
    started = time.perf_counter()
    for key in keys:
        await state.first_use(key, ttl_seconds=90)
    fresh = (time.perf_counter() - started) / n
    started = time.perf_counter()
    for key in keys:
        await state.first_use(key, ttl_seconds=90)
    return fresh, (time.perf_counter() - started) / n


async def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 50_000
    with tempfile.TemporaryDirectory() as folder:
        states = (
            ("memory", MemoryState()),
            ("sqlite", MemoryState(single_use_path=Path(folder) / "single-use.sqlite3")),
        )
        for name, state in states:
            fresh, replay = await _run(state, n)
            print(f"{name:7s} first_use new {fresh * 1e6:6.1f} us/op  "
                  f"replayed {replay * 1e6:6.1f} us/op  (n={n})")
            await state.close()


if __name__ == "__main__":
    asyncio.run(main())
