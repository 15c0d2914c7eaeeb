"""Several real ``suishen serve`` processes sharing PostgreSQL and Redis (the production
backends): single use across processes, and changes made through one process enforced
by the other."""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Iterator

import asyncpg
import httpx
import pytest

from tests.contract.conftest import DATABASE_URL, REDIS_URL, run_in_thread
from tests.e2e.harness import Server

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, Server]]:
    schema = f"suishen_e2e_{secrets.token_hex(4)}"

    async def create() -> None:
        conn = await asyncpg.connect(DATABASE_URL, timeout=5)
        try:
            await conn.execute(f'CREATE SCHEMA "{schema}"')
        finally:
            await conn.close()

    async def drop() -> None:
        conn = await asyncpg.connect(DATABASE_URL, timeout=5)
        try:
            await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        finally:
            await conn.close()

    try:
        run_in_thread(create)
    except (OSError, asyncpg.PostgresError) as exc:
        pytest.fail(f"PostgreSQL is not reachable at {DATABASE_URL}: {exc}", pytrace=False)
    sep = "&" if "?" in DATABASE_URL else "?"
    env = {
        # asyncpg passes unknown DSN parameters to the server as settings.
        "SUISHEN_DATABASE_URL": f"{DATABASE_URL}{sep}search_path={schema}",
        "SUISHEN_REDIS_URL": REDIS_URL,
        "SUISHEN_REDIS_PREFIX": f"e2e-{schema}",
        "SUISHEN_KEY_REFRESH_SECONDS": "60",  # prove the change feed, not the safety net
    }
    base = tmp_path_factory.mktemp("cluster")
    a = Server(base / "a", **env)
    b = Server(base / "b", **env)
    (base / "a").mkdir()
    (base / "b").mkdir()
    try:
        a.start()
        b.start()
        yield a, b
    finally:
        a.stop()
        b.stop()
        run_in_thread(drop)


def _eventually(check: object, timeout: float) -> float:
    start = time.monotonic()
    while True:
        if check():  # type: ignore[operator]
            return time.monotonic() - start
        if time.monotonic() - start > timeout:
            raise AssertionError(f"not within {timeout} s")
        time.sleep(0.02)


def test_partner_registered_on_one_gets_tokens_from_the_other(
    cluster: tuple[Server, Server],
) -> None:
    a, b = cluster
    partner = a.register_partner(["library"])
    headers = b.partner_headers(partner)
    code = httpx.post(b.url + "/v1/codes", headers=b.citizen("c-partner")).json()["code"]
    r = httpx.post(a.url + "/v1/verify", headers=headers, json={"code": code, "scene": "library"})
    assert r.json()["valid"] is True


def test_one_metro_code_200_times_across_two_processes(cluster: tuple[Server, Server]) -> None:
    a, b = cluster
    gate = a.register_partner(["metro"], rate_limit_per_second=100_000)
    headers = a.partner_headers(gate)
    code = httpx.post(a.url + "/v1/codes", headers=a.citizen("c-race")).json()["code"]
    body = {"code": code, "scene": "metro", "direction": "in", "checkpoint": "G"}

    async def storm() -> list[dict[str, object]]:
        limits = httpx.Limits(max_connections=50)
        async with httpx.AsyncClient(limits=limits, timeout=10) as client:
            answers = await asyncio.gather(*(
                client.post((a if i % 2 else b).url + "/v1/verify", headers=headers, json=body)
                for i in range(200)
            ))
        return [r.json() for r in answers]

    results = asyncio.run(storm())
    assert sum(1 for r in results if r["valid"]) == 1
    assert {r["reason"] for r in results if not r["valid"]} == {"replayed"}


def test_suspension_through_one_enforced_by_the_other_within_a_second(
    cluster: tuple[Server, Server],
) -> None:
    a, b = cluster
    library = a.register_partner(["library"])
    headers = b.partner_headers(library)
    code = httpx.post(a.url + "/v1/codes", headers=a.citizen("c-susp")).json()["code"]
    body = {"code": code, "scene": "library"}
    assert httpx.post(b.url + "/v1/verify", headers=headers, json=body).json()["valid"] is True
    r = httpx.put(a.url + "/v1/admin/subjects/c-susp", headers=a.admin,
                  json={"status": "suspended", "attributes": {}})
    assert r.status_code == 200
    took = _eventually(lambda: httpx.post(b.url + "/v1/verify", headers=headers,
                                          json=body).json()["reason"] == "revoked", 1.0)
    assert took < 1.0
    assert httpx.post(b.url + "/v1/codes", headers=b.citizen("c-susp")).status_code == 403


