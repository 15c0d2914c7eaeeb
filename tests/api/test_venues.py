"""Venues and shops over HTTP (issue 11 part B): registration with strict validation,
posters read back by zxing-cpp, revocation in every process, verify's answer for a venue
code, check-ins and their history, visit counts, rate limits."""

from __future__ import annotations

import asyncio
import io
import re
import xml.etree.ElementTree as ET
from typing import Any

import pytest
import zxingcpp
from PIL import Image

from suishen.codecs import qr
from suishen.errors import BackendUnavailable
from tests.api.conftest import Api

SHOP = {"name": "老王面馆 Lao Wang Noodles", "address": "上海市黄浦区南京东路100号",
        "kind": "shop", "info": {"opening_hours": "10:00-22:00", "电话": "021-1234"}}


async def enterprise(api: Api, enterprise_id: str) -> None:
    r = await api.client.put(f"/v1/admin/enterprises/{enterprise_id}", headers=api.admin,
                             json={"name": "Owner Ltd", "uscc": "91350100M000100Y43"})
    assert r.status_code == 200, r.text


async def register(api: Api, **changes: Any) -> dict[str, Any]:
    if changes.get("enterprise_id"):
        await enterprise(api, changes["enterprise_id"])
    r = await api.client.post("/v1/admin/venues", json={**SHOP, **changes}, headers=api.admin)
    assert r.status_code == 201, r.text
    body: dict[str, Any] = r.json()
    return body


async def checkin(api: Api, sub: str, code: str) -> Any:
    return await api.client.post("/v1/checkins", json={"code": code},
                                 headers=await api.citizen(sub))


def read_qr(png: bytes) -> list[Any]:
    return list(zxingcpp.read_barcodes(Image.open(io.BytesIO(png)),
                                       formats=zxingcpp.BarcodeFormat.QRCode))


async def test_register_answers_id_and_a_5m_code(api: Api) -> None:
    venue = await register(api, enterprise_id="ent-42")
    assert re.fullmatch(r"[0-9a-f]{10}", venue["venue_id"])
    assert venue["code"].startswith("SC1:") and len(venue["code"]) == 121
    assert qr.qr_version(venue["code"]) == 5
    assert venue["name"] == SHOP["name"] and venue["info"] == SHOP["info"]
    assert venue["enterprise_id"] == "ent-42" and venue["revoked_at"] is None
    again = await api.client.get(f"/v1/admin/venues/{venue['venue_id']}", headers=api.admin)
    assert again.status_code == 200 and again.json() == venue


async def test_a_venue_of_an_unknown_enterprise_is_refused(api: Api) -> None:
    r = await api.client.post("/v1/admin/venues", json={**SHOP, "enterprise_id": "nobody"},
                              headers=api.admin)
    assert r.status_code == 422 and "not a registered enterprise" in r.json()["detail"]


@pytest.mark.parametrize("bad", [
    {"name": ""}, {"name": " padded"}, {"name": "x" * 201}, {"kind": "castle"},
    {"address": "line\nbreak"}, {"info": {"k": "\u202e"}}, {"info": ["not", "a", "map"]},
    {"info": {f"k{i}": "v" for i in range(33)}}, {"enterprise_id": "no spaces"},
    {"unknown": 1},
])
async def test_registration_is_strict(api: Api, bad: dict[str, Any]) -> None:
    r = await api.client.post("/v1/admin/venues", json={**SHOP, **bad}, headers=api.admin)
    assert r.status_code == 422, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert r.json()["errors"]
    missing = await api.client.post("/v1/admin/venues", json={"kind": "shop"},
                                    headers=api.admin)
    assert {tuple(e["loc"])[-1] for e in missing.json()["errors"]} >= {"name", "address"}


async def test_operators_only(api: Api) -> None:
    r = await api.client.post("/v1/admin/venues", json=SHOP)
    assert r.status_code == 401
    venue = await register(api)
    citizen = await api.citizen("alice")
    for path in (f"/v1/admin/venues/{venue['venue_id']}/revoke",):
        assert (await api.client.post(path, headers=citizen)).status_code == 401


