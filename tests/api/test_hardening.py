"""Regression tests for issue 8's defects on the HTTP surface (each named for its defect)
and for the one schema of ``/v1/verify`` (issue 7)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx
import jwt
from prometheus_client import generate_latest
from starlette.types import ASGIApp, Receive, Scope, Send

from suishen.app.main import create_app
from suishen.verifiers.policy import SCENES
from tests.api.conftest import Api, make_settings

JSON = {"content-type": "application/json"}


def _at_every_position(body: bytes, junk: bytes = b"\xff") -> list[bytes]:
    return [body[:i] + junk + body[i:] for i in range(len(body) + 1)]


async def test_invalid_utf8_in_json_string_is_422_not_500(api: Api) -> None:
    """Issue 8 item 2: msgspec raises UnicodeDecodeError for invalid UTF-8 in a string."""
    lib = await api.partner(["library"])
    r = await api.client.post("/v1/verify", headers={**lib["headers"], **JSON},
                              content=b'{"code":"SC1:X","scene":"library","checkpoint":"\xff"}')
    assert r.status_code == 422, r.text
    assert r.headers["content-type"] == "application/problem+json"


async def test_invalid_utf8_at_every_position_of_every_json_endpoint(api: Api) -> None:
    lib = await api.partner(["library"])
    endpoints: list[tuple[str, str, dict[str, str], bytes]] = [
        ("POST", "/v1/verify", lib["headers"],
         b'{"code":"SC1:X","scene":"library","checkpoint":"G1","direction":"in"}'),
        ("POST", "/v1/dev/citizen-token", {}, b'{"sub":"utf8-victim"}'),
        ("PUT", "/v1/admin/subjects/utf8-victim", api.admin,
         b'{"status":"active","attributes":{"name":"Li"}}'),
        ("POST", "/v1/admin/partners", api.admin,
         b'{"name":"p","scenes":["library"],"attributes":["name"]}'),
    ]
    for method, path, headers, valid in endpoints:
        for junk in (b"\xff", b"\xc3", b"\xed\xa0\x80"):  # invalid, truncated, surrogate
            for body in _at_every_position(valid, junk):
                r = await api.client.request(method, path, headers={**JSON, **headers},
                                             content=body)
                assert r.status_code == 422, (path, body, r.status_code, r.text)
                assert r.headers["content-type"] == "application/problem+json"
                assert "Traceback" not in r.text
    r = await api.client.get("/v1/admin/subjects/utf8-victim", headers=api.admin)
    assert r.status_code == 404  # nothing stored


async def test_checkpoint_pattern_is_enforced(api: Api) -> None:
    """Issue 8 item 5: NUL, CR/LF, bidi overrides and markup were stored and shown back."""
    gate = await api.partner(["metro"])
    code = await api.code("checkpoint-victim")
    for bad in ("gate\u00001", "G1\r\nX-Injected: 1", "G\u202e1", "<script>alert(1)</script>",
                "", "x" * 65, "gate 1"):
        r = await api.verify(gate, code, "metro", direction="in", checkpoint=bad)
        assert r.status_code == 422, (bad, r.text)
        assert r.headers["content-type"] == "application/problem+json"
    r = await api.verify(gate, code, "metro", direction="in", checkpoint="L2-S12-G3:a/b.c_d")
    assert r.status_code == 200 and r.json()["valid"] is True
    await api.runtime.audit.flush()
    page = (await api.client.get("/v1/me/verifications",
                                 headers=await api.citizen("checkpoint-victim"))).json()
    assert [item["checkpoint"] for item in page["items"]] == ["L2-S12-G3:a/b.c_d"]


async def test_code_longer_than_1024_is_422(api: Api) -> None:
    lib = await api.partner(["library"])
    assert (await api.verify(lib, "SC1:" + "A" * 1021, "library")).status_code == 422
    assert (await api.verify(lib, "SC1:" + "A" * 1020, "library")).status_code == 200


async def test_partner_name_and_attribute_values_are_printable_and_bounded(api: Api) -> None:
    """Issue 8 item 5: identifiers that reach storage or a page."""
    for name in ("a\u0000b", "a\nb", "x" * 201, "", "a\u202eb"):
        r = await api.client.post("/v1/admin/partners", headers=api.admin,
                                  json={"name": name, "scenes": ["library"]})
        assert r.status_code == 422, (name, r.text)
    for value in ("a\u0000b", "a\r\nb", "x" * 257, "a\u202eb"):
        r = await api.client.put("/v1/admin/subjects/attr-victim", headers=api.admin,
                                 json={"status": "active", "attributes": {"name": value}})
        assert r.status_code == 422, (value, r.text)
    r = await api.client.get("/v1/admin/subjects/attr-victim", headers=api.admin)
    assert r.status_code == 404


async def test_verify_requires_application_json(api: Api) -> None:
    """Issue 8 item 9: ``text/plain`` bodies were accepted."""
    lib = await api.partner(["library"])
    body = b'{"code":"SC1:X","scene":"library"}'
    for ctype in (None, "text/plain", "application/x-www-form-urlencoded", "application/jsonx"):
        headers = dict(lib["headers"])
        if ctype:
            headers["content-type"] = ctype
        r = await api.client.post("/v1/verify", headers=headers, content=body)
        assert r.status_code == 415, (ctype, r.text)
        assert r.headers["content-type"] == "application/problem+json"
    for ctype in ("application/json", "application/json; charset=utf-8", "Application/JSON"):
        r = await api.client.post("/v1/verify", headers={**lib["headers"], "content-type": ctype},
                                  content=body)
        assert r.status_code == 200, (ctype, r.text)
    # 401 comes first: an anonymous caller learns nothing about the body rules
    r = await api.client.post("/v1/verify", headers={"content-type": "text/plain"}, content=body)
    assert r.status_code == 401


async def test_citizen_sub_with_surrounding_whitespace_is_refused(api: Api) -> None:
    """Issue 8 item 9: ``" alice"`` was a different citizen from ``"alice"``."""
    idp = api.runtime.dev_idp
    now = int(time.time())
    for sub in (" alice", "alice ", "alice\u3000"):
        r = await api.client.post("/v1/dev/citizen-token", json={"sub": sub})
        assert r.status_code == 422, (sub, r.text)
        claims = {"iss": idp.issuer, "aud": idp.audience, "sub": sub, "iat": now, "nbf": now,
                  "exp": now + 600, "jti": f"j{len(sub)}{sub.strip()}"}
        token = jwt.encode(claims, idp._private, algorithm=idp.algorithm,
                           headers={"kid": idp.kid})  # a token some other IdP could mint
        r = await api.client.post("/v1/codes", headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == 401, (sub, r.text)
    token = idp.issue("alice", now=now)["access_token"]
    r = await api.client.post("/v1/codes", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 201


async def test_rate_limited_metric_has_no_client_id(api: Api) -> None:
    """Issue 8 item 6: metric label values must not carry partners' client ids."""
    lib = await api.partner(["library"], rate_limit_per_second=1)
    statuses = [(await api.verify(lib, "SC1:X", "library")).status_code for _ in range(5)]
    assert 429 in statuses
    text = generate_latest(api.runtime.metrics.registry).decode()
    assert f"suishen_rate_limited_total {float(statuses.count(429))}" in text
    assert lib["client_id"] not in text


