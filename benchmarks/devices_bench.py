"""The service side of offline codes, in process (ASGI, embedded default), one run:

* ``POST /v1/devices`` with a full batch (72 keys: 72 credentials signed, 72 rows
  allocated) — milliseconds per registration and per credential;
* ``GET /v1/trust-bundle``: size and time of a cold build (cache empty) and of a cached
  answer, with the configured status-list size (``--list-size``, the service default
  1,048,576; the city needs ~42.5 M, see ``bundle_size.py`` for that scale);
* ``?since=`` after ``--revoke`` device revocations: the delta's size against the full
  bundle's;
* with ``--redis-url`` (the shared bundle cache, app/services/trust.py): the same run
  on Redis state, then a **second process** (this script with ``--second``, on the
  same data directory — SQLite file, or ``--database-url`` PostgreSQL — and Redis)
  fetches the bundle of the same version: its first answer comes from Redis (no
  build), timed against the first process's cold build; the bytes must be equal.

::

    .venv/bin/python benchmarks/devices_bench.py
    .venv/bin/python benchmarks/devices_bench.py --devices 50 --revoke 10 --list-size 4194304
    .venv/bin/python benchmarks/devices_bench.py --redis-url redis://127.0.0.1:6379/0

It prints one JSON object; it exits 0 whatever the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from suishen.app.main import create_app
from suishen.app.settings import Settings
from suishen.keys.algorithms import Alg, PrivateKey

ADMIN = "bench-admin-token-0123456789abcdef0123456789"


def settings_for(folder: str, args: argparse.Namespace) -> Settings:
    extra: dict[str, Any] = {}
    if args.redis_url:
        extra.update(redis_url=args.redis_url, redis_prefix=args.prefix)
    if args.database_url:
        extra.update(database_url=args.database_url)
    return Settings(data_dir=Path(folder), admin_token=ADMIN,
                    offline_status_list_size=args.list_size, **extra)


async def run(args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as folder:
        app = create_app(settings_for(folder, args))
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://b") as c:
                result = await measure(c, args)
                if args.redis_url:
                    result.update(await second_process(c, folder, args, result))
        if args.redis_url:
            await drop_prefix(args.redis_url, args.prefix)
        return result


async def second_process(c: httpx.AsyncClient, folder: str, args: argparse.Namespace,
                         first: dict[str, Any]) -> dict[str, Any]:
    """Start another process on the same stores; it fetches the current bundle."""
    gate = first.pop("_gate")
    mine = await c.get("/v1/trust-bundle", headers=gate)  # the version it will serve too
    job = {"folder": folder, "client": first.pop("_client"),
           "version": mine.headers["x-bundle-version"]}
    cmd = [sys.executable, __file__, "--second", "--list-size", str(args.list_size),
           "--redis-url", args.redis_url, "--prefix", args.prefix]
    if args.database_url:
        cmd += ["--database-url", args.database_url]
    out = subprocess.run(cmd, input=json.dumps(job), capture_output=True,  # noqa: S603
                         text=True, check=True)  # this script, fixed arguments
    other = json.loads(out.stdout)
    return {
        "second_process_version": other["version"],
        "second_process_shared_fetch_ms": other["first_ms"],
        "second_process_cached_ms": other["cached_ms"],
        "second_process_same_bytes": other["sha256"] == hashlib.sha256(mine.content).hexdigest(),
    }


async def second(args: argparse.Namespace) -> dict[str, Any]:
    """The ``--second`` process: the first fetch (served from Redis) and a cached one."""
    job = json.loads(sys.stdin.read())
    app = create_app(settings_for(job["folder"], args))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://b") as c:
            token = (await c.post("/v1/oauth/token", data={
                "grant_type": "client_credentials", **job["client"]})).json()["access_token"]
            gate = {"Authorization": f"Bearer {token}"}
            r, first = await timed_get(c, "/v1/trust-bundle", gate)
            _, cached = await timed_get(c, "/v1/trust-bundle", gate)
    return {"version": r.headers["x-bundle-version"], "first_ms": round(first * 1000, 1),
            "cached_ms": round(cached * 1000, 2), "sha256": hashlib.sha256(r.content).hexdigest()}


async def drop_prefix(url: str, prefix: str) -> None:
    import redis.asyncio as aioredis

    client = aioredis.Redis.from_url(url)
    try:
        keys = [k async for k in client.scan_iter(match=f"{prefix}:*", count=1000)]
        if keys:
            await client.delete(*keys)
    finally:
        await client.aclose()


async def timed_get(c: httpx.AsyncClient, url: str, headers: dict[str, str],
                    **params: int) -> tuple[httpx.Response, float]:
    """A GET and its duration in seconds."""
    start = time.perf_counter()
    r = await c.get(url, headers=headers, params=params or None)
    return r, time.perf_counter() - start


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
    full, cold = await timed_get(c, "/v1/trust-bundle", gate)
    _, cached = await timed_get(c, "/v1/trust-bundle", gate)
    version = int(full.headers["x-bundle-version"])
    for citizen, device_id in devices[: args.revoke]:
        assert (await c.delete(f"/v1/devices/{device_id}", headers=citizen)).status_code == 204
    delta, delta_time = await timed_get(c, "/v1/trust-bundle", gate, since=version)
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
        "_gate": gate,
        "_client": {"client_id": partner["client_id"],
                    "client_secret": partner["client_secret"]},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=20)
    parser.add_argument("--revoke", type=int, default=5)
    parser.add_argument("--list-size", type=int, default=1_048_576)
    parser.add_argument("--redis-url", help="also measure the shared bundle cache")
    parser.add_argument("--database-url", help="PostgreSQL for both processes "
                        "(default: the SQLite file of the data directory)")
    parser.add_argument("--prefix", default=f"bench-{secrets.token_hex(4)}")
    parser.add_argument("--second", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.second:
        print(json.dumps(asyncio.run(second(args))))
        return
    result = asyncio.run(run(args))
    result.pop("_gate", None)
    result.pop("_client", None)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
