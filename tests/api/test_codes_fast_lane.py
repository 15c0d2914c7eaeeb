"""POST /v1/codes on the fast lane: its optional body, its error order and headers, and
its OpenAPI entry (the behaviour contract of the route is tests/api/test_codes.py)."""

from __future__ import annotations

import types
from typing import Any

import pytest

from suishen.keys.issuer import IssuedCode
from suishen.timefmt import parse_rfc3339
from tests.api.conftest import Api

JSON = {"content-type": "application/json"}


@pytest.mark.parametrize("body", [b"", b'{"kind": "personal"}', b'{"kind":"personal"}  '])
async def test_no_body_or_personal_is_a_personal_code(api: Api, body: bytes) -> None:
    r = await api.client.post("/v1/codes", headers={**await api.citizen("c-body"), **JSON},
                              content=body)
    assert r.status_code == 201, r.text
    assert r.json()["kind"] == "personal"
    assert r.headers["content-type"] == "application/json"
    assert r.headers["cache-control"] == "no-store"
    assert r.headers["x-request-id"]  # the edge middleware still wraps the route
    gate = await api.partner(["library"])
    assert (await api.verify(gate, r.json()["code"], "library")).json()["valid"] is True


@pytest.mark.parametrize(("body", "detail"), [
    (b"{", "not JSON"),
    (b"\xff\xfe", "not JSON"),
    (b"{}", "kind"),
    (b'{"kind": "business"}', "kind"),
    (b'{"kind": "personal", "enterprise_id": "e-1"}', "enterprise_id"),
    (b'{"kind": "enterprise"}', "enterprise_id"),
    (b'{"kind": "enterprise", "enterprise_id": null}', "enterprise_id"),
    (b'{"kind": "enterprise", "enterprise_id": "e 1"}', "enterprise_id"),
    (b'{"kind": "enterprise", "enterprise_id": "e-1\\n"}', "enterprise_id"),
    (b'{"kind": "enterprise", "enterprise_id": "' + b"e" * 65 + b'"}', "enterprise_id"),
])
async def test_bad_body_is_422(api: Api, body: bytes, detail: str) -> None:
    r = await api.client.post("/v1/codes", headers={**await api.citizen("c-bad"), **JSON},
                              content=body)
    assert r.status_code == 422, r.text
    assert r.headers["content-type"] == "application/problem+json"
    assert detail in r.json()["detail"]


async def test_a_body_that_is_not_json_is_415(api: Api) -> None:
    r = await api.client.post("/v1/codes", headers={**await api.citizen("c-415"),
                                                    "content-type": "text/plain"},
                              content=b'{"kind": "personal"}')
    assert r.status_code == 415
    assert r.headers["content-type"] == "application/problem+json"


async def test_order_401_before_422_before_403(api: Api) -> None:
    r = await api.client.post("/v1/codes?format=gif", headers=JSON, content=b"{")
    assert r.status_code == 401
    assert r.headers["www-authenticate"] == "Bearer"
    headers = {**await api.citizen("c-order"), **JSON}
    await api.client.put("/v1/admin/subjects/c-order", headers=api.admin,
                         json={"status": "suspended", "attributes": {}})
    assert (await api.client.post("/v1/codes?format=gif", headers=headers)).status_code == 422
    assert (await api.client.post("/v1/codes", headers=headers, content=b"{")).status_code == 422
    r = await api.client.post("/v1/codes", headers=headers)
    assert r.status_code == 403 and r.json()["type"].endswith("/suspended")


async def test_enterprise_without_a_directory_is_403_not_agent(api: Api) -> None:
    assert not hasattr(api.runtime.issuance, "issue_enterprise")
    r = await api.client.post("/v1/codes", headers=await api.citizen("c-ent"),
                              json={"kind": "enterprise", "enterprise_id": "ent-1"})
    assert r.status_code == 403
    assert r.json()["type"].endswith("/not-agent")


async def test_enterprise_goes_to_issue_enterprise(api: Api,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """The wiring for helper-g's ``IssuanceService.issue_enterprise``: the route hands it
    the citizen and the enterprise id and presents what it returns."""
    calls: list[tuple[str, str]] = []
    personal = await api.runtime.issuance.issue("agent-1")

    async def issue_enterprise(self: Any, sub: str, enterprise_id: str) -> IssuedCode:
        calls.append((sub, enterprise_id))
        return personal

    monkeypatch.setattr(api.runtime.issuance, "issue_enterprise",
                        types.MethodType(issue_enterprise, api.runtime.issuance),
                        raising=False)
    r = await api.client.post("/v1/codes", headers=await api.citizen("agent-1"),
                              json={"kind": "enterprise", "enterprise_id": "ent-1"})
    assert r.status_code == 201, r.text
    assert calls == [("agent-1", "ent-1")]
    assert r.json()["code"] == personal.text


@pytest.mark.parametrize("fmt", ["png", "svg"])
async def test_image_headers(api: Api, fmt: str) -> None:
    r = await api.client.post(f"/v1/codes?format={fmt}", headers=await api.citizen("c-img"))
    assert r.status_code == 201
    expires = parse_rfc3339(r.headers["x-code-expires-at"])
    refresh = parse_rfc3339(r.headers["x-code-refresh-after"])
    assert expires - refresh == api.settings.code_ttl_seconds - api.settings.code_ttl_seconds // 2
    assert r.headers["cache-control"] == "no-store"
    assert int(r.headers["content-length"]) == len(r.content)


async def test_last_format_wins_as_before(api: Api) -> None:
    headers = await api.citizen("c-fmt")
    r = await api.client.post("/v1/codes?format=json&format=svg", headers=headers)
    assert r.headers["content-type"] == "image/svg+xml"
    r = await api.client.post("/v1/codes?other=1", headers=headers)
    assert r.status_code == 201 and r.json()["kind"] == "personal"


async def test_other_methods_are_405(api: Api) -> None:
    r = await api.client.get("/v1/codes", headers=await api.citizen("c-405"))
    assert r.status_code == 405
    assert r.headers["allow"] == "POST"


async def test_openapi_documents_the_msgspec_schemas(api: Api) -> None:
    spec = (await api.client.get("/openapi.json")).json()
    op = spec["paths"]["/v1/codes"]["post"]
    assert op["security"] == [{"citizenBearer": []}]
    assert op["requestBody"]["required"] is False
    body = op["requestBody"]["content"]["application/json"]["schema"]
    refs = {one["$ref"].rsplit("/", 1)[1] for one in body["anyOf"]}
    assert refs == {"PersonalCodeRequest", "EnterpriseCodeRequest"}
    answer = op["responses"]["201"]["content"]["application/json"]["schema"]
    code_out = spec["components"]["schemas"][answer["$ref"].rsplit("/", 1)[1]]
    assert set(code_out["required"]) == {"code", "kind", "issued_at", "expires_at",
                                         "refresh_after", "kid"}
    assert {"image/png", "image/svg+xml"} <= set(op["responses"]["201"]["content"])
    assert {"401", "403", "413", "415", "422", "503"} <= set(op["responses"])
    assert [p["name"] for p in op["parameters"]] == ["format"]
