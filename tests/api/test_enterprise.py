"""Enterprises, enterprise codes, the government scene and ``POST /v1/resolve`` through
the HTTP API (issue 11 part A, SPEC.md §6.3), on the embedded default."""

from __future__ import annotations

from typing import Any

import pytest

from tests.api.conftest import Api

USCC = "91350100M000100Y43"
BODY: dict[str, Any] = {
    "name": "上海测试有限公司", "uscc": USCC, "status": "active",
    "attributes": {"legal_representative": "张三", "business_scope": "software",
                   "licences": ["ICP-1", "EDI-2"]},
    "agents": ["agent-1", "agent-2"],
}


async def put_enterprise(api: Api, eid: str = "acme", **changes: Any) -> dict[str, Any]:
    r = await api.client.put(f"/v1/admin/enterprises/{eid}", json={**BODY, **changes},
                             headers=api.admin)
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


# --- item 1: enterprises --------------------------------------------------------------
async def test_put_and_get_enterprise(api: Api) -> None:
    out = await put_enterprise(api)
    assert out["enterprise_id"] == "acme" and out["uscc"] == USCC
    assert out["agents"] == ["agent-1", "agent-2"] and out["status"] == "active"
    assert out["attributes"]["licences"] == ["ICP-1", "EDI-2"]
    assert "handle" not in str(out)
    r = await api.client.get("/v1/admin/enterprises/acme", headers=api.admin)
    assert r.status_code == 200 and r.json() == out
    changed = await put_enterprise(api, status="suspended", agents=["agent-2"])
    assert changed["status"] == "suspended" and changed["agents"] == ["agent-2"]
    assert changed["created_at"] == out["created_at"]


async def test_enterprise_needs_the_operator(api: Api) -> None:
    r = await api.client.put("/v1/admin/enterprises/acme", json=BODY)
    assert r.status_code == 401
    citizen = await api.citizen("agent-1")
    r = await api.client.get("/v1/admin/enterprises/acme", headers=citizen)
    assert r.status_code == 401
    r = await api.client.get("/v1/admin/enterprises/none", headers=api.admin)
    assert r.status_code == 404 and r.headers["content-type"] == "application/problem+json"


async def test_every_bad_field_is_listed(api: Api) -> None:
    bad = {"name": "", "uscc": "91512081MA62K0260F", "status": "closed",
           "attributes": {"colour": "red"}, "agents": ["a", "a"]}
    r = await api.client.put("/v1/admin/enterprises/acme", json=bad, headers=api.admin)
    assert r.status_code == 422, r.text
    assert r.headers["content-type"] == "application/problem+json"
    fields = {e["loc"][1] for e in r.json()["errors"]}
    assert fields == {"name", "uscc", "status", "attributes", "agents"}
    assert any("check character" in e["msg"] for e in r.json()["errors"])
    r = await api.client.get("/v1/admin/enterprises/acme", headers=api.admin)
    assert r.status_code == 404  # nothing was written


@pytest.mark.parametrize("change", [
    {"uscc": "91350100M000100Y4"},  # 17 characters
    {"uscc": "91350100I000100Y43"},  # I is not in the set
    {"uscc": 91350100},  # wrong type
    {"name": "x" * 201},
    {"name": "tab\there"},
    {"attributes": {"business_scope": "x" * 513}},
    {"attributes": {"licences": ["L"] * 33}},
    {"attributes": {"licences": [1, 2]}},
    {"attributes": {"licences": {"a": "b"}}},
    {"attributes": "scope"},
    {"agents": [f"a{i}" for i in range(101)]},
    {"agents": [" padded"]},
    {"agents": "agent-1"},
    {"extra": 1},
])
async def test_hostile_enterprise_bodies(api: Api, change: dict[str, Any]) -> None:
    r = await api.client.put("/v1/admin/enterprises/acme", json={**BODY, **change},
                             headers=api.admin)
    assert r.status_code == 422, r.text
    assert r.headers["content-type"] == "application/problem+json"