async def test_poster_png_and_svg_read_back(api: Api) -> None:
    venue = await register(api)
    path = f"/v1/venues/{venue['venue_id']}/code"
    png = await api.client.get(path, params={"format": "png"})
    assert png.status_code == 200 and png.headers["content-type"] == "image/png"
    assert "max-age" in png.headers["cache-control"]
    (barcode,) = read_qr(png.content)
    assert barcode.text == venue["code"] and barcode.extra["Version"] == "5"
    image = Image.open(io.BytesIO(png.content))
    assert image.height > image.width  # the name's band under the QR
    band = image.convert("L").crop((0, image.width, image.width, image.height))
    assert band.getextrema()[0] < 128  # the name was drawn (dark pixels in the band)

    svg = await api.client.get(path, params={"format": "svg"})
    assert svg.headers["content-type"].startswith("image/svg+xml")
    root = ET.fromstring(svg.content)
    ns = "{http://www.w3.org/2000/svg}"
    (text,) = root.iter(f"{ns}text")
    assert text.text == SHOP["name"]
    (path_el,) = root.iter(f"{ns}path")
    # Rasterise the path's unit squares and read the QR back.
    modules = re.findall(r"M(\d+),(\d+)H", path_el.attrib["d"])
    size = int(float(root.attrib["viewBox"].split()[2]))
    raster = Image.new("L", (size * 10, size * 10), 255)
    for x, y in modules:
        raster.paste(0, (int(x) * 10, int(y) * 10, int(x) * 10 + 10, int(y) * 10 + 10))
    buffer = io.BytesIO()
    raster.save(buffer, format="PNG")
    (from_svg,) = read_qr(buffer.getvalue())
    assert from_svg.text == venue["code"]

    text_form = await api.client.get(path, params={"format": "text"})
    assert text_form.text == venue["code"]
    assert (await api.client.get("/v1/venues/0000000000/code")).status_code == 404
    assert (await api.client.get("/v1/venues/NOT-AN-ID/code")).status_code == 422


async def test_checkin_history_and_visits(api: Api) -> None:
    venue = await register(api)
    other = await register(api, name="静安寺", kind="venue", info={})
    r = await checkin(api, "alice", venue["code"])
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["venue"] == {k: venue[k] for k in ("venue_id", "name", "address", "kind",
                                                   "info")}
    assert body["checked_in_at"].endswith("Z")
    await asyncio.sleep(0.6)  # the per-citizen bucket refills
    assert (await checkin(api, "alice", other["code"])).status_code == 201
    assert (await checkin(api, "bob", venue["code"])).status_code == 201
    await api.runtime.venues.writer.flush()
    page = (await api.client.get("/v1/me/checkins", params={"limit": 1},
                                 headers=await api.citizen("alice"))).json()
    assert [i["venue"]["venue_id"] for i in page["items"]] == [other["venue_id"]]
    rest = (await api.client.get("/v1/me/checkins", params={"before": page["next_before"]},
                                 headers=await api.citizen("alice"))).json()
    assert [i["venue"]["venue_id"] for i in rest["items"]] == [venue["venue_id"]]
    assert rest["next_before"] is None
    day = body["checked_in_at"][:10]
    visits = (await api.client.get(f"/v1/admin/venues/{venue['venue_id']}/visits",
                                   params={"date": day}, headers=api.admin)).json()
    assert visits["total"] == 2 and sum(h["visits"] for h in visits["hours"]) == 2
    assert "alice" not in str(visits) and "bob" not in str(visits)
    bad = await api.client.get(f"/v1/admin/venues/{venue['venue_id']}/visits",
                               params={"date": "2026-13-01"}, headers=api.admin)
    assert bad.status_code == 422
    for edge in ("9999-12-31", "0001-01-01"):  # valid dates at the ends: never a 500
        r = await api.client.get(f"/v1/admin/venues/{venue['venue_id']}/visits",
                                 params={"date": edge}, headers=api.admin)
        assert r.status_code == 200 and r.json()["total"] == 0
        settle = await api.client.get("/v1/admin/settlement", params={"date": edge},
                                      headers=api.admin)
        assert settle.status_code == 200


