"""Operators' endpoints and the OAuth 2.0 token endpoint."""

from __future__ import annotations

import base64

import jwt

from tests.api.conftest import Api


async def test_subject_upsert_and_read(api: Api) -> None:
    r = await api.client.put("/v1/admin/subjects/op-1", headers=api.admin,
                             json={"status": "active", "attributes": {"name": "Han Meimei"}})
    assert r.status_code == 200
    r = await api.client.get("/v1/admin/subjects/op-1", headers=api.admin)
    assert r.json()["attributes"] == {"name": "Han Meimei"}
    assert r.json()["status"] == "active"
    assert (await api.client.get("/v1/admin/subjects/none", headers=api.admin)).status_code == 404


async def test_subject_input_is_checked(api: Api) -> None:
    for body in ({"status": "gone"}, {"status": "active", "attributes": {"iban": "x"}},
                 {"status": "active", "attributes": {"name": 5}},
                 {"status": "active", "attributes": {"name": "x" * 300}},
                 {"status": "active", "extra": 1}, []):
        r = await api.client.put("/v1/admin/subjects/op-2", headers=api.admin, json=body)
        assert r.status_code == 422, body
        # Field locations and messages only: submitted values are not echoed back.
        assert all(set(e) == {"loc", "msg"} for e in r.json()["errors"])
        assert "x" * 300 not in r.text
    assert (await api.client.get("/v1/admin/subjects/op-2", headers=api.admin)).status_code == 404


async def test_admin_needs_the_token(api: Api) -> None:
    for headers in ({}, {"Authorization": "Bearer wrong"}, await api.citizen("sneaky")):
        r = await api.client.get("/v1/admin/subjects/x", headers=headers)
        assert r.status_code == 401


async def test_partner_registration(api: Api) -> None:
    r = await api.client.post("/v1/admin/partners", headers=api.admin, json={
        "name": "City Library", "scenes": ["library"], "attributes": ["reader_id"],
        "rate_limit_per_second": 50})
    assert r.status_code == 201
    body = r.json()
    assert body["client_id"] and len(body["client_secret"]) >= 32
    stored = await api.runtime.db.partners.get(body["client_id"])
    assert body["client_secret"] not in stored.secret_hash
    for bad in ({"name": "x", "scenes": []}, {"name": "x", "scenes": ["moon"]},
                {"name": "", "scenes": ["bus"]}, {"name": "x", "scenes": ["bus"],
                                                  "attributes": ["passport"]},
                {"name": "x", "scenes": ["bus"], "rate_limit_per_second": 0}):
        assert (await api.client.post("/v1/admin/partners", headers=api.admin,
                                      json=bad)).status_code == 422


async def test_token_by_form_and_basic(api: Api) -> None:
    p = await api.partner(["library", "metro"])
    basic = base64.b64encode(f"{p['client_id']}:{p['client_secret']}".encode()).decode()
    r = await api.client.post("/v1/oauth/token", data={"grant_type": "client_credentials"},
                              headers={"Authorization": f"Basic {basic}"})
    assert r.status_code == 200
    body = r.json()
    assert body["token_type"] == "Bearer" and body["expires_in"] > 0
    assert set(body["scope"].split()) == {"verify:library", "verify:metro"}
    header = jwt.get_unverified_header(body["access_token"])
    assert header["kid"] and header["alg"] in ("ES256", "EdDSA")
    assert r.headers["cache-control"] == "no-store"
    r = await api.client.post("/v1/oauth/token", data={
        "grant_type": "client_credentials", "client_id": p["client_id"],
        "client_secret": p["client_secret"], "scope": "verify:library"})
    assert r.json()["scope"] == "verify:library"
    narrowed = {"Authorization": f"Bearer {r.json()['access_token']}"}
    v = await api.client.post("/v1/verify", headers=narrowed,
                              json={"code": "SC1:X", "scene": "metro", "direction": "in"})
    assert v.status_code == 403


async def test_token_errors(api: Api) -> None:
    p = await api.partner(["library"])
    cases = [
        ({"grant_type": "password"}, 400, "unsupported_grant_type"),
        ({}, 400, "invalid_request"),
        ({"grant_type": "client_credentials", "client_id": p["client_id"],
          "client_secret": "wrong"}, 401, "invalid_client"),
        ({"grant_type": "client_credentials", "client_id": "nobody",
          "client_secret": "x"}, 401, "invalid_client"),
        ({"grant_type": "client_credentials"}, 401, "invalid_client"),
        ({"grant_type": "client_credentials", "client_id": p["client_id"],
          "client_secret": p["client_secret"], "scope": "verify:metro"}, 400, "invalid_scope"),
    ]
    for form, status, error in cases:
        r = await api.client.post("/v1/oauth/token", data=form)
        assert r.status_code == status, (form, r.text)
        assert r.json()["error"] == error
    r = await api.client.post("/v1/oauth/token", json={"grant_type": "client_credentials"})
    assert r.json()["error"] == "invalid_request"
    r = await api.client.post("/v1/oauth/token", data={"grant_type": "client_credentials"},
                              headers={"Authorization": "Basic !!!"})
    assert r.status_code == 401 and r.json()["error"] == "invalid_client"


async def test_partner_token_after_token_key_rotation(api: Api) -> None:
    p = await api.partner(["library"])
    r = await api.client.post("/v1/admin/keys/rotate?key_set=tokens", headers=api.admin)
    assert r.status_code == 200
    code = await api.code("tok-rot")
    assert (await api.verify(p, code, "library")).json()["valid"] is True