async def test_invalid_utf8_and_bad_ids(api: Api) -> None:
    r = await api.client.put("/v1/admin/enterprises/acme", content=b'{"name": "\xff"}',
                             headers={**api.admin, "content-type": "application/json"})
    assert r.status_code == 422
    r = await api.client.put("/v1/admin/enterprises/a%20b", json=BODY, headers=api.admin)
    assert r.status_code == 422
    r = await api.client.put("/v1/admin/enterprises/" + "e" * 65, json=BODY, headers=api.admin)
    assert r.status_code == 422


# --- item 2: partners' enterprise attributes -------------------------------------------
async def test_partner_registers_enterprise_attributes(api: Api) -> None:
    body = {"name": "Window", "scenes": ["library"],
            "enterprise_attributes": ["name", "uscc", "licences", "name"]}
    r = await api.client.post("/v1/admin/partners", json=body, headers=api.admin)
    assert r.status_code == 201, r.text
    assert r.json()["enterprise_attributes"] == ["name", "uscc", "licences"]
    stored = await api.runtime.partners.get(r.json()["client_id"])
    assert stored.enterprise_attributes == ("name", "uscc", "licences")
    r = await api.client.post("/v1/admin/partners", json={"name": "Lib", "scenes": ["library"]},
                              headers=api.admin)
    assert r.json()["enterprise_attributes"] == []


@pytest.mark.parametrize("value", [["colour"], "name", [1], ["name"] * 6])
async def test_partner_enterprise_attributes_are_a_closed_list(api: Api, value: Any) -> None:
    body = {"name": "Window", "scenes": ["library"], "enterprise_attributes": value}
    r = await api.client.post("/v1/admin/partners", json=body, headers=api.admin)
    assert r.status_code == 422, r.text


# --- item 3: enterprise codes ---------------------------------------------------------
async def enterprise_code(api: Api, sub: str, eid: str = "acme") -> Any:
    return await api.client.post("/v1/codes", headers=await api.citizen(sub),
                                 json={"kind": "enterprise", "enterprise_id": eid})


async def test_an_agent_gets_the_enterprise_code(api: Api) -> None:
    await put_enterprise(api)
    r = await enterprise_code(api, "agent-1")
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["kind"] == "enterprise" and len(body["code"]) == 178
    r2 = await enterprise_code(api, "agent-1")
    assert r2.json()["code"] != body["code"]
    # the personal code is unchanged: no body, or kind personal
    for extra in ({}, {"json": {"kind": "personal"}}):
        r = await api.client.post("/v1/codes", headers=await api.citizen("agent-1"), **extra)
        assert r.status_code == 201 and r.json()["kind"] == "personal"
    r = await api.client.post("/v1/codes?format=png", headers=await api.citizen("agent-1"),
                              json={"kind": "enterprise", "enterprise_id": "acme"})
    assert r.status_code == 201 and r.headers["content-type"] == "image/png"


async def test_not_an_agent_or_suspended_is_403(api: Api) -> None:
    await put_enterprise(api)
    r = await enterprise_code(api, "stranger")
    assert r.status_code == 403 and r.json()["type"].endswith("/not-agent")
    r = await enterprise_code(api, "agent-1", eid="no-such-enterprise")
    assert r.status_code == 403 and r.json()["type"].endswith("/not-agent")
    await put_enterprise(api, status="suspended")
    r = await enterprise_code(api, "agent-1")
    assert r.status_code == 403 and r.json()["type"].endswith("/enterprise-suspended")
    await put_enterprise(api, agents=["agent-2"])  # active again, agent-1 removed
    r = await enterprise_code(api, "agent-1")
    assert r.status_code == 403 and r.json()["type"].endswith("/not-agent")
    assert (await enterprise_code(api, "agent-2")).status_code == 201
    r = await api.client.put("/v1/admin/subjects/agent-2", headers=api.admin,
                             json={"status": "suspended"})
    assert r.status_code == 200
    r = await enterprise_code(api, "agent-2")
    assert r.status_code == 403 and r.json()["type"].endswith("/suspended")


