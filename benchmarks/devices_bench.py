"""The service side of offline codes, in process (ASGI, embedded default), one run:

* ``POST /v1/devices`` with a full batch (72 keys: 72 credentials signed, 72 rows
  allocated) — milliseconds per registration and per credential;
* ``GET /v1/trust-bundle``: size and time of a cold build (cache empty) and of a cached
  answer, with the configured status-list size (``--list-size``, the service default
  1,048,576; the city needs ~42.5 M, see ``bundle_size.py`` for that scale);
* ``?since=`` after ``--revoke`` device revocations: the delta's size against the full
  bundle's.

::

    .venv/bin/python benchmarks/devices_bench.py
    .venv/bin/python benchmarks/devices_bench.py --devices 50 --revoke 10 --list-size 4194304

It prints one JSON object; it exits 0 whatever the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from suishen.app.main import create_app
from suishen.app.settings import Settings
from suishen.keys.algorithms import Alg, PrivateKey

ADMIN = "bench-admin-token-0123456789abcdef0123456789"


async def run(args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as folder:
        settings = Settings(data_dir=Path(folder), admin_token=ADMIN,
                            offline_status_list_size=args.list_size)
        app = create_app(settings)
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://b") as c:
                return await measure(c, args)


async def measure(c: httpx.AsyncClient, args: argparse.Namespace) -> dict[str, Any]:
    admin = {"Authorization": f"Bearer {ADMIN}"}
    devices, times = [], []
    for n in range(args.devices):
        token = (await c.post("/v1/dev/citizen-token", json={"sub": f"bench-{n}"})).json()
        citizen = {"Authorization": f"Bearer {token['access_token']}"}
        keys = [PrivateKey.generate(Alg.ES256).public().jwk_members() for _ in range(72)]
        start = time.perf_counter()
        r = await c.post("/v1/devices", headers=citizen, json={"name": "bench", "keys": keys})
        times.append(time.perf_counter() - start)
        assert r.status_code == 201, r.text
        devices.append((citizen, r.json()["device_id"]))
    partner = (await c.post("/v1/admin/partners", headers=admin,
                            json={"name": "bench gate", "scenes": ["metro"]})).json()
    token = (await c.post("/v1/oauth/token", data={
        "grant_type": "client_credentials", "client_id": partner["client_id"],
        "client_secret": partner["client_secret"]})).json()["access_token"]
    gate = {"Authorization": f"Bearer {token}"}
    start = time.perf_counter()
    full = await c.get("/v1/trust-bundle", headers=gate)
    cold = time.perf_counter() - start
    start = time.perf_counter()
    await c.get("/v1/trust-bundle", headers=gate)
    cached = time.perf_counter() - start
    version = int(full.headers["x-bundle-version"])
    for citizen, device_id in devices[: args.revoke]:
        assert (await c.delete(f"/v1/devices/{device_id}", headers=citizen)).status_code == 204
    start = time.perf_counter()
    delta = await c.get("/v1/trust-bundle", headers=gate, params={"since": version})
    delta_time = time.perf_counter() - start
    return {
        "devices": args.devices,
        "register_72_keys_ms_median": round(statistics.median(times) * 1000, 1),
        "per_credential_ms": round(statistics.median(times) * 1000 / 72, 2),
        "list_size": args.list_size,
        "bundle_bytes": len(full.content),
        "bundle_cold_build_ms": round(cold * 1000, 1),
        "bundle_cached_ms": round(cached * 1000, 2),
        "revoked_devices": args.revoke,
        "delta_is_delta": delta.headers.get("x-bundle-since") == str(version),
        "delta_bytes": len(delta.content),
        "delta_ms": round(delta_time * 1000, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=20)
    parser.add_argument("--revoke", type=int, default=5)
    parser.add_argument("--list-size", type=int, default=1_048_576)
    args = parser.parse_args()
    print(json.dumps(asyncio.run(run(args)), indent=2))


if __name__ == "__main__":
    main()
