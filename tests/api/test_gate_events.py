"""Offline gate uploads (``POST /v1/gate-events``, issue 10 item 3) on the embedded
default with a clock the test moves: re-verification, idempotency keyed on what the
signatures cover (a malleated ECDSA signature is the same use), duplicate uses fared
once, pairing in any upload order, history marked offline, hostile batches."""

from __future__ import annotations

from typing import Any

import httpx

from suishen.codecs import cose, sc1
from suishen.keys.algorithms import P256_ORDER, PrivateKey
from tests.api import test_transit
from tests.api.test_devices import new_keys, offline_code, register
from tests.api.test_transit import BUS, METRO, Clocked

capi = test_transit.capi  # the fixture: the embedded default with a clock the test moves

Event = dict[str, Any]


def event(code: str, scene: str, at: int, checkpoint: str | None,
          direction: str | None = None, valid: bool = True) -> Event:
    """A gate's log line, as sdk.gate writes it (with members the service ignores)."""
    out: Event = {"code": code, "scene": scene, "decided_at": at, "valid": valid,
                  "reason": "ok" if valid else "expired", "kind": "offline",
                  "verified_at": "ignored", "trust": "fresh", "degraded": False}
    if checkpoint is not None:
        out["checkpoint"] = checkpoint
    if direction is not None:
        out["direction"] = direction
    return out


def malleate(text: str) -> str:
    """The same offline code with its device signature's ``s`` replaced by ``n - s``:
    a second valid text of one code."""
    sign1 = cose.decode_sign1(sc1.from_text(text))
    r, s = sign1.signature[:32], int.from_bytes(sign1.signature[32:], "big")
    twin = r + (P256_ORDER - s).to_bytes(32, "big")
    return sc1.to_text(cose.encode_sign1(sign1.protected_raw, sign1.unprotected,
                                         sign1.payload, twin))


class Rider:
    """A citizen with an enrolled device that makes offline codes at any time."""

    def __init__(self, body: dict[str, Any], keys: list[PrivateKey]) -> None:
        self.body, self.keys, self.counter = body, keys, 0

    def code(self, at: int) -> str:
        self.counter = (self.counter + 1) % 256
        return offline_code(self.body, self.keys, at, counter=self.counter)

    def forged(self, at: int) -> str:
        """A code of this rider's credential signed by a stranger's device key."""
        sign1 = cose.decode_sign1(sc1.from_text(self.code(at)))
        stranger = new_keys(1)[0].sign(cose.sig_structure(sign1.protected_raw, sign1.payload))
        return sc1.to_text(cose.encode_sign1(sign1.protected_raw, {}, sign1.payload, stranger))


async def rider(capi: Clocked, sub: str) -> Rider:
    keys = new_keys(3)
    return Rider(await register(capi, sub, keys), keys)


async def upload(capi: Clocked, partner: dict[str, Any], events: list[Event]) -> httpx.Response:
    await capi.refresh(partner)
    return await capi.client.post("/v1/gate-events", headers=partner["headers"],
                                  json={"events": events})


async def journeys(capi: Clocked, sub: str) -> list[tuple[Any, ...]]:
    page = (await capi.client.get("/v1/me/journeys?limit=100",
                                  headers=await capi.citizen(sub))).json()
    return sorted((j["status"], j["fare"], j["entry_checkpoint"], j["exit_checkpoint"],
                   j["offline"]) for j in page["items"])


async def history(capi: Clocked, sub: str) -> list[dict[str, Any]]:
    page = (await capi.client.get("/v1/me/verifications?limit=100",
                                  headers=await capi.citizen(sub))).json()
    items: list[dict[str, Any]] = page["items"]
    return items


async def settlement(capi: Clocked, day: str) -> dict[str, Any]:
    r = await capi.client.get(f"/v1/admin/settlement?date={day}", headers=capi.admin)
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


def day_of(at: int) -> str:
    import datetime as dt

    return dt.datetime.fromtimestamp(at, dt.UTC).date().isoformat()