@pytest.mark.parametrize("body", [
    {"kind": "enterprise"},
    {"kind": "personal", "enterprise_id": "acme"},
    {"kind": "venue"},
    {"kind": "enterprise", "enterprise_id": "bad id"},
    {"kind": "enterprise", "enterprise_id": 7},
    {"enterprise_id": "acme"},
    {"kind": "enterprise", "enterprise_id": "acme", "extra": True},
    ["enterprise"],
])
async def test_bad_code_requests_are_422(api: Api, body: Any) -> None:
    await put_enterprise(api)
    r = await api.client.post("/v1/codes", headers=await api.citizen("agent-1"), json=body)
    assert r.status_code == 422, r.text


# --- item 4: verify at the government window ------------------------------------------
async def window(api: Api, allowed: list[str] | None = None) -> dict[str, Any]:
    return await api.partner(["government"], ["name"],
                             enterprise_attributes=allowed if allowed is not None
                             else ["name", "uscc", "licences"])


async def test_government_window_sees_the_enterprise_and_the_agent(api: Api) -> None:
    await put_enterprise(api)
    r = await api.client.put("/v1/admin/subjects/agent-1", headers=api.admin,
                             json={"status": "active", "attributes": {"name": "李四",
                                                                      "reader_id": "R-9"}})
    assert r.status_code == 200
    gov = await window(api)
    code = (await enterprise_code(api, "agent-1")).json()["code"]
    r = await api.verify(gov, code, "government", checkpoint="window-3")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["valid"] is True and body["reason"] == "ok" and body["kind"] == "enterprise"
    assert body["enterprise"] == {"name": BODY["name"], "uscc": USCC,
                                  "licences": ["ICP-1", "EDI-2"]}
    assert body["attributes"] == {"name": "李四"}  # the agent's, per the registration
    # the agent's pairwise subject: the same as for their personal code at this partner
    personal = await api.verify(gov, await api.code("agent-1"), "government")
    assert personal.json()["valid"] is True and personal.json()["kind"] == "personal"
    assert "enterprise" not in personal.json()
    assert personal.json()["subject"] == body["subject"]
    # re-scannable at the window
    again = await api.verify(gov, code, "government")
    assert again.json()["valid"] is True
    # the agent sees the window in their own history
    await api.runtime.audit.flush()
    r = await api.client.get("/v1/me/verifications", headers=await api.citizen("agent-1"))
    assert [i["scene"] for i in r.json()["items"]][:3] == ["government"] * 3


async def test_a_window_without_enterprise_attributes_sees_none(api: Api) -> None:
    await put_enterprise(api)
    gov = await window(api, allowed=[])
    code = (await enterprise_code(api, "agent-2")).json()["code"]
    body = (await api.verify(gov, code, "government")).json()
    assert body["valid"] is True and body["enterprise"] == {}


@pytest.mark.parametrize("scene", ["metro", "bus", "hospital", "library", "venue"])
async def test_an_enterprise_code_elsewhere_is_scene_not_allowed(api: Api, scene: str) -> None:
    await put_enterprise(api)
    partner = await api.partner([scene])
    code = (await enterprise_code(api, "agent-1")).json()["code"]
    r = await api.verify(partner, code, scene, direction="in" if scene in ("metro", "bus")
                         else None)
    assert r.json() == {**r.json(), "valid": False, "reason": "scene_not_allowed"}


