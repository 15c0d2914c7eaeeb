"""The serving app freezes its start-up objects out of the garbage collector's full
scans (``create_app(freeze_gc=True)``, what ``suishen serve`` runs), so a full
collection in a serving process scans only what was made since; apps built by tests
do not. Each case runs in a fresh interpreter: freezing is process-wide."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

SCRIPT = textwrap.dedent("""
    import asyncio, gc, json, os, sys
    os.environ["SUISHEN_DATA_DIR"] = sys.argv[2]
    from suishen.app.main import create_app, create_served_app
    app = create_served_app() if sys.argv[1] == "served" else create_app()

    async def main():
        async with app.router.lifespan_context(app):
            frozen = gc.get_freeze_count()
        print(json.dumps({"frozen": frozen}))

    asyncio.run(main())
""")


def run(kind: str, data: Path) -> dict[str, int]:
    done = subprocess.run([sys.executable, "-c", SCRIPT, kind, str(data)], capture_output=True,
                          text=True, timeout=120, check=True)
    answer: dict[str, int] = json.loads(done.stdout.strip().splitlines()[-1])
    return answer


def test_the_served_app_freezes_what_start_up_made(tmp_path: Path) -> None:
    served = run("served", tmp_path / "a")
    plain = run("plain", tmp_path / "b")
    assert served["frozen"] > 20_000  # modules, routes, keys, the runtime
    assert plain["frozen"] == 0