def test_key_rotation_through_one_published_by_the_other(cluster: tuple[Server, Server]) -> None:
    a, b = cluster
    before = {k["kid"] for k in httpx.get(b.url + "/v1/keys").json()["keys"]
              if k["status"] == "active"}
    r = httpx.post(a.url + "/v1/admin/keys/rotate", headers=a.admin)
    assert r.status_code == 200
    new_kid = r.json()["active"]
    assert new_kid not in before

    def published() -> bool:
        keys = httpx.get(b.url + "/v1/keys").json()["keys"]
        return any(k["kid"] == new_kid and k["status"] == "active" for k in keys)

    assert _eventually(published, 3.0) < 3.0
    code = httpx.post(b.url + "/v1/codes", headers=b.citizen("c-rot")).json()
    assert code["kid"] == new_kid


def test_cluster_is_ready_and_observable(cluster: tuple[Server, Server]) -> None:
    for srv in cluster:
        r = httpx.get(srv.url + "/readyz")
        checks = {"database": "ok", "state": "ok", "audit": "ok"}
        assert r.json() == {"status": "ready", "checks": checks}
        assert httpx.get(srv.url + "/metrics").status_code == 404  # not on the public port
        metrics = _eventually_text(srv.metrics_url, 'suishen_db_pool_connections{state="max"}')
        assert 'suishen_db_pool_connections{state="max"} 10.0' in metrics
        assert 'suishen_db_pool_connections{state="size"}' in metrics
        assert "suishen_events_applied_total" in metrics


def _eventually_text(url: str, needle: str, timeout: float = 5.0) -> str:
    """The metrics text once it shows ``needle`` (gauges are refreshed every second)."""
    deadline = time.monotonic() + timeout
    text = ""
    while time.monotonic() < deadline:
        text = httpx.get(url).text
        if needle in text:
            break
        time.sleep(0.2)
    return text


def test_device_revoked_through_one_is_refused_by_the_other_within_a_second(
    cluster: tuple[Server, Server],
) -> None:
    """Issue 9 item 7: a revoked device's offline codes are ``revoked`` in every process
    within a second (the ``device`` event over Redis), and the trust bundle served by the
    other process carries the revocation as a delta (PostgreSQL trust versions)."""
    import base64

    from suishen.codecs import bundle as bcodec
    from suishen.codecs import cose
    from suishen.keys import offline as koff
    from suishen.keys.algorithms import Alg, PrivateKey

    a, b = cluster
    sub = f"cluster-rider-{secrets.token_hex(3)}"
    keys = [PrivateKey.generate(Alg.ES256) for _ in range(2)]
    r = httpx.post(a.url + "/v1/devices", headers=a.citizen(sub),
                   json={"name": "phone", "keys": [k.public().jwk_members() for k in keys]})
    assert r.status_code == 201, r.text
    device = r.json()
    first = device["credentials"][0]["credential"]
    credential = base64.urlsafe_b64decode(first + "=" * (-len(first) % 4))
    now = int(time.time())
    library = a.register_partner(["library"])
    headers = b.partner_headers(library)
    bundle = httpx.get(b.url + "/v1/trust-bundle", headers=headers)
    assert bundle.status_code == 200
    held = bcodec.decode(cose.decode_sign1(bundle.content).payload)

    def verdict(counter: int) -> str:
        code = koff.make_code(keys[0], credential, iat=int(time.time()), counter=counter % 256)
        answer = httpx.post(b.url + "/v1/verify", headers=headers,
                            json={"code": code, "scene": "library"}).json()
        return str(answer["reason"])

    assert verdict(0) == "ok"
    gone = httpx.delete(f"{a.url}/v1/devices/{device['device_id']}", headers=a.citizen(sub))
    assert gone.status_code == 204
    counter = iter(range(1, 10_000))
    took = _eventually(lambda: verdict(next(counter)) == "revoked", timeout=1.0)
    assert took < 1.0
    delta = httpx.get(b.url + "/v1/trust-bundle", headers=headers,
                      params={"since": held.version})
    got = bcodec.decode(cose.decode_sign1(delta.content).payload)
    assert got.is_delta and got.since == held.version
    slot = now - now % 3600
    assert got.flips.get(slot) and len(got.flips) == 2  # both credentials' slots