async def test_suspension_and_removal_revoke_unexpired_codes(api: Api) -> None:
    await put_enterprise(api)
    gov = await window(api)
    first = (await enterprise_code(api, "agent-1")).json()["code"]
    second = (await enterprise_code(api, "agent-2")).json()["code"]
    assert (await api.verify(gov, first, "government")).json()["valid"] is True
    await put_enterprise(api, status="suspended")
    for code in (first, second):
        assert (await api.verify(gov, code, "government")).json()["reason"] == "revoked"
    # revoked wins over scene_not_allowed
    metro = await api.partner(["metro"])
    assert (await api.verify(metro, first, "metro")).json()["reason"] == "revoked"
    await put_enterprise(api, agents=["agent-2"])  # active again; agent-1 removed
    assert (await api.verify(gov, first, "government")).json()["reason"] == "revoked"
    assert (await api.verify(gov, second, "government")).json()["valid"] is True
    # a suspended agent's enterprise codes are refused too
    await api.client.put("/v1/admin/subjects/agent-2", headers=api.admin,
                         json={"status": "suspended"})
    assert (await api.verify(gov, second, "government")).json()["reason"] == "revoked"


# --- item 5: POST /v1/resolve ---------------------------------------------------------
async def resolve(api: Api, partner: dict[str, Any], code: Any) -> Any:
    return await api.client.post("/v1/resolve", headers=partner["headers"], json={"code": code})


async def test_resolve_names_every_kind_and_shows_nothing_personal(api: Api) -> None:
    from suishen.keys import offline as koff
    from suishen.keys.algorithms import Alg, PrivateKey

    await put_enterprise(api)
    await api.client.put("/v1/admin/subjects/agent-1", headers=api.admin,
                         json={"status": "active", "attributes": {"name": "李四"}})
    gov = await window(api, allowed=["name", "licences"])
    personal = await api.code("agent-1")
    r = await resolve(api, gov, personal)
    assert r.status_code == 200, r.text
    body = r.json()
    assert {k: body[k] for k in ("kind", "issuer", "valid", "reason")} == {
        "kind": "personal", "issuer": "urn:suishen", "valid": True, "reason": "ok"}
    assert not {"subject", "attributes", "enterprise"} & body.keys()
    assert "李四" not in r.text

    code = (await enterprise_code(api, "agent-1")).json()["code"]
    body = (await resolve(api, gov, code)).json()
    assert body["kind"] == "enterprise" and body["valid"] is True
    assert body["enterprise"] == {"name": BODY["name"], "licences": ["ICP-1", "EDI-2"]}
    assert not {"subject", "attributes"} & body.keys()

    # an offline code, made on a registered device
    key = PrivateKey.generate(Alg.ES256)
    r = await api.client.post("/v1/devices", headers=await api.citizen("rider"),
                              json={"name": "phone", "keys": [key.public().jwk_members()]})
    assert r.status_code == 201, r.text
    import base64

    raw = r.json()["credentials"][0]["credential"]
    credential = base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4))
    offline = koff.make_code(key, credential, iat=int(api.runtime.now()))
    body = (await resolve(api, gov, offline)).json()
    assert (body["kind"], body["valid"], body["issuer"]) == ("offline", True, "urn:suishen")

    for text, reason in (("XY9:ABC", "unsupported_version"), ("SC1:%%%", "malformed"),
                         (personal[:-4] + "0000", None)):
        body = (await resolve(api, gov, text)).json()
        assert body["valid"] is False and body["kind"] is None and body["issuer"] is None
        if reason:
            assert body["reason"] == reason


async def test_resolve_never_consumes_a_single_use_code(api: Api) -> None:
    metro = await api.partner(["metro"])
    code = await api.code("rider-2")
    for _ in range(3):
        assert (await resolve(api, metro, code)).json()["valid"] is True
    r = await api.verify(metro, code, "metro", direction="in")
    assert r.json()["valid"] is True
    assert (await api.verify(metro, code, "metro", direction="in")).json()["reason"] == "replayed"
    assert (await resolve(api, metro, code)).json()["valid"] is True  # still judged valid


