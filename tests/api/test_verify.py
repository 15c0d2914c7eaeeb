"""POST /v1/verify: every reason the service can give, partners' views, single use,
status changes, and requests that are errors rather than results."""

from __future__ import annotations

import asyncio

from suishen.timefmt import parse_rfc3339
from tests.api.conftest import Api


async def _issue_at(api: Api, sub: str, at: int) -> str:
    """A code for ``sub`` issued at ``at`` by the service's own signer."""
    subject = await api.runtime.subjects.enroll(sub)
    issuer = api.runtime.keys.view().issuer
    return str(issuer.issue_personal(subject.handle, now=at, ttl=60).text)


async def test_reasons(api: Api) -> None:
    lib = await api.partner(["library"])
    now = int(api.runtime.now())
    cases = {
        "malformed": "SC1:NOT*BASE45",
        "unsupported_version": "SC2:AAAA",
        "expired": await _issue_at(api, "r-exp", now - 200),
        "not_yet_valid": await _issue_at(api, "r-nyv", now + 200),
    }
    for reason, code in cases.items():
        r = await api.verify(lib, code, "library")
        assert r.status_code == 200, r.text
        assert r.json()["reason"] == reason
        assert r.json()["valid"] is False
        assert "subject" not in r.json()


async def test_bad_signature_and_unknown_key(api: Api) -> None:
    from suishen.codecs import base45

    lib = await api.partner(["library"])
    code = await api.code("r-sig")
    raw = bytearray(base45.decode(code[4:]))
    raw[-1] ^= 1
    r = await api.verify(lib, "SC1:" + base45.encode(bytes(raw)), "library")
    assert r.json()["reason"] == "bad_signature"
    raw = bytearray(base45.decode(code[4:]))
    raw[8] ^= 0xFF  # the first kid byte (layout in codecs/sc1.py)
    r = await api.verify(lib, "SC1:" + base45.encode(bytes(raw)), "library")
    assert r.json()["reason"] == "unknown_key"


async def test_pairwise_subjects(api: Api) -> None:
    a = await api.partner(["library"])
    b = await api.partner(["library"])
    s1 = (await api.verify(a, await api.code("pw"), "library")).json()["subject"]
    s2 = (await api.verify(a, await api.code("pw"), "library")).json()["subject"]
    s3 = (await api.verify(b, await api.code("pw"), "library")).json()["subject"]
    other = (await api.verify(a, await api.code("pw-other"), "library")).json()["subject"]
    assert s1 == s2
    assert s3 != s1
    assert other != s1


async def test_attributes_are_the_intersection(api: Api) -> None:
    await api.client.put("/v1/admin/subjects/attr", headers=api.admin, json={
        "status": "active",
        "attributes": {"name": "Li Lei", "medical_insurance_id": "M-1", "reader_id": "R-7"},
    })
    hospital = await api.partner(["hospital"], ["name", "medical_insurance_id", "transit_account"])
    library = await api.partner(["library"], ["reader_id"])
    r = await api.verify(hospital, await api.code("attr"), "hospital")
    assert r.json()["attributes"] == {"name": "Li Lei", "medical_insurance_id": "M-1"}
    r = await api.verify(library, await api.code("attr"), "library")
    assert r.json()["attributes"] == {"reader_id": "R-7"}


async def test_rescan_allowed_where_the_scene_allows(api: Api) -> None:
    code = await api.code("rescan")
    for scene in ("library", "hospital", "pharmacy"):
        partner = await api.partner([scene])
        for _ in range(3):
            assert (await api.verify(partner, code, scene)).json()["valid"] is True


async def test_single_use_per_scene_and_direction(api: Api) -> None:
    code = await api.code("single")
    gates = await api.partner(["metro", "bus", "ferry", "venue"])
    other_operator = await api.partner(["metro"])
    assert (await api.verify(gates, code, "metro", direction="in")).json()["valid"]
    again = await api.verify(other_operator, code, "metro", direction="in", checkpoint="X")
    assert again.json()["reason"] == "replayed"
    assert (await api.verify(gates, code, "metro", direction="out")).json()["valid"]
    assert (await api.verify(gates, code, "bus", direction="in")).json()["valid"]
    assert (await api.verify(gates, code, "venue")).json()["valid"]
    assert (await api.verify(gates, code, "venue")).json()["reason"] == "replayed"


async def test_concurrent_presentations_accept_once(api: Api) -> None:
    code = await api.code("race")
    gate = await api.partner(["metro"], rate_limit_per_second=10_000)
    answers = await asyncio.gather(
        *(api.verify(gate, code, "metro", direction="in") for _ in range(50))
    )
    assert sum(a.json()["valid"] for a in answers) == 1


async def test_suspension_applies_at_once(api: Api) -> None:
    lib = await api.partner(["library"])
    code = await api.code("susp")
    assert (await api.verify(lib, code, "library")).json()["valid"] is True
    await api.client.put("/v1/admin/subjects/susp", headers=api.admin,
                         json={"status": "suspended", "attributes": {}})
    assert (await api.verify(lib, code, "library")).json()["reason"] == "revoked"
    await api.client.put("/v1/admin/subjects/susp", headers=api.admin,
                         json={"status": "active", "attributes": {}})
    assert (await api.verify(lib, code, "library")).json()["valid"] is True


