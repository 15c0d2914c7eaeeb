"""Offline gate uploads (``POST /v1/gate-events``) on one core, in process (ASGI,
embedded default or ``--postgres``): how many offline decisions a second the service
takes in — each re-verified (both signatures), stored with its history row, paired
into journeys — for the capacity model (docs/capacity.md).

    .venv/bin/python benchmarks/gate_upload_bench.py [--riders 40] [--batches 4] [--postgres]

Every rider enrolls a device (POST /v1/devices) and rides metro journeys offline: an
entry and an exit code per journey, made with the slot's device key as the phone does.
The gate batches (1,000 decisions) are uploaded in turn, then the same batches again
(all duplicates: the idempotent re-send a gate makes after a lost answer). Prints
decisions per second of CPU and of wall time for fresh and re-sent batches.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import secrets
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from pydantic import SecretStr

from suishen.app.main import create_app
from suishen.app.settings import Settings
from suishen.keys import offline as koff
from suishen.keys.algorithms import Alg, PrivateKey

ADMIN = "bench-admin-token-" + "x" * 32
METRO = {"operator": "metro-co", "zones": {"L1-S01": 1, "L2-S12": 2},
         "fares": {"0": 300, "1": 400}, "max_fare": 900, "exit_without_entry": "refuse"}


def _unb64u(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


async def _rider(client: httpx.AsyncClient, sub: str, now: int) -> tuple[PrivateKey, bytes]:
    """Enroll one device with one key; its credential for the slot covering ``now``."""
    token = (await client.post("/v1/dev/citizen-token", json={"sub": sub})).json()
    headers = {"Authorization": f"Bearer {token['access_token']}"}
    key = PrivateKey.generate(Alg.ES256)
    r = await client.post("/v1/devices", headers=headers,
                          json={"name": "phone", "keys": [key.public().jwk_members()]})
    if r.status_code != 201:
        raise SystemExit(f"device registration failed: {r.status_code} {r.text[:300]}")
    return key, _unb64u(r.json()["credentials"][0]["credential"])


def _event(code: str, at: int, checkpoint: str, direction: str) -> dict[str, Any]:
    return {"code": code, "scene": "metro", "decided_at": at, "valid": True, "reason": "ok",
            "checkpoint": checkpoint, "direction": direction}


async def main(args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as folder:
        extra: dict[str, Any] = {}
        schema = f"suishen_bench_{secrets.token_hex(4)}"
        if args.postgres:  # a schema of its own, dropped at the end
            dsn = os.environ.get("SUISHEN_BENCH_DATABASE_URL",
                                 "postgresql://postgres@127.0.0.1:5432/test")
            await _sql(dsn, f'CREATE SCHEMA "{schema}"')
            extra["database_url"] = f"{dsn}{'&' if '?' in dsn else '?'}search_path={schema}"
        try:
            return await _run(args, Path(folder), extra)
        finally:
            if args.postgres:
                await _sql(dsn, f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


async def _sql(dsn: str, statement: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(dsn, timeout=5)
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


async def _run(args: argparse.Namespace, folder: Path, extra: dict[str, Any]) -> dict[str, Any]:
    settings = Settings(data_dir=folder, admin_token=SecretStr(ADMIN), **extra)
    started = int(time.time()) + 1  # the signing key is made at start: codes after it
    app = create_app(settings)
    admin = {"Authorization": f"Bearer {ADMIN}"}
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://bench",
                                     timeout=120) as client:
            assert (await client.put("/v1/admin/fares/metro", headers=admin,
                                     json=METRO)).status_code == 200
            reg = (await client.post("/v1/admin/partners", headers=admin, json={
                "name": "metro gates", "scenes": ["metro"], "attributes": [],
                "rate_limit_per_second": 1_000_000})).json()
            tok = (await client.post("/v1/oauth/token", data={
                "grant_type": "client_credentials", "client_id": reg["client_id"],
                "client_secret": reg["client_secret"]})).json()
            gate = {"Authorization": f"Bearer {tok['access_token']}"}
            now = int(time.time())
            riders = [await _rider(client, f"bench-rider-{i}", now)
                      for i in range(args.riders)]
            # Journeys: entry then exit, each code fresh (its own iat and counter).
            events: list[dict[str, Any]] = []
            per_rider = max(1, args.batches * 1000 // (2 * args.riders))
            for key, credential in riders:
                for j in range(per_rider):
                    # decided_at within the key's life and not ahead of the clock
                    at = started + (j // 128) % max(1, now - started - 2)
                    counter = j % 128
                    entry = koff.make_code(key, credential, iat=at, counter=2 * counter)
                    exit_ = koff.make_code(key, credential, iat=at + 2,
                                           counter=2 * counter + 1)
                    events.append(_event(entry, at, "L1-S01-G1", "in"))
                    events.append(_event(exit_, at + 2, "L2-S12-G4", "out"))
            batches = [events[i:i + 1000] for i in range(0, len(events), 1000)]
            figures: dict[str, Any] = {"backend": "postgres" if args.postgres
                                       else "sqlite", "decisions": len(events),
                                       "batches": len(batches)}
            for label in ("fresh", "re-sent"):
                cpu, wall = time.process_time(), time.perf_counter()
                totals = {"accepted": 0, "duplicates": 0}
                for batch in batches:
                    r = await client.post("/v1/gate-events", headers=gate,
                                          json={"events": batch})
                    if r.status_code != 200:
                        raise SystemExit(f"upload failed: {r.status_code} {r.text[:300]}")
                    body = r.json()
                    if body.get("errors"):
                        raise SystemExit(f"entries refused: {body['errors'][:3]}")
                    totals["accepted"] += body["accepted"]
                    totals["duplicates"] += body["duplicates"]
                cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
                figures[label] = {**totals,
                                  "decisions_per_cpu_second": round(len(events) / cpu),
                                  "decisions_per_wall_second": round(len(events) / wall),
                                  "ms_per_batch_of_1000": round(wall / len(batches) * 1000)}
            return figures


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--riders", type=int, default=40)
    parser.add_argument("--batches", type=int, default=4)
    parser.add_argument("--postgres", action="store_true")
    print(json.dumps(asyncio.run(main(parser.parse_args())), indent=2))