async def test_entries_and_exits_pair_in_any_order_and_a_replayed_batch_changes_nothing(
    capi: Clocked,
) -> None:
    # 01:00 UTC of the next day: the rides (t0 .. t0 + 4300) and their settlement all
    # fall on one day whenever the suite runs (it failed when started after 22:48 UTC).
    capi.tick(86_400 - int(capi.now[0]) % 86_400 + 3_600)
    assert (await capi.fares("metro", METRO)).status_code == 200
    gate_in, gate_out = await capi.partner(["metro"]), await capi.partner(["metro"])
    ann, bob = await rider(capi, "ann"), await rider(capi, "bob")
    t0 = int(capi.now[0])
    rides: dict[str, list[Event]] = {}
    for name, who in (("ann", ann), ("bob", bob)):
        rides[name] = [
            event(who.code(t0), "metro", t0, "L1-S01-G1", "in"),
            event(who.code(t0 + 1200), "metro", t0 + 1200, "L2-S12-G3", "out"),  # 400
            event(who.code(t0 + 4000), "metro", t0 + 4000, "L3-S30-G1", "in"),
            event(who.code(t0 + 4300), "metro", t0 + 4300, "L3-S30-G2", "out"),  # 300
        ]
    capi.tick(6 * 3600)  # the gates come back online hours later
    # ann: the exit gate uploads first, then the entry gate; bob: all in one batch
    a_out = await upload(capi, gate_out, [rides["ann"][1], rides["ann"][3]])
    assert a_out.status_code == 200, a_out.text
    assert a_out.json() == {"accepted": 2, "duplicates": 0, "duplicate_uses": 0,
                            "ignored": 0, "errors": []}
    assert await journeys(capi, "ann") == []  # exits without entry are refused (policy)
    a_in = await upload(capi, gate_in, [rides["ann"][2], rides["ann"][0]])
    assert a_in.json()["accepted"] == 2
    b = await upload(capi, gate_in, list(reversed(rides["bob"])))
    assert b.json()["accepted"] == 4
    expected = [("complete", 300, "L3-S30-G1", "L3-S30-G2", True),
                ("complete", 400, "L1-S01-G1", "L2-S12-G3", True)]
    assert await journeys(capi, "ann") == expected == await journeys(capi, "bob")
    before = await settlement(capi, day_of(t0 + 4300))
    assert before["operators"][0]["fares"] >= 1400 and before["fares"] == sum(
        o["fares"] for o in before["operators"])

    # the same batches again, in another order: nothing changes
    for partner, batch in ((gate_in, rides["ann"][::-1]), (gate_out, rides["ann"][1::2]),
                           (gate_in, rides["bob"])):
        again = (await upload(capi, partner, batch)).json()
        assert again["accepted"] == 0 and again["errors"] == []
    # ann's re-sent batch went through gate_in: her exits are new there, so they are
    # duplicate uses of codes gate_out already uploaded -- recorded, fared once
    assert await journeys(capi, "ann") == expected == await journeys(capi, "bob")
    assert await settlement(capi, day_of(t0 + 4300)) == before

    seen = await history(capi, "ann")
    assert all(item["offline"] for item in seen)
    assert sorted(item["result"] for item in seen) == ["ok"] * 4 + ["replayed"] * 2


async def test_a_malleated_signature_is_the_same_code_a_duplicate(capi: Clocked) -> None:
    assert (await capi.fares("bus", BUS)).status_code == 200
    gate = await capi.partner(["bus"])
    who = await rider(capi, "cai")
    t0 = int(capi.now[0])
    code = who.code(t0)
    twin = malleate(code)
    assert twin != code
    capi.tick(60)
    # both texts verify (the device's ECDSA signature is accepted in either form)
    first = (await upload(capi, gate, [event(code, "bus", t0, "B7-G1")])).json()
    assert first["accepted"] == 1
    second = (await upload(capi, gate, [event(twin, "bus", t0, "B7-G1")])).json()
    assert second == {"accepted": 0, "duplicates": 1, "duplicate_uses": 0, "ignored": 0,
                      "errors": []}
    # at another bus gate the twin is a duplicate use: recorded, not fared again
    other = (await upload(capi, gate, [event(twin, "bus", t0 + 3, "B9-G2")])).json()
    assert other["duplicate_uses"] == 1
    assert await journeys(capi, "cai") == [("single_tap", 200, "B7-G1", None, True)]
    assert [i["result"] for i in await history(capi, "cai")] == ["replayed", "ok"]