async def test_checkin_refusals_have_reasons(api: Api) -> None:
    venue = await register(api)
    personal = await api.code("carol")
    cases = {personal: "scene_not_allowed", "SC1:NOT-A-CODE": "malformed",
             "XY9:ABC": "unsupported_version"}
    forged = venue["code"][:-3] + ("000" if venue["code"][-3:] != "000" else "111")
    for code, reason in cases.items():
        await asyncio.sleep(0.6)
        r = await checkin(api, "carol", code)
        assert r.status_code == 422, r.text
        assert r.json()["reason"] == reason
    await asyncio.sleep(0.6)
    r = await checkin(api, "carol", forged)
    assert r.status_code == 422 and r.json()["reason"] in {"bad_signature", "malformed"}


async def test_revocation_refuses_the_code_and_the_poster(api: Api) -> None:
    venue = await register(api)
    r = await api.client.post(f"/v1/admin/venues/{venue['venue_id']}/revoke",
                              headers=api.admin)
    assert r.status_code == 200 and r.json()["revoked_at"] is not None
    refused = await checkin(api, "dave", venue["code"])
    assert refused.status_code == 422 and refused.json()["reason"] == "revoked"
    poster = await api.client.get(f"/v1/venues/{venue['venue_id']}/code")
    assert poster.status_code == 404
    missing = await api.client.post("/v1/admin/venues/0000000000/revoke", headers=api.admin)
    assert missing.status_code == 404


async def test_revocation_reaches_another_process_through_the_feed(api: Api) -> None:
    """A second VenueService (another process) learns the revocation from a ``venue``
    event, without reading the database."""
    from suishen.app.services.venues import VenueService
    from suishen.app.storage.base import Event
    from suishen.codecs import sc1

    venue = await register(api)
    rt = api.runtime
    other = VenueService(rt.db, rt.state, keys=rt.keys, writer=rt.venues.writer,
                         limiter=rt.venues._limiter, secret=b"s" * 32, metrics=rt.metrics)
    parsed = sc1.parse_code(venue["code"])
    assert other.check(venue["code"]).reason.value == "ok"  # type: ignore[union-attr]
    await other.apply(Event("venue", {"venue_id": venue["venue_id"]}))
    assert other.venue_revoked(parsed.venue_id)  # type: ignore[union-attr]
    assert other.check(venue["code"]).reason.value == "revoked"  # type: ignore[union-attr]
    await other.apply(Event("venue", {"venue_id": "garbage"}))  # ignored, no crash


async def test_verify_answers_scene_not_allowed(api: Api) -> None:
    venue = await register(api)
    gate = await api.partner(["venue", "library"])
    for scene in ("venue", "library"):
        r = await api.verify(gate, venue["code"], scene)
        assert r.status_code == 200
        assert r.json()["valid"] is False and r.json()["reason"] == "scene_not_allowed"
    await api.client.post(f"/v1/admin/venues/{venue['venue_id']}/revoke", headers=api.admin)
    assert (await api.verify(gate, venue["code"], "venue")).json()["reason"] == "revoked"


async def test_rotating_venue_keys_keeps_printed_codes(api: Api) -> None:
    old = await register(api)
    r = await api.client.post("/v1/admin/keys/rotate", params={"key_set": "venues"},
                              headers=api.admin)
    assert r.status_code == 200, r.text
    await api.client.post("/v1/admin/keys/rotate", headers=api.admin)  # code keys too
    new = await register(api)
    assert (await checkin(api, "erin", old["code"])).status_code == 201
    await asyncio.sleep(0.6)
    assert (await checkin(api, "erin", new["code"])).status_code == 201
    poster = await api.client.get(f"/v1/venues/{old['venue_id']}/code", params={"format": "text"})
    assert poster.text == old["code"]  # the printed code is not re-signed


async def test_checkins_are_rate_limited_per_citizen(api: Api) -> None:
    venue = await register(api)
    codes = [(await checkin(api, "frank", venue["code"])).status_code for _ in range(4)]
    assert codes[:2] == [201, 201] and 429 in codes[2:]
    assert (await checkin(api, "grace", venue["code"])).status_code == 201


