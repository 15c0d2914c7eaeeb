"""Problem details everywhere, size limits, caching headers, OpenAPI, health."""

from __future__ import annotations

from pathlib import Path

import pytest
from prometheus_client import generate_latest

from suishen.app.main import create_app
from suishen.errors import ConfigError
from tests.api.conftest import Api, make_settings


async def test_problem_json_for_404_405(api: Api) -> None:
    r = await api.client.get("/nowhere")
    assert r.status_code == 404
    assert r.headers["content-type"] == "application/problem+json"
    assert r.json()["status"] == 404
    r = await api.client.get("/v1/verify")
    assert r.status_code == 405
    assert r.headers["content-type"] == "application/problem+json"


async def test_body_limit(api: Api) -> None:
    lib = await api.partner(["library"])
    big = b'{"code": "' + b"A" * 20_000 + b'", "scene": "library"}'
    r = await api.client.post("/v1/verify", headers=lib["headers"], content=big)
    assert r.status_code == 413
    assert r.headers["content-type"] == "application/problem+json"

    async def chunks():  # no Content-Length: counted while streaming
        for _ in range(40):
            yield b"A" * 1000

    r = await api.client.post("/v1/verify", headers=lib["headers"], content=chunks())
    assert r.status_code == 413


async def test_request_id(api: Api) -> None:
    r = await api.client.get("/healthz", headers={"X-Request-ID": "gate-42"})
    assert r.headers["x-request-id"] == "gate-42"
    r = await api.client.get("/healthz", headers={"X-Request-ID": "bad id\n"})
    assert r.headers["x-request-id"] != "bad id\n"


async def test_keys_are_cacheable(api: Api) -> None:
    r = await api.client.get("/v1/keys")
    assert "max-age" in r.headers["cache-control"]
    etag = r.headers["etag"]
    r2 = await api.client.get("/.well-known/jwks.json", headers={"If-None-Match": etag})
    assert r2.status_code == 304
    key = r.json()["keys"][0]
    assert {"kty", "crv", "x", "kid", "alg", "use", "status", "not_before"} <= set(key)
    assert "d" not in key


async def test_health_ready_metrics_openapi(api: Api) -> None:
    assert (await api.client.get("/healthz")).json() == {"status": "ok"}
    r = await api.client.get("/readyz")
    assert r.status_code == 200
    assert r.json()["checks"] == {"database": "ok", "state": "ok", "audit": "ok"}
    lib = await api.partner(["library"])
    await api.verify(lib, await api.code("m"), "library")
    assert (await api.client.get("/metrics")).status_code == 404  # own listener now
    text = generate_latest(api.runtime.metrics.registry).decode()
    assert 'suishen_verifications_total{reason="ok",scene="library"} 1.0' in text
    assert "suishen_request_duration_seconds_bucket" in text
    spec = (await api.client.get("/openapi.json")).json()
    assert "/v1/verify" in spec["paths"] and "/v1/codes" in spec["paths"]
    assert (await api.client.get("/docs")).status_code == 200


async def test_readyz_reports_a_dead_database(api: Api) -> None:
    await api.runtime.db.close()
    r = await api.client.get("/readyz")
    assert r.status_code == 503
    assert r.json()["checks"]["database"] == "unavailable"


def test_production_refuses_to_start_without_settings(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        create_app(make_settings(tmp_path, env="production", admin_token=None))
    message = str(err.value)
    for name in ("SUISHEN_ADMIN_TOKEN", "SUISHEN_KEY_ENCRYPTION_KEY", "SUISHEN_IDP_ISSUER",
                 "SUISHEN_IDP_AUDIENCE", "SUISHEN_IDP_JWKS"):
        assert name in message
