"""The README walkthrough, through the API: a citizen's code verified at a library desk
and at a metro gate."""

from __future__ import annotations

from suishen.sdk import Verifier
from tests.api.conftest import Api


async def test_library_and_metro(api: Api) -> None:
    await api.client.put("/v1/admin/subjects/citizen-1", headers=api.admin,
                         json={"status": "active", "attributes": {"reader_id": "R-1",
                                                                  "medical_insurance_id": "M-9"}})
    code = await api.code("citizen-1")
    library = await api.partner(["library"], ["reader_id", "name"])
    gate = await api.partner(["metro"])

    r = await api.verify(library, code, "library", checkpoint="desk-1")
    assert r.status_code == 200
    body = r.json()
    assert body["valid"] is True and body["reason"] == "ok"
    assert body["attributes"] == {"reader_id": "R-1"}  # never the insurance number
    assert body["subject"] and body["verified_at"].endswith("Z")

    r = await api.verify(gate, code, "metro", checkpoint="L2-S12-G3", direction="in")
    assert r.json()["valid"] is True
    r = await api.verify(gate, code, "metro", checkpoint="L2-S12-G4", direction="in")
    assert r.json() == {**r.json(), "valid": False, "reason": "replayed"}
    r = await api.verify(gate, code, "metro", checkpoint="L2-S14-G1", direction="out")
    assert r.json()["valid"] is True


async def test_published_keys_verify_offline(api: Api) -> None:
    code = await api.code("citizen-2")
    r = await api.client.get("/v1/keys")
    assert r.status_code == 200
    verifier = Verifier.from_jwks(r.json())
    assert verifier.verify(code, scene="library").reason == "ok"