async def test_checkins_survive_a_database_outage(api: Api) -> None:
    venue = await register(api)
    repo = api.runtime.db.venues
    real = repo.append_checkins

    async def down(records: Any) -> None:
        raise BackendUnavailable("database down (test fault)")

    repo.append_checkins = down  # a fault that cannot be caused for real on SQLite
    try:
        assert (await checkin(api, "heidi", venue["code"])).status_code == 201
        with pytest.raises(BackendUnavailable):
            await api.runtime.venues.writer.flush()
        assert api.runtime.venues.writer.pending == 1
    finally:
        repo.append_checkins = real
    await api.runtime.venues.writer.flush()
    items = (await api.client.get("/v1/me/checkins",
                                  headers=await api.citizen("heidi"))).json()["items"]
    assert [i["venue"]["venue_id"] for i in items] == [venue["venue_id"]]


async def test_gate_refuses_a_revoked_venue_after_bundle_sync(api: Api) -> None:
    """Offline: the bundle carries the venue keys and the revoked venue ids."""
    import time

    from suishen.codecs import bundle as bcodec
    from suishen.codecs import cose
    from suishen.sdk.gate import Gate

    venue = await register(api)
    live = await register(api)
    partner = await api.partner(["venue"])
    anchor = (await api.client.get("/v1/trust-anchor")).json()
    gate = Gate.from_anchor_jwks(anchor)
    first = await api.client.get("/v1/trust-bundle", headers=partner["headers"])
    bundle = gate.load_bundle(first.content)
    active = api.runtime.keys.view("venues").keyset.active().kid
    assert [k.kid.hex() for k in bundle.venue_keys] == [active]
    now = int(time.time())
    assert gate.verify(venue["code"], scene="venue", now=now).reason == "scene_not_allowed"
    forged = venue["code"][:-2] + ("00" if venue["code"][-2:] != "00" else "11")
    assert gate.verify(forged, scene="venue", now=now).reason in {"bad_signature",
                                                                  "malformed"}
    await api.client.post(f"/v1/admin/venues/{venue['venue_id']}/revoke", headers=api.admin)
    d = await api.client.get("/v1/trust-bundle", headers=partner["headers"],
                             params={"since": bundle.version})
    synced = bcodec.decode(cose.decode_sign1(d.content).payload)
    assert synced.version > bundle.version
    assert synced.revoked_venues == (bytes.fromhex(venue["venue_id"]),)
    gate.load_bundle(d.content)
    assert gate.verify(venue["code"], scene="venue", now=now).reason == "revoked"
    assert gate.verify(live["code"], scene="venue", now=now).reason == "scene_not_allowed"


async def test_a_venue_key_rotation_gives_gates_a_new_bundle(api: Api) -> None:
    from suishen.codecs import bundle as bcodec
    from suishen.codecs import cose

    partner = await api.partner(["venue"])
    first = await api.client.get("/v1/trust-bundle", headers=partner["headers"])
    version = int(first.headers["x-bundle-version"])
    await api.client.post("/v1/admin/keys/rotate", params={"key_set": "venues"},
                          headers=api.admin)
    after = await api.client.get("/v1/trust-bundle", headers=partner["headers"])
    bundle = bcodec.decode(cose.decode_sign1(after.content).payload)
    assert bundle.version > version
    assert sorted(k.state for k in bundle.venue_keys) == ["active", "retired"]


async def test_resolve_names_a_venue_code_with_its_public_information(api: Api) -> None:
    """Unified recognition (SPEC §6.3): a venue code resolves to kind ``venue``, the
    service as issuer and the venue's public information; once revoked, ``revoked`` and
    no information. Resolving records no check-in."""
    venue = await register(api, enterprise_id="ent-7")
    window = await api.partner(["government"])
    r = await api.client.post("/v1/resolve", headers=window["headers"],
                              json={"code": venue["code"]})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["kind"] == "venue" and body["valid"] is True and body["reason"] == "ok"
    assert body["issuer"]
    assert body["venue"] == {"venue_id": venue["venue_id"], "name": SHOP["name"],
                             "address": SHOP["address"], "kind": "shop",
                             "info": SHOP["info"]}
    assert "enterprise_id" not in body["venue"] and "subject" not in body
    await api.client.post(f"/v1/admin/venues/{venue['venue_id']}/revoke", headers=api.admin)
    gone = (await api.client.post("/v1/resolve", headers=window["headers"],
                                  json={"code": venue["code"]})).json()
    assert gone["kind"] == "venue" and gone["valid"] is False and gone["reason"] == "revoked"
    assert "venue" not in gone