def test_enterprise_suspended_or_agent_removed_through_one_refused_by_the_other(
    cluster: tuple[Server, Server],
) -> None:
    """Issue 11: an enterprise's codes are ``revoked`` in every process within a second
    of a suspension, and an agent's codes within a second of their removal (the
    ``enterprise`` event over Redis; the verify path reads memory only)."""
    a, b = cluster
    eid = f"acme-{secrets.token_hex(3)}"
    body = {"name": "Acme", "uscc": "91350100M000100Y43", "status": "active",
            "attributes": {"licences": ["L-1"]}, "agents": ["c-agent-1", "c-agent-2"]}
    assert httpx.put(f"{a.url}/v1/admin/enterprises/{eid}", headers=a.admin,
                     json=body).status_code == 200
    window = a.register_partner(["government"], enterprise_attributes=["name", "licences"])
    headers = b.partner_headers(window)

    def code(sub: str) -> str:
        r = httpx.post(b.url + "/v1/codes", headers=b.citizen(sub),
                       json={"kind": "enterprise", "enterprise_id": eid})
        assert r.status_code == 201, r.text
        return str(r.json()["code"])

    def verdict(text: str) -> dict[str, object]:
        r = httpx.post(b.url + "/v1/verify", headers=headers,
                       json={"code": text, "scene": "government"})
        return dict(r.json())

    # b learnt the enterprise from the feed: it issues and verifies its codes
    _eventually(lambda: httpx.post(b.url + "/v1/codes", headers=b.citizen("c-agent-1"), json={
        "kind": "enterprise", "enterprise_id": eid}).status_code == 201, 1.0)
    one, two = code("c-agent-1"), code("c-agent-2")
    first = verdict(one)
    assert first["valid"] is True and first["enterprise"] == {"name": "Acme",
                                                              "licences": ["L-1"]}
    assert httpx.put(f"{a.url}/v1/admin/enterprises/{eid}", headers=a.admin,
                     json={**body, "agents": ["c-agent-2"]}).status_code == 200
    assert _eventually(lambda: verdict(one)["reason"] == "revoked", 1.0) < 1.0
    assert verdict(two)["valid"] is True
    assert httpx.put(f"{a.url}/v1/admin/enterprises/{eid}", headers=a.admin,
                     json={**body, "status": "suspended"}).status_code == 200
    assert _eventually(lambda: verdict(two)["reason"] == "revoked", 1.0) < 1.0


def test_entry_through_one_exit_through_the_other_and_200_concurrent_exits_fare_once(
    cluster: tuple[Server, Server],
) -> None:
    """Issue 10: the journey slot is shared through Redis. The rider enters through one
    process; 200 exits of that one journey, each with its own fresh code (so single use
    does not decide it), race through both: exactly one closes the journey, fared once,
    the others find no entry; settlement shows one more fare."""
    a, b = cluster
    table = {"operator": "metro-co", "zones": {"L1-S01": 1, "L2-S12": 2},
             "fares": {"0": 300, "1": 400}, "max_fare": 900, "exit_without_entry": "refuse"}
    put = httpx.put(a.url + "/v1/admin/fares/metro", headers=a.admin, json=table)
    assert put.status_code == 200, put.text
    gate = a.register_partner(["metro"], rate_limit_per_second=100_000)
    headers = b.partner_headers(gate)
    sub = f"c-journey-{secrets.token_hex(3)}"
    citizen, prober = a.citizen(sub), a.citizen(f"c-probe-{secrets.token_hex(3)}")

    def b_has_the_table() -> bool:  # b's cache follows the `fares` change-feed event
        probe = httpx.post(b.url + "/v1/codes", headers=prober).json()["code"]
        return bool(httpx.post(b.url + "/v1/verify", headers=headers, json={
            "code": probe, "scene": "metro", "direction": "out", "checkpoint": "L2-S12-G1",
        }).json()["reason"] == "no_entry")

    assert _eventually(b_has_the_table, 3.0) < 3.0
    day = time.strftime("%Y-%m-%d", time.gmtime())

    def settled() -> tuple[int, int]:
        body = httpx.get(a.url + "/v1/admin/settlement", headers=a.admin,
                         params={"date": day}).json()
        return body["journeys"], body["fares"]

    before = settled()

    def code() -> str:
        return str(httpx.post(b.url + "/v1/codes", headers=citizen).json()["code"])

    entry = {"code": code(), "scene": "metro", "direction": "in", "checkpoint": "L1-S01-G1"}
    answer = httpx.post(a.url + "/v1/verify", headers=headers, json=entry).json()
    assert answer["valid"] is True and "journey" not in answer, answer
    codes = [code() for _ in range(200)]

    async def storm() -> list[dict[str, object]]:
        limits = httpx.Limits(max_connections=50)
        async with httpx.AsyncClient(limits=limits, timeout=20) as client:
            answers = await asyncio.gather(*(
                client.post((a if i % 2 else b).url + "/v1/verify", headers=headers,
                            json={"code": c, "scene": "metro", "direction": "out",
                                  "checkpoint": "L2-S12-G3"})
                for i, c in enumerate(codes)
            ))
        return [r.json() for r in answers]

    results = asyncio.run(storm())
    closed = [r for r in results if r["valid"]]
    assert len(closed) == 1, [r for r in results if r["valid"]]
    assert closed[0]["journey"]["status"] == "complete"  # type: ignore[index]
    assert closed[0]["journey"]["fare"] == 400  # type: ignore[index]
    assert {r["reason"] for r in results if not r["valid"]} == {"no_entry"}

    def recorded() -> bool:
        return settled() == (before[0] + 1, before[1] + 400)

    assert _eventually(recorded, 5.0) < 5.0  # the journey record is written off the hot path
    mine = httpx.get(a.url + "/v1/me/journeys", headers=citizen).json()["items"]
    assert [(j["status"], j["fare"], j["entry_checkpoint"], j["exit_checkpoint"])
            for j in mine] == [("complete", 400, "L1-S01-G1", "L2-S12-G3")]


