"""Faults with real processes: a ``suishen serve`` process on private PostgreSQL and
Redis servers that the test stops and starts again (SPEC §8)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.contract.servers import PrivatePostgres, PrivateRedis
from tests.e2e.harness import Server

pytestmark = pytest.mark.e2e


@pytest.fixture
def stack(
    tmp_path: Path, private_postgres: PrivatePostgres, private_redis: PrivateRedis
) -> Iterator[tuple[Server, PrivatePostgres, PrivateRedis]]:
    schema = f"faults_{int(time.time() * 1000)}"
    srv = Server(
        tmp_path,
        SUISHEN_DATABASE_URL=private_postgres.dsn,
        SUISHEN_REDIS_URL=private_redis.url,
        SUISHEN_REDIS_PREFIX=schema,
        SUISHEN_DATABASE_TIMEOUT_SECONDS="1",
        SUISHEN_KEY_REFRESH_SECONDS="1",
    ).start()
    try:
        yield srv, private_postgres, private_redis
    finally:
        srv.stop()


def _timed(call: Any) -> tuple[httpx.Response, float]:
    start = time.monotonic()
    response = call()
    return response, time.monotonic() - start


def _eventually(check: Any, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "no recovery in time"
        time.sleep(0.2)


def test_postgres_down(stack: tuple[Server, PrivatePostgres, PrivateRedis]) -> None:
    srv, pg, _ = stack
    citizen = srv.citizen("pg-fault")
    library = srv.register_partner(["library"])
    gate = srv.register_partner(["metro"])
    lib_h, gate_h = srv.partner_headers(library), srv.partner_headers(gate)
    codes = [httpx.post(srv.url + "/v1/codes", headers=citizen).json()["code"] for _ in range(2)]
    enterprise = {"name": "Acme", "uscc": "91350100M000100Y43", "agents": ["pg-fault"]}
    assert httpx.put(srv.url + "/v1/admin/enterprises/acme", headers=srv.admin,
                     json=enterprise).status_code == 200
    window = srv.partner_headers(srv.register_partner(["government"]))
    wants = {"kind": "enterprise", "enterprise_id": "acme"}

    newcomer = srv.citizen("pg-fault-newcomer")  # a token, but never enrolled
    pg.stop()
    try:
        # Issue 11: an operator write answers 503; enterprise codes are issued and
        # verified from memory.
        r = httpx.put(srv.url + "/v1/admin/enterprises/acme", headers=srv.admin,
                      json={**enterprise, "status": "suspended"}, timeout=10)
        assert r.status_code == 503, r.text
        r = httpx.post(srv.url + "/v1/codes", headers=citizen, json=wants, timeout=10)
        assert r.status_code == 201, r.text
        r = httpx.post(srv.url + "/v1/verify", headers=window, timeout=10,
                       json={"code": r.json()["code"], "scene": "government"})
        assert r.json()["valid"] is True and r.json()["kind"] == "enterprise"
        # SPEC §8: a known citizen keeps getting codes (handle and status are in
        # memory); only enrolment needs the database and answers 503, quickly.
        r = httpx.post(srv.url + "/v1/codes", headers=citizen, timeout=10)
        assert r.status_code == 201, r.text
        r, took = _timed(lambda: httpx.post(srv.url + "/v1/codes", headers=newcomer,
                                            timeout=10))
        assert r.status_code == 503
        assert r.headers["content-type"] == "application/problem+json"
        assert int(r.headers["retry-after"]) >= 1
        assert took < 3.0
        r = httpx.post(srv.url + "/v1/verify", headers=lib_h,
                       json={"code": codes[0], "scene": "library"})
        assert r.status_code == 200 and r.json()["valid"] is True
        r = httpx.post(srv.url + "/v1/verify", headers=gate_h,
                       json={"code": codes[1], "scene": "metro", "direction": "in"})
        assert r.status_code == 200 and r.json()["valid"] is True
        ready = httpx.get(srv.url + "/readyz")
        assert ready.status_code == 503
        assert ready.json()["checks"]["database"] == "unavailable"
    finally:
        pg.start()
    _eventually(lambda: httpx.get(srv.url + "/readyz").status_code == 200, 15)
    assert httpx.post(srv.url + "/v1/codes", headers=citizen).status_code == 201
    # The audit records of the outage reach the database once it is back (the
    # enterprise code's verification is its agent's: three).
    _eventually(lambda: len(httpx.get(srv.url + "/v1/me/verifications", headers=citizen)
                            .json()["items"]) == 3, 15)


def test_redis_down(stack: tuple[Server, PrivatePostgres, PrivateRedis]) -> None:
    srv, _, redis = stack
    citizen = srv.citizen("redis-fault")
    library = srv.register_partner(["library"])
    gate = srv.register_partner(["metro"])
    lib_h, gate_h = srv.partner_headers(library), srv.partner_headers(gate)
    code = httpx.post(srv.url + "/v1/codes", headers=citizen).json()["code"]

    redis.stop()
    try:
        # Transit fails closed, quickly: the gate falls back to its offline check.
        for _ in range(20):
            r, took = _timed(lambda: httpx.post(
                srv.url + "/v1/verify", headers=gate_h,
                json={"code": code, "scene": "metro", "direction": "in"}, timeout=10))
            assert r.status_code == 503, r.text
            assert "retry-after" in r.headers
            assert took < 1.5
        # Re-scannable scenes need no shared state: they keep working.
        r = httpx.post(srv.url + "/v1/verify", headers=lib_h,
                       json={"code": code, "scene": "library"})
        assert r.status_code == 200 and r.json()["valid"] is True
        assert httpx.post(srv.url + "/v1/codes", headers=citizen).status_code == 201
        assert httpx.get(srv.url + "/readyz").json()["checks"]["state"] == "unavailable"
    finally:
        redis.start()
    _eventually(lambda: httpx.get(srv.url + "/readyz").status_code == 200, 15)
    r = httpx.post(srv.url + "/v1/verify", headers=gate_h,
                   json={"code": code, "scene": "metro", "direction": "in"})
    assert r.json()["valid"] is True
    r = httpx.post(srv.url + "/v1/verify", headers=gate_h,
                   json={"code": code, "scene": "metro", "direction": "in"})
    assert r.json()["reason"] == "replayed"
    # A suspension after the outage still reaches the process through the change feed.
    httpx.put(srv.url + "/v1/admin/subjects/redis-fault", headers=srv.admin,
              json={"status": "suspended", "attributes": {}})
    r = httpx.post(srv.url + "/v1/verify", headers=lib_h, json={"code": code, "scene": "library"})
    assert r.json()["reason"] == "revoked"
