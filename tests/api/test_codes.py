"""POST /v1/codes: JSON, PNG (read back with zxing-cpp) and SVG."""

from __future__ import annotations

import io
import xml.etree.ElementTree as ET

import zxingcpp
from PIL import Image

from suishen.timefmt import parse_rfc3339
from tests.api.conftest import Api


async def test_json_code(api: Api) -> None:
    r = await api.client.post("/v1/codes", headers=await api.citizen("c-json"))
    assert r.status_code == 201
    assert r.headers["cache-control"] == "no-store"
    body = r.json()
    assert set(body) == {"code", "kind", "issued_at", "expires_at", "refresh_after", "kid"}
    assert body["code"].startswith("SC1:") and len(body["code"]) <= 178
    assert body["kind"] == "personal"
    issued, expires = parse_rfc3339(body["issued_at"]), parse_rfc3339(body["expires_at"])
    assert expires - issued == api.settings.code_ttl_seconds
    assert parse_rfc3339(body["refresh_after"]) == issued + api.settings.code_ttl_seconds // 2
    keys = (await api.client.get("/v1/keys")).json()["keys"]
    assert body["kid"] in {k["kid"] for k in keys if k["status"] == "active"}


async def test_codes_differ_and_hide_the_citizen(api: Api) -> None:
    headers = await api.citizen("c-same")
    a = (await api.client.post("/v1/codes", headers=headers)).json()["code"]
    b = (await api.client.post("/v1/codes", headers=headers)).json()["code"]
    assert a != b
    assert "c-same" not in a


async def test_png_reads_back(api: Api) -> None:
    headers = await api.citizen("c-png")
    r = await api.client.post("/v1/codes?format=png", headers=headers)
    assert r.status_code == 201
    assert r.headers["content-type"] == "image/png"
    assert parse_rfc3339(r.headers["x-code-expires-at"]) > 0
    results = zxingcpp.read_barcodes(
        Image.open(io.BytesIO(r.content)), formats=zxingcpp.BarcodeFormat.QRCode
    )
    assert len(results) == 1
    text = results[0].text
    assert text.startswith("SC1:")
    gate = await api.partner(["metro"])
    assert (await api.verify(gate, text, "metro", direction="in")).json()["valid"] is True


async def test_svg(api: Api) -> None:
    r = await api.client.post("/v1/codes?format=svg", headers=await api.citizen("c-svg"))
    assert r.status_code == 201
    assert r.headers["content-type"].startswith("image/svg+xml")
    root = ET.fromstring(r.content)
    assert root.tag.endswith("svg")


async def test_unknown_format_is_422(api: Api) -> None:
    r = await api.client.post("/v1/codes?format=gif", headers=await api.citizen("c-gif"))
    assert r.status_code == 422
    assert r.headers["content-type"] == "application/problem+json"


async def test_suspended_citizen_gets_no_code(api: Api) -> None:
    headers = await api.citizen("c-susp")
    await api.client.put(
        "/v1/admin/subjects/c-susp",
        headers=api.admin,
        json={"status": "suspended", "attributes": {}},
    )
    r = await api.client.post("/v1/codes", headers=headers)
    assert r.status_code == 403
    assert r.json()["status"] == 403


async def test_no_token_is_401(api: Api) -> None:
    r = await api.client.post("/v1/codes")
    assert r.status_code == 401
    assert r.headers["content-type"] == "application/problem+json"
    assert r.headers["www-authenticate"] == "Bearer"