def test_offline_taps_uploaded_to_two_processes_pair_into_one_journey(
    cluster: tuple[Server, Server],
) -> None:
    """Issue 10 item 3 on PostgreSQL: the exit gate uploads to one process, the entry
    gate to the other, later; the journey pairs, a re-sent batch changes nothing."""
    import base64

    from suishen.keys import offline as koff
    from suishen.keys.algorithms import Alg, PrivateKey

    a, b = cluster
    table = {"operator": "metro-co", "zones": {"L1-S01": 1, "L2-S12": 2},
             "fares": {"0": 300, "1": 400}, "max_fare": 900, "exit_without_entry": "refuse"}
    assert httpx.put(a.url + "/v1/admin/fares/metro", headers=a.admin,
                     json=table).status_code == 200
    sub = f"c-offline-{secrets.token_hex(3)}"
    citizen = a.citizen(sub)
    key = PrivateKey.generate(Alg.ES256)
    r = httpx.post(a.url + "/v1/devices", headers=citizen,
                   json={"name": "phone", "keys": [key.public().jwk_members()]})
    assert r.status_code == 201, r.text
    text = r.json()["credentials"][0]["credential"]
    credential = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    nbf = koff.parse_code(koff.make_code(key, credential, iat=1)).credential.claims.nbf
    now = int(time.time())
    # close to now: the service's keys were made when the cluster started, and a code is
    # verified as of when the gate decided (a time before the key existed is unknown_key)
    t_in = max(nbf, now - 3)
    t_out = now

    def event(at: int, direction: str, checkpoint: str, counter: int) -> dict[str, object]:
        return {"code": koff.make_code(key, credential, iat=at, counter=counter),
                "scene": "metro", "direction": direction, "checkpoint": checkpoint,
                "decided_at": at, "valid": True}

    entry = event(t_in, "in", "L1-S01-G1", 1)
    exit_ = event(t_out, "out", "L2-S12-G3", 2)
    gate = a.register_partner(["metro"])
    on_a, on_b = a.partner_headers(gate), b.partner_headers(gate)
    first = httpx.post(b.url + "/v1/gate-events", headers=on_b, json={"events": [exit_]})
    assert first.json()["accepted"] == 1, first.text
    second = httpx.post(a.url + "/v1/gate-events", headers=on_a, json={"events": [entry]})
    assert second.json()["accepted"] == 1, second.text
    again = httpx.post(b.url + "/v1/gate-events", headers=on_b,
                       json={"events": [entry, exit_]}).json()
    assert (again["accepted"], again["duplicates"]) == (0, 2), again
    mine = httpx.get(b.url + "/v1/me/journeys", headers=citizen).json()["items"]
    assert [(j["status"], j["fare"], j["offline"]) for j in mine] == [("complete", 400, True)]
    seen = httpx.get(a.url + "/v1/me/verifications", headers=citizen).json()["items"]
    assert sorted((i["direction"], i["offline"]) for i in seen) == [("in", True), ("out", True)]