async def test_resolve_judges_revocation_and_is_audited(api: Api) -> None:
    await put_enterprise(api)
    gov = await window(api)
    code = (await enterprise_code(api, "agent-1")).json()["code"]
    await put_enterprise(api, status="suspended")
    body = (await resolve(api, gov, code)).json()
    assert body == {**body, "kind": "enterprise", "valid": False, "reason": "revoked"}
    assert "enterprise" not in body
    await api.runtime.audit.flush()
    r = await api.client.get("/v1/me/verifications", headers=await api.citizen("agent-1"))
    assert r.json()["items"][0]["scene"] == "resolve"
    assert r.json()["items"][0]["result"] == "revoked"


async def test_resolve_needs_a_partner_and_a_valid_body(api: Api) -> None:
    r = await api.client.post("/v1/resolve", json={"code": "SC1:"})
    assert r.status_code == 401
    r = await api.client.post("/v1/resolve", headers=await api.citizen("c"),
                              json={"code": "SC1:"})
    assert r.status_code == 401
    gov = await window(api)
    for bad in ({}, {"code": 5}, {"code": "x" * 1025}, {"code": "SC1:", "scene": "metro"}):
        r = await api.client.post("/v1/resolve", headers=gov["headers"], json=bad)
        assert r.status_code == 422, bad
    r = await api.client.post("/v1/resolve", headers={**gov["headers"],
                                                       "content-type": "application/json"},
                              content=b'{"code": "\xff"}')
    assert r.status_code == 422


async def test_resolve_is_rate_limited_like_verify(api: Api) -> None:
    gov = await window(api)
    gate = await api.partner(["library"], rate_limit_per_second=2)
    code = await api.code("c-rate")
    answers = [await resolve(api, gate, code) for _ in range(2)]
    answers.append(await api.verify(gate, code, "library"))  # one budget for both
    assert [a.status_code for a in answers][:2] == [200, 200]
    assert answers[2].status_code == 429 and "Retry-After" in answers[2].headers
    assert (await resolve(api, gov, code)).status_code == 200  # another partner's budget


def test_sdk_partner_client_resolves_against_the_running_service(tmp_path: Any) -> None:
    """``PartnerClient.resolve`` against a real server process (uvicorn in a thread):
    typed result, the same :class:`Reason` enum, nothing personal."""
    import threading
    import time

    import httpx
    import uvicorn

    from suishen.app.main import create_app
    from suishen.sdk.client import PartnerClient, ResolveResult
    from suishen.verifiers.reasons import Reason
    from tests.api.conftest import ADMIN_TOKEN, make_settings
    from tests.contract.servers import free_port

    app = create_app(make_settings(tmp_path))
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while not server.started:
            assert time.monotonic() < deadline, "server did not start"
            time.sleep(0.05)
        admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
        assert httpx.put(url + "/v1/admin/enterprises/acme", headers=admin,
                         json=BODY).status_code == 200
        p = httpx.post(url + "/v1/admin/partners", headers=admin, json={
            "name": "Window", "scenes": ["government"],
            "enterprise_attributes": ["uscc"]}).json()
        token = httpx.post(url + "/v1/dev/citizen-token", json={"sub": "agent-1"}).json()
        citizen = {"Authorization": f"Bearer {token['access_token']}"}
        code = httpx.post(url + "/v1/codes", headers=citizen,
                          json={"kind": "enterprise", "enterprise_id": "acme"}).json()["code"]
        client = PartnerClient(url, p["client_id"], p["client_secret"])
        found = client.resolve(code)
        assert isinstance(found, ResolveResult) and found.reason is Reason.OK
        assert (found.kind, found.issuer, found.valid) == ("enterprise", "urn:suishen", True)
        assert found.enterprise == {"uscc": USCC} and found.code_expires_at
        other = client.resolve("HC1:NCFOXN")
        assert other.reason is Reason.UNSUPPORTED_VERSION and other.kind is None
    finally:
        server.should_exit = True
        thread.join(timeout=10)
