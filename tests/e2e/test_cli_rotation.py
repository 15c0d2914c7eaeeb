"""The CLI manages the keys of a running service (issue 7 item 5): a real ``suishen
serve`` on PostgreSQL, ``suishen keys rotate`` / ``revoke`` run against the same
database (no ``--dir``, the SUISHEN_ settings), and the service follows within about a
second -- here without Redis, so through the KeyManager's poll of the key-set versions,
not the change feed (the periodic resync is set to a minute, out of the way)."""

from __future__ import annotations

import json
import secrets
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import asyncpg
import httpx
import jwt
import pytest

from tests.contract.conftest import DATABASE_URL, FIGURES, run_in_thread
from tests.e2e.harness import SUISHEN, Server

pytestmark = pytest.mark.e2e
PICKUP_LIMIT = 1.5  # seconds: one poll interval (1 s) plus a request's worth of margin


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    schema = f"suishen_e2e_cli_{secrets.token_hex(4)}"

    async def sql(statement: str) -> None:
        conn = await asyncpg.connect(DATABASE_URL, timeout=5)
        try:
            await conn.execute(statement)
        finally:
            await conn.close()

    try:
        run_in_thread(lambda: sql(f'CREATE SCHEMA "{schema}"'))
    except (OSError, asyncpg.PostgresError) as exc:
        pytest.fail(f"PostgreSQL is not reachable at {DATABASE_URL}: {exc}", pytrace=False)
    sep = "&" if "?" in DATABASE_URL else "?"
    data_dir = tmp_path_factory.mktemp("cli-rotation")
    server = Server(
        data_dir,
        SUISHEN_DATABASE_URL=f"{DATABASE_URL}{sep}search_path={schema}",
        SUISHEN_KEY_REFRESH_SECONDS="60",
    )
    try:
        server.start()
        yield server
    finally:
        server.stop()
        run_in_thread(lambda: sql(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))


def cli(server: Server, *args: str) -> subprocess.CompletedProcess[str]:
    """``suishen ARGS`` with the server's SUISHEN_ settings (same database, same KEK)."""
    result = subprocess.run([str(SUISHEN), *args], env=server.env, capture_output=True,
                            text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    return result


def issue(server: Server, citizen: dict[str, str]) -> dict[str, Any]:
    r = httpx.post(server.url + "/v1/codes", headers=citizen)
    assert r.status_code == 201, r.text
    body: dict[str, Any] = r.json()
    return body


def verify(server: Server, partner: dict[str, str], code: str) -> str:
    r = httpx.post(server.url + "/v1/verify", headers=partner,
                   json={"code": code, "scene": "library", "checkpoint": "lib-1"})
    assert r.status_code == 200, r.text
    reason: str = r.json()["reason"]
    return reason


def wait_for(predicate: Any, limit: float) -> float:
    """Seconds until ``predicate()`` holds (polled every 20 ms); fails after ``limit``
    plus a little, so a slow pick-up shows as its figure, not a hang."""
    start = time.monotonic()
    while time.monotonic() - start < limit + 2.0:
        if predicate():
            return time.monotonic() - start
        time.sleep(0.02)
    pytest.fail(f"not picked up within {limit + 2.0} s")


def test_cli_rotation_reaches_the_running_service_within_a_second(server: Server) -> None:
    citizen = server.citizen("cli-rotation-citizen")
    partner = server.partner_headers(server.register_partner(["library"]))
    old = issue(server, citizen)
    listed = json.loads(cli(server, "keys", "list", "--json").stdout)
    assert [k["kid"] for k in listed["keys"] if k["status"] == "active"] == [old["kid"]]

    cli(server, "keys", "rotate")
    seconds = wait_for(lambda: issue(server, citizen)["kid"] != old["kid"], PICKUP_LIMIT)
    FIGURES["CLI rotate -> new kid in issued codes (PostgreSQL, poll, no Redis)"] = (
        f"{seconds:.2f} s")
    assert seconds <= PICKUP_LIMIT
    new = issue(server, citizen)
    listed = json.loads(cli(server, "keys", "list", "--json").stdout)
    states = {k["kid"]: k["status"] for k in listed["keys"]}
    assert states == {old["kid"]: "retired", new["kid"]: "active"}
    # Old codes keep verifying through the overlap; new ones verify too.
    assert verify(server, partner, old["code"]) == "ok"
    assert verify(server, partner, new["code"]) == "ok"
    # The service publishes what the CLI wrote.
    jwks = httpx.get(server.url + "/v1/keys").json()
    assert {k["kid"] for k in jwks["keys"]} >= {old["kid"], new["kid"]}

    # Revocation from the CLI: codes of the revoked key stop verifying within a second.
    cli(server, "keys", "revoke", old["kid"])
    seconds = wait_for(lambda: verify(server, partner, old["code"]) == "revoked",
                       PICKUP_LIMIT)
    FIGURES["CLI revoke -> old codes revoked (PostgreSQL, poll, no Redis)"] = f"{seconds:.2f} s"
    assert seconds <= PICKUP_LIMIT
    assert verify(server, partner, new["code"]) == "ok"


def test_cli_rotates_the_partner_token_key_set(server: Server) -> None:
    partner = server.register_partner(["library"])
    headers = server.partner_headers(partner)
    before = jwt.get_unverified_header(headers["Authorization"].split()[1])["kid"]
    listed = json.loads(cli(server, "keys", "list", "--key-set", "tokens", "--json").stdout)
    assert before in {k["kid"] for k in listed["keys"]}

    cli(server, "keys", "rotate", "--key-set", "tokens")

    def new_kid() -> bool:
        token = server.partner_headers(partner)["Authorization"].split()[1]
        return bool(jwt.get_unverified_header(token)["kid"] != before)

    assert wait_for(new_kid, PICKUP_LIMIT) <= PICKUP_LIMIT
    # a token signed before the rotation still works through its lifetime
    code = issue(server, server.citizen("cli-rotation-tokens"))["code"]
    assert verify(server, headers, code) == "ok"