async def test_hostile_entries_get_errors_per_entry_and_the_rest_is_taken(
    capi: Clocked,
) -> None:
    assert (await capi.fares("bus", BUS)).status_code == 200
    gate = await capi.partner(["bus"])
    who = await rider(capi, "dee")
    t0 = int(capi.now[0])
    good = event(who.code(t0), "bus", t0, "B1-G1")
    forged = event(who.forged(t0 + 1), "bus", t0 + 1, "B1-G1")
    personal = event(await capi.fresh_code("dee"), "bus", t0, "B1-G1")
    capi.tick(120)
    now = int(capi.now[0])
    batch: list[Any] = [
        good,
        "not an object",
        {**good, "decided_at": "yesterday"},
        {**good, "decided_at": True},
        {**good, "scene": "tram"},
        {**good, "direction": "sideways"},
        {k: v for k, v in good.items() if k != "code"},
        {**good, "code": "SC1:garbage"},
        {**forged, "code": forged["code"][:-6] + "AAAAAA"},
        {**event(who.code(now + 3600), "bus", now + 3600, "B1-G1")},  # the future
        {**good, "scene": "metro"},  # not this partner's scene
        {**good, "valid": False},  # the gate refused it: nothing to store
        {**good, "decided_at": t0 + 100},  # the code was stale by then
        personal,  # personal codes are re-verified too
        forged,  # signed by a key that is not the credential's device key
    ]
    r = await upload(capi, gate, batch)
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["accepted"], body["ignored"]) == (2, 1)
    reasons = {e["index"]: e["reason"] for e in body["errors"]}
    assert reasons == {1: "malformed", 2: "malformed", 3: "malformed", 4: "malformed",
                       5: "malformed", 6: "malformed", 7: "malformed", 8: "malformed",
                       9: "not_yet_valid", 10: "scene_not_allowed", 12: "expired",
                       14: "bad_signature"}, body
    assert all(e["detail"] for e in body["errors"])
    sample = capi.runtime.metrics.registry.get_sample_value
    assert sample("suishen_gate_events_total", {"outcome": "error"}) == 12
    assert sample("suishen_gate_events_total", {"outcome": "accepted"}) == 2
    assert sorted(await journeys(capi, "dee")) == [("single_tap", 200, "B1-G1", None, True)] * 2


async def test_batches_refused_as_a_whole_write_nothing(capi: Clocked) -> None:
    gate = await capi.partner(["bus"])
    who = await rider(capi, "eve")
    t0 = int(capi.now[0])
    good = event(who.code(t0), "bus", t0, "B1-G1")
    capi.tick(60)
    await capi.refresh(gate)
    headers = gate["headers"]
    post = capi.client.post
    assert (await post("/v1/gate-events", json={"events": [good]})).status_code == 401
    too_many = await post("/v1/gate-events", headers=headers, json={"events": [good] * 1001})
    assert too_many.status_code == 413, too_many.text
    assert too_many.headers["content-type"].startswith("application/problem+json")
    huge = b'{"events": ["' + b"x" * (2 * 1024 * 1024) + b'"]}'  # over the path's limit
    r = await post("/v1/gate-events", headers={**headers, "content-type": "application/json"},
                   content=huge)
    assert r.status_code == 413, r.text[:200]
    for bad in ({"events": good}, [good], {"events": [good], "more": 1}, {}):
        r = await post("/v1/gate-events", headers=headers, json=bad)
        assert r.status_code == 422, (bad, r.text)
    dup = b'{"events": [], "events": []}'
    r = await post("/v1/gate-events", headers={**headers, "content-type": "application/json"},
                   content=dup)
    assert r.status_code == 422
    r = await post("/v1/gate-events", headers={**headers, "content-type": "text/plain"},
                   content=b'{"events": []}')
    assert r.status_code == 415
    assert await history(capi, "eve") == []
    ok = (await upload(capi, gate, [good])).json()
    assert ok["accepted"] == 1  # nothing of the refused batches was stored


async def test_a_batch_of_a_thousand_fits_the_body_limit(capi: Clocked) -> None:
    gate = await capi.partner(["bus"])
    who = await rider(capi, "fay")
    t0 = int(capi.now[0])
    code = who.code(t0)
    batch = [event(code, "bus", t0, f"B1-G{i}", valid=False) for i in range(1000)]
    capi.tick(60)
    r = await upload(capi, gate, batch)
    assert r.status_code == 200, r.text[:300]
    assert r.json()["ignored"] == 1000