async def test_attribute_update_applies_at_once(api: Api) -> None:
    lib = await api.partner(["library"], ["reader_id"])
    code = await api.code("upd")
    assert (await api.verify(lib, code, "library")).json()["attributes"] == {}
    await api.client.put("/v1/admin/subjects/upd", headers=api.admin,
                         json={"status": "active", "attributes": {"reader_id": "R-2"}})
    assert (await api.verify(lib, code, "library")).json()["attributes"] == {"reader_id": "R-2"}


async def test_rotation_and_key_revocation(api: Api) -> None:
    lib = await api.partner(["library"])
    old = await api.code("rot")
    r = await api.client.post("/v1/admin/keys/rotate", headers=api.admin)
    assert r.status_code == 200, r.text
    new_kid = r.json()["active"]
    new = await api.code("rot")
    assert (await api.client.post("/v1/codes", headers=await api.citizen("rot"))).json()[
        "kid"] == new_kid
    assert (await api.verify(lib, old, "library")).json()["valid"] is True
    keys = {k["kid"]: k for k in (await api.client.get("/v1/keys")).json()["keys"]}
    old_kid = next(k for k, v in keys.items() if v["status"] == "retired")
    assert parse_rfc3339(keys[old_kid]["not_after"]) > api.runtime.now()
    r = await api.client.post(f"/v1/admin/keys/{old_kid}/revoke", headers=api.admin)
    assert r.status_code == 200
    assert (await api.verify(lib, old, "library")).json()["reason"] == "revoked"
    assert (await api.verify(lib, new, "library")).json()["valid"] is True
    keys = {k["kid"]: k for k in (await api.client.get("/v1/keys")).json()["keys"]}
    assert keys[old_kid]["status"] == "revoked"
    r = await api.client.post("/v1/admin/keys/ffff/revoke", headers=api.admin)
    assert r.status_code in (200, 404)


async def test_scene_outside_registration_is_403(api: Api) -> None:
    lib = await api.partner(["library"])
    r = await api.verify(lib, await api.code("s403"), "metro", direction="in")
    assert r.status_code == 403
    assert r.headers["content-type"] == "application/problem+json"


async def test_request_errors(api: Api) -> None:
    lib = await api.partner(["library"])
    h = {**lib["headers"], "content-type": "application/json"}
    for body in (b"{", b"[]", b'{"scene": "library"}', b'{"code": 1, "scene": "library"}',
                 b'{"code": "x", "scene": "moon"}', b'{"code": "x", "scene": "library",'
                 b' "direction": "up"}', b"\xff\xfe", b'{"code": "x", "scene": "library", "e": 1}',
                 b'{"code": "x", "scene": "library", "checkpoint": ""}'):
        r = await api.client.post("/v1/verify", headers=h, content=body)
        assert r.status_code == 422, (body, r.text)
        assert r.headers["content-type"] == "application/problem+json"
        assert set(r.json()) >= {"type", "title", "status", "detail"}


async def test_auth_failures_are_401(api: Api) -> None:
    body = {"code": "SC1:X", "scene": "library"}
    for headers in ({}, {"Authorization": "Bearer nope"}, {"Authorization": "Basic Zm9vOmJhcg=="},
                    await api.citizen("not-a-partner"), api.admin):
        r = await api.client.post("/v1/verify", headers=headers, json=body)
        assert r.status_code == 401, headers
        assert r.headers["www-authenticate"].startswith("Bearer")


async def test_rate_limit(api: Api) -> None:
    lib = await api.partner(["library"], rate_limit_per_second=3)
    codes = [await api.code("rl") for _ in range(5)]
    statuses = [(await api.verify(lib, c, "library")).status_code for c in codes]
    assert statuses.count(429) >= 1
    r = await api.verify(lib, codes[0], "library")
    if r.status_code == 429:
        assert int(r.headers["retry-after"]) >= 1


async def test_audit_and_my_history(api: Api) -> None:
    headers = await api.citizen("hist")
    lib = await api.partner(["library"])
    gate = await api.partner(["metro"])
    code = (await api.client.post("/v1/codes", headers=headers)).json()["code"]
    await api.verify(lib, code, "library", checkpoint="desk-2")
    await api.verify(gate, code, "metro", checkpoint="G1", direction="in")
    await api.verify(gate, code, "metro", checkpoint="G2", direction="in")
    await api.runtime.audit.flush()
    r = await api.client.get("/v1/me/verifications?limit=2", headers=headers)
    assert r.status_code == 200
    page = r.json()
    assert [i["result"] for i in page["items"]] == ["replayed", "ok"]
    assert page["items"][0]["checkpoint"] == "G2"
    assert page["items"][0]["partner"] == "partner metro"
    assert page["next_before"] is not None
    r = await api.client.get(f"/v1/me/verifications?before={page['next_before']}",
                             headers=headers)
    rest = r.json()
    assert [i["scene"] for i in rest["items"]] == ["library"]
    assert rest["next_before"] is None
    other = await api.client.get("/v1/me/verifications", headers=await api.citizen("nobody"))
    assert other.json() == {"items": [], "next_before": None}
