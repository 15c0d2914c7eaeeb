"""Devices, offline credentials, trust anchor and trust bundles over HTTP (SPEC.md §6.1,
issue 9 items 1, 4, 7), on the embedded default."""

from __future__ import annotations

import base64
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from suishen.app.main import create_app
from suishen.codecs import bundle as bcodec
from suishen.codecs import cose
from suishen.keys import offline as koff
from suishen.keys.algorithms import Alg, PrivateKey, b64u
from suishen.keys.blinding import pairwise_subject
from suishen.keys.keyring import KeyRing
from suishen.sdk.gate import Gate
from suishen.timefmt import parse_rfc3339
from tests.api.conftest import Api, make_settings

SLOT = 3600


def new_keys(n: int) -> list[PrivateKey]:
    return [PrivateKey.generate(Alg.ES256) for _ in range(n)]


def jwks_of(keys: list[PrivateKey]) -> list[dict[str, str]]:
    return [k.public().jwk_members() for k in keys]


def unb64u(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


async def register(api: Api, sub: str, keys: list[PrivateKey],
                   name: str = "phone") -> dict[str, Any]:
    r = await api.client.post("/v1/devices", headers=await api.citizen(sub),
                              json={"name": name, "keys": jwks_of(keys)})
    assert r.status_code == 201, r.text
    body: dict[str, Any] = r.json()
    return body


def credential_for(body: dict[str, Any], key: PrivateKey) -> bytes:
    x = key.public().raw[1:33]
    for entry in body["credentials"]:
        raw = unb64u(entry["credential"])
        code = koff.parse_code(koff.make_code(key, raw, iat=1))
        if code.credential.claims.device_key.x == x:
            return raw
    raise AssertionError("no credential for this key")


def offline_code(body: dict[str, Any], keys: list[PrivateKey], now: int, counter: int = 0) -> str:
    """A code from the credential whose slot covers ``now``."""
    for key in keys:
        try:
            raw = credential_for(body, key)
        except AssertionError:
            continue
        claims = koff.parse_code(koff.make_code(key, raw, iat=now)).credential.claims
        if claims.nbf <= now < claims.exp:
            return koff.make_code(key, raw, iat=now, counter=counter)
    raise AssertionError("no credential covers now")


# --- registration ---------------------------------------------------------------------------
async def test_register_answers_one_credential_per_key_for_consecutive_slots(api: Api) -> None:
    keys = new_keys(5)
    now = int(time.time())
    body = await register(api, "alice", keys, name="Alice's phone 📱")
    assert body["name"] == "Alice's phone 📱" and body["device_id"]
    starts = [parse_rfc3339(c["slot_start"]) for c in body["credentials"]]
    assert starts == [now - now % SLOT + i * SLOT for i in range(5)]
    active_kid = api.runtime.keys.view().keyset.active().kid
    for entry, key in zip(body["credentials"], keys, strict=True):
        assert entry["kid"] == active_kid
        assert parse_rfc3339(entry["slot_end"]) - parse_rfc3339(entry["slot_start"]) == SLOT
        raw = credential_for(body, key)
        claims = koff.parse_code(koff.make_code(key, raw, iat=now)).credential.claims
        assert claims.device_key == koff.device_key_of(key.public())
        assert 0 <= claims.status_index < api.settings.offline_status_list_size
    # the credentials are the service's: both signatures check with its key
    ring = api.runtime.keys.view().keyring
    code = koff.parse_code(offline_code(body, keys, now))
    service_key = ring.get(code.credential.kid)
    assert service_key is not None and koff.check_signatures(code, service_key.public)
    # blinded per credential: two credentials of one citizen show different subs
    subs = {koff.parse_code(koff.make_code(k, credential_for(body, k), iat=now))
            .credential.claims.sub for k in keys}
    assert len(subs) == 5


async def test_keys_beyond_the_window_get_no_credential_and_refill_continues(
    tmp_path: Path,
) -> None:
    settings = make_settings(tmp_path, offline_days=1)  # 24 hourly slots
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            api = Api(client, app, settings)
            citizen = await api.citizen("bob")
            too_many = await client.post("/v1/devices", headers=citizen,
                                         json={"name": "p", "keys": jwks_of(new_keys(25))})
            assert too_many.status_code == 422
            assert "1 to 24" in too_many.json()["detail"]
            body = await register(api, "bob", new_keys(10))
            last = max(parse_rfc3339(c["slot_end"]) for c in body["credentials"])
            refill = await client.post(f"/v1/devices/{body['device_id']}/credentials",
                                       headers=citizen, json={"keys": jwks_of(new_keys(20))})
            assert refill.status_code == 200, refill.text
            got = refill.json()["credentials"]
            assert len(got) == 14  # 24 slots in the window, 10 held
            assert parse_rfc3339(got[0]["slot_start"]) == last  # right after the last one
            full = await client.post(f"/v1/devices/{body['device_id']}/credentials",
                                     headers=citizen, json={"keys": jwks_of(new_keys(3))})
            assert full.status_code == 200 and full.json()["credentials"] == []
            listed = (await client.get("/v1/devices", headers=citizen)).json()["devices"]
            assert listed[0]["credentials_valid_until"] == got[-1]["slot_end"]


async def test_devices_are_listed_for_their_owner_only(api: Api) -> None:
    body = await register(api, "carol", new_keys(2), name="tablet")
    r = await api.client.get("/v1/devices", headers=await api.citizen("carol"))
    assert r.status_code == 200
    [device] = r.json()["devices"]
    assert device["device_id"] == body["device_id"] and device["name"] == "tablet"
    assert device["status"] == "active"
    assert device["credentials_valid_until"] == body["credentials"][-1]["slot_end"]
    assert parse_rfc3339(device["registered_at"]) <= time.time()
    other = await api.client.get("/v1/devices", headers=await api.citizen("dave"))
    assert other.json() == {"devices": []}
    refill = await api.client.post(f"/v1/devices/{body['device_id']}/credentials",
                                   headers=await api.citizen("dave"),
                                   json={"keys": jwks_of(new_keys(1))})
    assert refill.status_code == 404


async def test_device_endpoints_need_a_citizen_token(api: Api) -> None:
    keys = {"name": "p", "keys": jwks_of(new_keys(1))}
    assert (await api.client.post("/v1/devices", json=keys)).status_code == 401
    assert (await api.client.get("/v1/devices")).status_code == 401
    assert (await api.client.delete("/v1/devices/abc")).status_code == 401
    bad = {"Authorization": "Bearer not-a-token"}
    assert (await api.client.post("/v1/devices", json=keys, headers=bad)).status_code == 401
    assert (await api.client.delete("/v1/devices/abc", headers=bad)).status_code == 401


async def test_a_suspended_citizen_gets_no_credentials(api: Api) -> None:
    r = await api.client.put("/v1/admin/subjects/erin", headers=api.admin,
                             json={"status": "suspended", "attributes": {}})
    assert r.status_code == 200
    r = await api.client.post("/v1/devices", headers=await api.citizen("erin"),
                              json={"name": "p", "keys": jwks_of(new_keys(1))})
    assert r.status_code == 403
    assert r.headers["content-type"].startswith("application/problem+json")


# --- hostile keys -------------------------------------------------------------------------------
def _p256() -> dict[str, str]:
    return dict(PrivateKey.generate(Alg.ES256).public().jwk_members())


def _off_curve() -> dict[str, str]:
    jwk = _p256()
    y = bytearray(unb64u(jwk["y"]))
    y[-1] ^= 1
    jwk["y"] = b64u(bytes(y))
    return jwk


def _with(**members: Any) -> dict[str, Any]:
    jwk: dict[str, Any] = _p256()
    jwk.update(members)
    return {k: v for k, v in jwk.items() if v is not None}


HOSTILE: dict[str, Any] = {
    "ed25519": lambda: PrivateKey.generate(Alg.EDDSA).public().jwk_members(),
    "p384": lambda: _with(crv="P-384"),
    "rsa": lambda: {"kty": "RSA", "n": "AQAB", "e": "AQAB"},
    "off_curve": _off_curve,
    "private_d": lambda: _with(d=b64u(bytes(32))),
    "short_x": lambda: _with(x=b64u(bytes(31))),
    "padded_x": lambda: _with(x=_p256()["x"] + "="),
    "noncanonical_x": lambda: _with(x=_p256()["x"][:-1] + "B"),
    "x_number": lambda: _with(x=12345),
    "missing_y": lambda: _with(y=None),
    "wrong_alg": lambda: _with(alg="ES384"),
    "enc_use": lambda: _with(use="enc"),
    "unknown_member": lambda: _with(extra="1"),
    "not_an_object": lambda: "EC P-256",
    "zero_point": lambda: _with(x=b64u(bytes(32)), y=b64u(bytes(32))),
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
async def test_bad_jwks_are_422_naming_the_entry(api: Api, case: str) -> None:
    good = _p256()
    body = {"name": "p", "keys": [good, HOSTILE[case]()]}
    r = await api.client.post("/v1/devices", headers=await api.citizen("mallory"), json=body)
    assert r.status_code == 422, (case, r.text)
    assert r.headers["content-type"].startswith("application/problem+json")
    assert "keys[1]" in r.json()["detail"] or r.json().get("errors")
    devices = await api.client.get("/v1/devices", headers=await api.citizen("mallory"))
    assert devices.json()["devices"] == []  # nothing was registered


async def test_duplicate_keys_are_refused_in_a_batch_and_across_devices(api: Api) -> None:
    citizen = await api.citizen("frank")
    key = _p256()
    r = await api.client.post("/v1/devices", headers=citizen,
                              json={"name": "p", "keys": [key, _p256(), dict(key)]})
    assert r.status_code == 422 and "keys[2] repeats" in r.json()["detail"]
    first = await api.client.post("/v1/devices", headers=citizen, json={"name": "p",
                                                                        "keys": [key]})
    assert first.status_code == 201
    again = await api.client.post("/v1/devices", headers=await api.citizen("grace"),
                                  json={"name": "p", "keys": [_p256(), key]})
    assert again.status_code == 422 and "keys[1] is already registered" in again.json()["detail"]
    refill = await api.client.post(f"/v1/devices/{first.json()['device_id']}/credentials",
                                   headers=citizen, json={"keys": [key]})
    assert refill.status_code == 422


@pytest.mark.parametrize("body", [
    {"name": "p", "keys": []},
    {"name": "p", "keys": "EC"},
    {"name": 5, "keys": [{}]},
    {"name": "", "keys": [{}]},
    {"name": "x" * 65, "keys": [{}]},
    {"name": "tab\there", "keys": [{}]},
    {"name": "bidi\u202e", "keys": [{}]},
    {"keys": [{}]},
    {"name": "p"},
    {"name": "p", "keys": [{}], "extra": 1},
    [],
    None,
])
async def test_malformed_registration_bodies_are_422(api: Api, body: Any) -> None:
    r = await api.client.post("/v1/devices", headers=await api.citizen("henry"), json=body)
    assert r.status_code == 422, r.text


async def test_invalid_utf8_and_non_json_bodies_are_422(api: Api) -> None:
    headers = {**await api.citizen("ivan"), "content-type": "application/json"}
    for raw in (b'{"name": "\xff\xfe", "keys": []}', b"not json", b'{"name": "p", "keys": [1'):
        r = await api.client.post("/v1/devices", headers=headers, content=raw)
        assert r.status_code == 422, (raw, r.text)


# --- revocation and online verification ---------------------------------------------------------
async def test_offline_codes_verify_online_once_with_pairwise_subject_and_attributes(
    api: Api,
) -> None:
    await api.client.put("/v1/admin/subjects/judy", headers=api.admin,
                         json={"status": "active", "attributes": {"transit_account": "T-9"}})
    keys = new_keys(3)
    body = await register(api, "judy", keys)
    metro = await api.partner(["metro"], ["transit_account"])
    now = int(time.time())
    code = offline_code(body, keys, now)
    r = await api.verify(metro, code, "metro", direction="in", checkpoint="L2-S12-G3")
    answer = r.json()
    assert r.status_code == 200 and answer["valid"], answer
    assert answer["reason"] == "ok" and answer["kind"] == "offline"
    assert answer["attributes"] == {"transit_account": "T-9"}
    handle = (await api.runtime.subjects.get("judy")).handle
    assert answer["subject"] == pairwise_subject(api.runtime.keys.pairwise_secret,
                                                 metro["client_id"], handle)
    # the same pairwise subject as the citizen's personal code gives this partner
    personal = await api.verify(metro, await api.code("judy"), "metro", direction="out")
    assert personal.json()["subject"] == answer["subject"]
    assert parse_rfc3339(answer["code_expires_at"]) == now + 30
    again = await api.verify(metro, code, "metro", direction="in", checkpoint="L2-S13-G1")
    assert again.json()["reason"] == "replayed"
    # another counter is another code
    other = offline_code(body, keys, now, counter=1)
    assert (await api.verify(metro, other, "metro", direction="in")).json()["valid"]


async def test_revoked_device_codes_are_revoked_online_at_once(api: Api) -> None:
    keys = new_keys(2)
    body = await register(api, "kate", keys)
    library = await api.partner(["library"])
    now = int(time.time())
    code = offline_code(body, keys, now)
    assert (await api.verify(library, code, "library")).json()["valid"]
    other = await api.client.delete(f"/v1/devices/{body['device_id']}",
                                    headers=await api.citizen("leo"))
    assert other.status_code == 404  # not the owner: the device does not exist for them
    r = await api.client.delete(f"/v1/devices/{body['device_id']}",
                                headers=await api.citizen("kate"))
    assert r.status_code == 204
    after = await api.verify(library, offline_code(body, keys, now, counter=2), "library")
    assert after.json() == {**after.json(), "valid": False, "reason": "revoked"}
    listed = (await api.client.get("/v1/devices", headers=await api.citizen("kate"))).json()
    assert listed["devices"][0]["status"] == "revoked"
    again = await api.client.delete(f"/v1/devices/{body['device_id']}",
                                    headers=await api.citizen("kate"))
    assert again.status_code == 204  # idempotent
    refill = await api.client.post(f"/v1/devices/{body['device_id']}/credentials",
                                   headers=await api.citizen("kate"),
                                   json={"keys": jwks_of(new_keys(1))})
    assert refill.status_code == 404


async def test_an_operator_revokes_any_device(api: Api) -> None:
    keys = new_keys(1)
    body = await register(api, "mike", keys)
    r = await api.client.delete(f"/v1/devices/{body['device_id']}", headers=api.admin)
    assert r.status_code == 204
    gone = await api.client.delete("/v1/devices/no-such-device", headers=api.admin)
    assert gone.status_code == 404
    bad = await api.client.delete("/v1/devices/bad%20id!", headers=api.admin)
    assert bad.status_code == 422
    claims = koff.parse_code(koff.make_code(keys[0], credential_for(body, keys[0]), iat=1)
                             ).credential.claims
    revoked = api.runtime.devices.revoked
    assert revoked.credential_revoked(claims.nbf, claims.status_index) is True
    assert revoked.credential_revoked(claims.nbf, claims.status_index ^ 1) is False


async def test_a_suspended_citizens_offline_codes_are_revoked_online(api: Api) -> None:
    keys = new_keys(1)
    body = await register(api, "nina", keys)
    library = await api.partner(["library", "hospital"])
    now = int(time.time())
    assert (await api.verify(library, offline_code(body, keys, now), "library")).json()["valid"]
    # medical identity is server-signed only (the scene's policy)
    hospital = await api.verify(library, offline_code(body, keys, now), "hospital")
    assert hospital.json()["reason"] == "scene_not_allowed"
    await api.client.put("/v1/admin/subjects/nina", headers=api.admin,
                         json={"status": "suspended", "attributes": {}})
    r = await api.verify(library, offline_code(body, keys, now, counter=1), "library")
    assert r.json()["reason"] == "revoked"


# --- trust anchor and bundles -----------------------------------------------------------------
async def test_trust_anchor_is_a_public_jwk_set_separate_from_code_keys(api: Api) -> None:
    r = await api.client.get("/v1/trust-anchor")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("application/jwk-set+json")
    ring = KeyRing.from_jwks(r.json())
    assert len(ring) == 1
    codes = {k["kid"] for k in (await api.client.get("/v1/keys")).json()["keys"]}
    assert not codes & {k["kid"] for k in r.json()["keys"]}


async def test_trust_bundle_needs_a_partner_token_and_bad_since_is_422(api: Api) -> None:
    assert (await api.client.get("/v1/trust-bundle")).status_code == 401
    citizen = await api.citizen("olga")
    assert (await api.client.get("/v1/trust-bundle", headers=citizen)).status_code == 401
    gate = await api.partner(["metro"])
    for since in ("-1", "abc", str(2**40), "1.5"):
        r = await api.client.get("/v1/trust-bundle", headers=gate["headers"],
                                 params={"since": since})
        assert r.status_code == 422, since


async def test_bundle_and_delta_carry_revocations_to_a_gate(api: Api) -> None:
    keys = new_keys(3)
    body = await register(api, "paul", keys)
    gate_partner = await api.partner(["metro"])
    anchor = (await api.client.get("/v1/trust-anchor")).json()
    r = await api.client.get("/v1/trust-bundle", headers=gate_partner["headers"])
    assert r.status_code == 200 and r.headers["content-type"] == "application/cose"
    gate = Gate.from_anchor_jwks(anchor)
    bundle = gate.load_bundle(r.content)
    now = int(time.time())
    assert bundle.version == int(r.headers["x-bundle-version"])
    assert bundle.issued_at >= now - 5 and bundle.refresh_after == bundle.issued_at + 900
    assert bundle.expires_at == bundle.issued_at + 86_400
    active = api.runtime.keys.view().keyset.active().kid
    assert [k.kid.hex() for k in bundle.keys if k.state == "active"] == [active]
    # the current slot and 24 hours ahead; in the 90 s after the hour (the default grace:
    # offline lifetime 30 s + 2 x skew 30 s) also the slot that just ended
    current = bundle.issued_at - bundle.issued_at % 3600
    expected = {current + i * 3600 for i in range(25)}
    if bundle.issued_at - current < 90:
        expected.add(current - 3600)
    assert set(gate.trust._lists) == expected
    code = offline_code(body, keys, now)
    assert gate.verify(code, scene="metro", direction="in", now=now).reason == "ok"
    assert gate.verify(code, scene="metro", direction="in", now=now).reason == "replayed"

    assert (await api.client.delete(f"/v1/devices/{body['device_id']}",
                                    headers=await api.citizen("paul"))).status_code == 204
    d = await api.client.get("/v1/trust-bundle", headers=gate_partner["headers"],
                             params={"since": bundle.version})
    assert d.status_code == 200
    delta = bcodec.decode(cose.decode_sign1(d.content).payload)
    assert delta.is_delta and delta.since == bundle.version and delta.version > bundle.version
    assert sum(len(ix) for ix in delta.flips.values()) == 3
    assert len(d.content) < len(r.content)
    gate.load_bundle(d.content)
    fresh = offline_code(body, keys, now, counter=5)
    assert gate.verify(fresh, scene="metro", direction="in", now=now).reason == "revoked"
    # an unknown version gets the full bundle
    full = await api.client.get("/v1/trust-bundle", headers=gate_partner["headers"],
                                params={"since": 999_999})
    assert not bcodec.decode(cose.decode_sign1(full.content).payload).is_delta


async def test_reactivation_forces_a_full_bundle(api: Api) -> None:
    keys = new_keys(1)
    await register(api, "quinn", keys)
    gate_partner = await api.partner(["bus"])
    await api.client.put("/v1/admin/subjects/quinn", headers=api.admin,
                         json={"status": "suspended", "attributes": {}})
    first = await api.client.get("/v1/trust-bundle", headers=gate_partner["headers"])
    version = int(first.headers["x-bundle-version"])
    held = bcodec.decode(cose.decode_sign1(first.content).payload)
    assert sum(1 for lst in held.lists.values() if lst.inflate().data and any(lst.inflate().data))
    await api.client.put("/v1/admin/subjects/quinn", headers=api.admin,
                         json={"status": "active", "attributes": {}})
    after = await api.client.get("/v1/trust-bundle", headers=gate_partner["headers"],
                                 params={"since": version})
    bundle = bcodec.decode(cose.decode_sign1(after.content).payload)
    assert not bundle.is_delta and bundle.version > version
    assert not any(any(lst.inflate().data or b"") for lst in bundle.lists.values())


async def test_a_key_rotation_gives_a_new_bundle_version_with_the_new_key(api: Api) -> None:
    gate_partner = await api.partner(["ferry"])
    first = await api.client.get("/v1/trust-bundle", headers=gate_partner["headers"])
    r = await api.client.post("/v1/admin/keys/rotate", headers=api.admin)
    assert r.status_code == 200, r.text
    second = await api.client.get("/v1/trust-bundle", headers=gate_partner["headers"])
    assert int(second.headers["x-bundle-version"]) > int(first.headers["x-bundle-version"])
    bundle = bcodec.decode(cose.decode_sign1(second.content).payload)
    states = {k.kid.hex(): k.state for k in bundle.keys}
    assert states[api.runtime.keys.view().keyset.active().kid] == "active"
    assert "retired" in states.values()
    # the retired key keeps verifying for the credential window (3 days + skew)
    retired = next(k for k in bundle.keys if k.state == "retired")
    assert retired.exp is not None and retired.exp - time.time() > 3 * 86_400 - 60


async def test_the_trust_anchor_rotates_and_bundles_follow(api: Api) -> None:
    gate_partner = await api.partner(["metro"])
    old_anchor = (await api.client.get("/v1/trust-anchor")).json()
    before = await api.client.get("/v1/trust-bundle", headers=gate_partner["headers"])
    Gate.from_anchor_jwks(old_anchor).load_bundle(before.content)
    r = await api.client.post("/v1/admin/keys/rotate", headers=api.admin,
                              params={"key_set": "anchor"})
    assert r.status_code == 200, r.text
    new_anchor = (await api.client.get("/v1/trust-anchor")).json()
    assert len(new_anchor["keys"]) == 2
    signed = (await api.client.get("/v1/trust-bundle", headers=gate_partner["headers"])).content
    kid = cose.decode_sign1(signed).protected[cose.HDR_KID].hex()
    assert kid == r.json()["active"]  # not the bundle cached a moment ago
    assert kid not in {k["kid"] for k in old_anchor["keys"]}
    Gate.from_anchor_jwks(new_anchor).load_bundle(signed)
    with pytest.raises(Exception, match="not signed by a trust anchor"):
        Gate.from_anchor_jwks(old_anchor).load_bundle(signed)


async def test_bundles_are_cached_per_version_and_advance_with_time(tmp_path: Path) -> None:
    from suishen.app.runtime import build_runtime

    now = [float(int(time.time()))]
    settings = make_settings(tmp_path)
    runtime = await build_runtime(settings, clock=lambda: now[0])
    app = create_app(runtime=runtime)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            api = Api(client, app, settings)
            gate_partner = await api.partner(["metro"])
            anchor = (await client.get("/v1/trust-anchor")).json()
            first = await client.get("/v1/trust-bundle", headers=gate_partner["headers"])
            now[0] += 2
            second = await client.get("/v1/trust-bundle", headers=gate_partner["headers"])
            assert second.content == first.content  # the cached build (ECDSA is randomised)
            now[0] += 60  # a tick: the same state, a newer version with a fresh issued_at
            third = await client.get("/v1/trust-bundle", headers=gate_partner["headers"])
            assert int(third.headers["x-bundle-version"]) > int(first.headers["x-bundle-version"])
            gate = Gate.from_anchor_jwks(anchor)
            gate.load_bundle(first.content)
            held = gate.load_bundle(third.content)
            assert held.issued_at == int(now[0])
            assert held.refresh_after == int(now[0]) + 900
            first_version = int(first.headers["x-bundle-version"])
            now[0] += 2 * 86_400  # past a bundle lifetime: old versions are pruned ...
            gate_partner = await api.partner(["metro"])  # the old token has expired
            await client.get("/v1/trust-bundle", headers=gate_partner["headers"])
            # ... by the background pruner, not by a request (one round, at this clock)
            assert await runtime.db.devices.changes_since(first_version) is not None
            assert await runtime.pruner.run_once(int(now[0])) > 0
            late = await client.get("/v1/trust-bundle", headers=gate_partner["headers"],
                                    params={"since": first_version})
            assert late.status_code == 200
            assert "x-bundle-since" not in late.headers  # the full bundle
            assert await runtime.db.devices.changes_since(first_version) is None


async def test_guessing_the_admin_token_on_device_revocation_is_throttled(api: Api) -> None:
    statuses = []
    for i in range(12):
        r = await api.client.delete("/v1/devices/some-device",
                                    headers={"Authorization": f"Bearer guess-{i}"})
        statuses.append(r.status_code)
    assert statuses[:10] == [401] * 10 and statuses[10:] == [429, 429]


async def test_stale_and_future_offline_codes_online(api: Api) -> None:
    keys = new_keys(2)
    body = await register(api, "ruth", keys)
    library = await api.partner(["library"])
    now = int(time.time())
    slot_start = now - now % SLOT
    future = offline_code(body, keys, min(now + 120, slot_start + 2 * SLOT - 1))
    assert (await api.verify(library, future, "library")).json()["reason"] == "not_yet_valid"
    if now - slot_start >= 61:  # the device clock 61 s behind: older than 30 s + 30 s skew
        stale = offline_code(body, keys, now - 61)
        assert (await api.verify(library, stale, "library")).json()["reason"] == "expired"
    tampered = offline_code(body, keys, now)
    flipped = tampered[:-3] + ("A" if tampered[-3] != "A" else "B") + tampered[-2:]
    assert (await api.verify(library, flipped, "library")).json()["reason"] in (
        "bad_signature", "malformed")


async def test_a_suspension_reaches_gates_as_a_delta(api: Api) -> None:
    keys = new_keys(2)
    body = await register(api, "sara", keys)
    gate_partner = await api.partner(["metro"])
    anchor = (await api.client.get("/v1/trust-anchor")).json()
    gate = Gate.from_anchor_jwks(anchor)
    held = gate.load_bundle(
        (await api.client.get("/v1/trust-bundle", headers=gate_partner["headers"])).content)
    now = int(time.time())
    assert gate.verify(offline_code(body, keys, now), scene="metro", direction="in",
                       now=now).reason == "ok"
    await api.client.put("/v1/admin/subjects/sara", headers=api.admin,
                         json={"status": "suspended", "attributes": {}})
    d = await api.client.get("/v1/trust-bundle", headers=gate_partner["headers"],
                             params={"since": held.version})
    assert d.headers["x-bundle-since"] == str(held.version)
    gate.load_bundle(d.content)
    assert gate.verify(offline_code(body, keys, now, counter=1), scene="metro",
                       direction="out", now=now).reason == "revoked"


async def test_a_citizen_has_at_most_max_devices_active(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, offline_max_devices=2)
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            api = Api(client, app, settings)
            first = await register(api, "tom", new_keys(1))
            await register(api, "tom", new_keys(1))
            citizen = await api.citizen("tom")
            third = await client.post("/v1/devices", headers=citizen,
                                      json={"name": "p", "keys": jwks_of(new_keys(1))})
            assert third.status_code == 422 and "at most 2 active" in third.json()["detail"]
            gone = await client.delete(f"/v1/devices/{first['device_id']}", headers=citizen)
            assert gone.status_code == 204
            await register(api, "tom", new_keys(1))  # a revoked device does not count


async def test_rebuilds_are_coalesced_when_configured(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, trust_bundle_min_rebuild_seconds=60)
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            api = Api(client, app, settings)
            keys = new_keys(1)
            body = await register(api, "uma", keys)
            gate_partner = await api.partner(["metro"])
            first = await client.get("/v1/trust-bundle", headers=gate_partner["headers"])
            version = int(first.headers["x-bundle-version"])
            citizen = await api.citizen("uma")
            assert (await client.delete(f"/v1/devices/{body['device_id']}",
                                        headers=citizen)).status_code == 204
            again = await client.get("/v1/trust-bundle", headers=gate_partner["headers"],
                                     params={"since": version})
            assert again.content == first.content  # served by the newest build
            # online, the revocation holds at once whatever the bundle cache does
            library = await api.partner(["library"])
            code = offline_code(body, keys, int(time.time()))
            assert (await api.verify(library, code, "library")).json()["reason"] == "revoked"
            # a key change always rebuilds
            rotate = await client.post("/v1/admin/keys/rotate", headers=api.admin)
            assert rotate.status_code == 200
            rotated = await client.get("/v1/trust-bundle", headers=gate_partner["headers"],
                                       params={"since": version})
            assert int(rotated.headers["x-bundle-version"]) > version
            delta = bcodec.decode(cose.decode_sign1(rotated.content).payload)
            assert delta.is_delta and sum(len(ix) for ix in delta.flips.values()) == 1


def _batch_body(keys: list[PrivateKey], **extra: Any) -> bytes:
    """A batch as a generous client sends it: every accepted member, indented JSON."""
    import json

    jwks = [{**k.public().jwk_members(), "alg": "ES256", "use": "sig"} for k in keys]
    return json.dumps({"name": "phone", "keys": jwks, **extra}, indent=2).encode()


async def _post_batch(api: Api, sub: str, body: bytes) -> httpx.Response:
    headers = {**await api.citizen(sub), "Content-Type": "application/json"}
    return await api.client.post("/v1/devices", headers=headers, content=body)


async def test_the_largest_default_batch_fits_the_body_limit_and_one_more_is_a_422(
    api: Api,
) -> None:
    """Issue 9 leftovers, item 3: SPEC's 72 hourly credentials for 3 days."""
    assert api.settings.offline_slots == 72
    assert api.settings.max_body_bytes == 16_384
    assert api.settings.device_body_bytes == 72 * 224 + 1024 == 17_152
    keys = new_keys(73)
    at_bound = _batch_body(keys[:72])
    assert len(at_bound) <= 17_152
    r = await _post_batch(api, "c-batch-72", at_bound)
    assert r.status_code == 201, r.text
    assert len(r.json()["credentials"]) == 72
    over = await _post_batch(api, "c-batch-73", _batch_body(keys))
    assert over.status_code == 422
    assert over.headers["content-type"] == "application/problem+json"
    assert "1 to 72 keys" in over.json()["detail"]


async def test_a_longer_window_raises_the_device_routes_limit_only(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, offline_days=7)  # 168 hourly slots
    assert settings.offline_slots == 168
    limit = settings.device_body_bytes
    assert limit == 168 * 224 + 1024 > settings.max_body_bytes
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            api = Api(client, app, settings)
            keys = new_keys(168)
            payload = {"name": "phone", "keys": jwks_of(keys)}
            assert len(httpx.Request("POST", "http://t", json=payload).content) > \
                settings.max_body_bytes
            body = await register(api, "vic", keys)
            assert len(body["credentials"]) == 168
            citizen = await api.citizen("vic")
            refill = await client.post(f"/v1/devices/{body['device_id']}/credentials",
                                       headers=citizen, json={"keys": jwks_of(new_keys(168))})
            assert refill.status_code != 413, refill.text
            padded = {"name": "x" * settings.device_body_bytes, "keys": jwks_of(keys[:1])}
            over = await client.post("/v1/devices", headers=citizen, json=padded)
            assert over.status_code == 413
            listed = await client.get("/v1/devices", headers=citizen)
            assert len(listed.json()["devices"]) == 1  # the refused body wrote nothing
            keys = new_keys(169)
            at_bound = _batch_body(keys[:168])
            assert settings.max_body_bytes < len(at_bound) <= limit
            r = await _post_batch(api, "c-week", at_bound)
            assert r.status_code == 201, r.text
            # the refill route has the same limit: a body above 16 KB reaches the route
            refill_body = _batch_body(new_keys(1), name="p" * 17_000)
            assert settings.max_body_bytes < len(refill_body) <= limit
            refill = await client.post(
                f"/v1/devices/{r.json()['device_id']}/credentials",
                headers={**await api.citizen("c-week"), "Content-Type": "application/json"},
                content=refill_body)
            assert refill.status_code == 422, refill.text  # judged by the route, not a 413
            over = await _post_batch(api, "c-week-2", _batch_body(keys))
            assert over.status_code == 422
            assert "1 to 168 keys" in over.json()["detail"]
            padded = _batch_body(keys[:1], pad="x" * limit)
            big = await _post_batch(api, "c-week-3", padded)
            assert big.status_code == 413
            assert big.headers["content-type"] == "application/problem+json"
            # every other route keeps SUISHEN_MAX_BODY_BYTES
            other = await client.post("/v1/admin/partners", headers=api.admin,
                                      content=b"{" + b" " * settings.max_body_bytes + b"}")
            assert other.status_code == 413