def _verify_operation(spec: dict[str, Any]) -> dict[str, Any]:
    op: dict[str, Any] = spec["paths"]["/v1/verify"]["post"]
    return op


def _resolve(spec: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        schema = spec["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
    return schema


async def test_openapi_verify_entry_is_the_enforced_schema(api: Api) -> None:
    """Issue 7 item 2: one schema; the documented constraints are the enforced ones."""
    spec = (await api.client.get("/openapi.json")).json()
    op = _verify_operation(spec)
    body = _resolve(spec, op["requestBody"]["content"]["application/json"]["schema"])
    props = body["properties"]
    assert props["code"]["maxLength"] == 1024
    checkpoint = props["checkpoint"]["anyOf"][0]
    assert checkpoint["pattern"] == r"^[A-Za-z0-9._:/-]{1,64}$"
    assert set(_resolve(spec, props["scene"])["enum"]) == set(SCENES)
    direction = props["direction"]["anyOf"][0]
    assert set(direction["enum"]) == {"in", "out"}
    assert set(body["required"]) == {"code", "scene"}
    for status in ("401", "403", "413", "415", "422", "429", "503"):
        assert "application/problem+json" in op["responses"][status]["content"], status


async def test_user_middleware_sees_fast_routes(tmp_path: Path) -> None:
    """Issue 7 item 2: middleware added with add_middleware applies to /v1/verify too."""
    seen: list[tuple[str, str]] = []

    class Recorder:
        def __init__(self, app: ASGIApp) -> None:
            self.app = app

        async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] == "http":
                seen.append((scope["method"], scope["path"]))
            await self.app(scope, receive, send)

    app = create_app(make_settings(tmp_path))
    app.add_middleware(Recorder)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            r = await client.post("/v1/verify", json={"code": "SC1:X", "scene": "library"})
            assert r.status_code == 401
            r = await client.get("/v1/verify")
            assert r.status_code == 405
            assert r.headers["content-type"] == "application/problem+json"
            await client.get("/healthz")
    assert seen == [("POST", "/v1/verify"), ("GET", "/v1/verify"), ("GET", "/healthz")]


async def test_admin_put_without_token_and_bad_body_is_401_not_422(api: Api) -> None:
    """Issue 8 item 8: authentication before body validation."""
    r = await api.client.put("/v1/admin/subjects/zz", headers=JSON, content=b"{bad")
    assert r.status_code == 401, r.text
    assert r.headers["content-type"] == "application/problem+json"
    r = await api.client.post("/v1/admin/partners", headers={**JSON, "Authorization": "Bearer x"},
                              content=b"{bad")
    assert r.status_code == 401, r.text
    r = await api.client.put("/v1/admin/subjects/zz", headers={**JSON, **api.admin},
                             content=b"{bad")
    assert r.status_code == 422, r.text


async def test_chunked_body_over_limit_on_fastapi_route_is_413_not_400(api: Api) -> None:
    """Issue 8 item 8: 401 first, then 413, then 422."""

    async def chunks():  # no Content-Length: counted while streaming
        for _ in range(40):
            yield b"A" * 1000

    r = await api.client.put("/v1/admin/subjects/zz", headers={**JSON, **api.admin},
                             content=chunks())
    assert r.status_code == 413, r.text
    assert r.headers["content-type"] == "application/problem+json"
    r = await api.client.put("/v1/admin/subjects/zz", headers=JSON, content=chunks())
    assert r.status_code == 401, r.text
    r = await api.client.post("/v1/dev/citizen-token", headers=JSON, content=chunks())
    assert r.status_code == 413, r.text


async def test_bad_admin_tokens_are_throttled_per_client(api: Api) -> None:
    """Issue 8 item 9: guessing the admin token is throttled (429 with Retry-After)."""
    statuses = []
    for i in range(12):
        r = await api.client.get("/v1/admin/subjects/x",
                                 headers={"Authorization": f"Bearer guess-{i}"})
        statuses.append(r.status_code)
    assert statuses[:10] == [401] * 10
    assert statuses[10:] == [429, 429]
    assert int(r.headers["retry-after"]) >= 1
    assert r.headers["content-type"] == "application/problem+json"
    # even the right token waits: the address is throttled, not the guess
    r = await api.client.get("/v1/admin/subjects/x", headers=api.admin)
    assert r.status_code == 429


async def test_oauth_token_failures_are_throttled_per_client(api: Api) -> None:
    """Issue 8 item 9: guessing partner secrets is throttled."""
    p = await api.partner(["library"])
    statuses = []
    for i in range(12):
        r = await api.client.post("/v1/oauth/token", data={
            "grant_type": "client_credentials", "client_id": p["client_id"],
            "client_secret": f"guess-{i}"})
        statuses.append(r.status_code)
    assert statuses[:10] == [401] * 10
    assert statuses[10:] == [429, 429]
    assert int(r.headers["retry-after"]) >= 1


async def test_openapi_declares_security_and_problem_errors(api: Api) -> None:
    """Issue 7 item 8 / issue 8 item 9: security schemes, per-operation security, and
    problem+json (not HTTPValidationError) for every documented error answer."""
    spec = (await api.client.get("/openapi.json")).json()
    schemes = spec["components"]["securitySchemes"]
    assert schemes["citizenBearer"]["scheme"] == "bearer"
    assert schemes["operatorBearer"]["scheme"] == "bearer"
    flow = schemes["partnerOAuth"]["flows"]["clientCredentials"]
    assert flow["tokenUrl"] == "/v1/oauth/token"
    assert set(flow["scopes"]) == {f"verify:{scene}" for scene in SCENES}
    assert "HTTPValidationError" not in str(spec)
    ops = spec["paths"]
    assert ops["/v1/verify"]["post"]["security"] == [{"partnerOAuth": []}]
    assert ops["/v1/codes"]["post"]["security"] == [{"citizenBearer": []}]
    assert ops["/v1/admin/partners"]["post"]["security"] == [{"operatorBearer": []}]
    put = ops["/v1/admin/subjects/{sub}"]["put"]["responses"]
    assert {"401", "404", "413", "422", "429", "503"} <= set(put)
    for path, item in ops.items():
        for method, op in item.items():
            for status, answer in op["responses"].items():
                if int(status) >= 400 and path != "/v1/oauth/token":
                    assert list(answer["content"]) == ["application/problem+json"], (
                        method, path, status)