def test_venue_revoked_through_one_is_refused_by_the_other_within_a_second(
    cluster: tuple[Server, Server],
) -> None:
    """Issue 11 part B: a venue registered and checked into through one process,
    revoked through it, is refused by the other within a second (the ``venue`` event
    over Redis), and the other's trust bundle lists the venue (PostgreSQL)."""
    from suishen.codecs import bundle as bcodec
    from suishen.codecs import cose

    a, b = cluster
    r = httpx.post(a.url + "/v1/admin/venues", headers=a.admin,
                   json={"name": "豫园 Yu Garden", "address": "上海市黄浦区福佑路168号",
                         "kind": "venue", "info": {}})
    assert r.status_code == 201, r.text
    venue = r.json()
    sub = f"cluster-visitor-{secrets.token_hex(3)}"

    def checkin() -> httpx.Response:
        time.sleep(0.5)  # the per-citizen bucket (2 a second) refills
        return httpx.post(b.url + "/v1/checkins", headers=b.citizen(sub),
                          json={"code": venue["code"]})

    assert checkin().status_code == 201
    headers = b.partner_headers(a.register_partner(["venue"]))
    body = {"code": venue["code"], "scene": "venue"}
    assert httpx.post(b.url + "/v1/verify", headers=headers,
                      json=body).json()["reason"] == "scene_not_allowed"
    assert httpx.post(f"{a.url}/v1/admin/venues/{venue['venue_id']}/revoke",
                      headers=a.admin).status_code == 200
    took = _eventually(lambda: httpx.post(b.url + "/v1/verify", headers=headers,
                                          json=body).json()["reason"] == "revoked", 1.0)
    assert took < 1.0
    refused = checkin()
    assert refused.status_code == 422 and refused.json()["reason"] == "revoked"
    bundle = httpx.get(b.url + "/v1/trust-bundle", headers=headers)
    got = bcodec.decode(cose.decode_sign1(bundle.content).payload)
    assert bytes.fromhex(venue["venue_id"]) in got.revoked_venues


def test_both_processes_serve_the_same_trust_bundle_bytes(cluster: tuple[Server, Server]) -> None:
    """Issue 9 leftovers, item 1: with Redis the signed bundle of a version (and a delta
    to it) is built by one process and stored in Redis; both processes answer the same
    bytes (ES256 signatures are randomized: equal bytes mean one signature), and the
    version never goes back from one answer to the next."""
    from suishen.keys.algorithms import Alg, PrivateKey

    a, b = cluster
    gate = a.register_partner(["metro"])
    headers = a.partner_headers(gate)

    async def both(params: dict[str, int] | None = None) -> list[httpx.Response]:
        async with httpx.AsyncClient(timeout=20) as client:
            return list(await asyncio.gather(*(
                client.get(srv.url + "/v1/trust-bundle", headers=headers, params=params)
                for srv in (a, b, b, a)
            )))

    first = asyncio.run(both())
    assert {r.status_code for r in first} == {200}
    versions = {int(r.headers["X-Bundle-Version"]) for r in first}
    newest = max(versions)
    fresh = [r for r in first if int(r.headers["X-Bundle-Version"]) == newest]
    assert len({r.content for r in fresh}) == 1
    # a revocation makes a new version: again one body for it from both processes
    sub = f"shared-bundle-{secrets.token_hex(3)}"
    key = PrivateKey.generate(Alg.ES256)
    r = httpx.post(a.url + "/v1/devices", headers=a.citizen(sub),
                   json={"name": "phone", "keys": [key.public().jwk_members()]})
    assert r.status_code == 201, r.text
    assert httpx.delete(f"{a.url}/v1/devices/{r.json()['device_id']}",
                        headers=a.citizen(sub)).status_code == 204
    _eventually(lambda: all(int(x.headers["X-Bundle-Version"]) > newest
                            for x in asyncio.run(both())), timeout=10.0)
    later = asyncio.run(both())
    top = max(int(x.headers["X-Bundle-Version"]) for x in later)
    assert len({x.content for x in later if int(x.headers["X-Bundle-Version"]) == top}) == 1
    deltas = asyncio.run(both({"since": newest}))
    assert {x.headers.get("X-Bundle-Since") for x in deltas} == {str(newest)}
    same = [x for x in deltas if int(x.headers["X-Bundle-Version"]) == top]
    assert same and len({x.content for x in same}) == 1
