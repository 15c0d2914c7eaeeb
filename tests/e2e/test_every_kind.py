"""Issue 11's "done when", end to end against a real ``suishen serve`` (SPEC.md §6.3):
an operator registers an enterprise with two agents and a shop; an agent shows the
enterprise code at a government window, which sees the enterprise; a citizen scans the
shop's printed poster (read back from its PNG by zxing-cpp) and finds the check-in in
their history; ``POST /v1/resolve`` names every kind; revoking the shop and suspending
the enterprise stop their codes within a second."""

from __future__ import annotations

import io
import secrets
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import zxingcpp
from PIL import Image

from tests.e2e.harness import Server

pytestmark = pytest.mark.e2e

USCC = "91350100M000100Y43"  # GB 32100-2015's worked example, check character corrected


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = Server(Path(tmp_path_factory.mktemp("every-kind"))).start()
    try:
        yield srv
    finally:
        srv.stop()


def within(seconds: float, check: Callable[[], bool]) -> float:
    """How long ``check`` took to come true (fails after ``seconds``)."""
    started = time.monotonic()
    while not check():
        assert time.monotonic() - started < seconds, "not within the time allowed"
        time.sleep(0.05)
    return time.monotonic() - started


def test_enterprise_shop_checkin_resolve_and_revocation(server: Server) -> None:
    s = server
    eid = f"acme-{secrets.token_hex(3)}"
    agents = [f"agent-{secrets.token_hex(3)}", f"agent-{secrets.token_hex(3)}"]
    enterprise = {"name": "Acme Trading", "uscc": USCC, "status": "active",
                  "attributes": {"legal_representative": "Li Wei", "licences": ["L-7"]},
                  "agents": agents}
    put = httpx.put(f"{s.url}/v1/admin/enterprises/{eid}", headers=s.admin, json=enterprise)
    assert put.status_code == 200, put.text
    shop = httpx.post(f"{s.url}/v1/admin/venues", headers=s.admin, json={
        "name": "老王面馆", "address": "上海市黄浦区南京东路100号", "kind": "shop",
        "enterprise_id": eid, "info": {"opening_hours": "10:00-22:00"}})
    assert shop.status_code == 201, shop.text
    venue = shop.json()
    window = s.register_partner(["government"], enterprise_attributes=["name", "licences"])
    window_headers = s.partner_headers(window)

    # An agent shows the enterprise code at the government window.
    issued = httpx.post(f"{s.url}/v1/codes", headers=s.citizen(agents[0]),
                        json={"kind": "enterprise", "enterprise_id": eid})
    assert issued.status_code == 201, issued.text
    enterprise_code = issued.json()["code"]
    seen = httpx.post(f"{s.url}/v1/verify", headers=window_headers,
                      json={"code": enterprise_code, "scene": "government"}).json()
    assert seen["valid"] is True and seen["kind"] == "enterprise"
    assert seen["enterprise"] == {"name": "Acme Trading", "licences": ["L-7"]}
    assert "legal_representative" not in seen["enterprise"] and seen["subject"]
    stranger = httpx.post(f"{s.url}/v1/codes", headers=s.citizen("not-an-agent"),
                          json={"kind": "enterprise", "enterprise_id": eid})
    assert stranger.status_code == 403

    # A citizen scans the printed poster: the code read back from the PNG checks in.
    poster = httpx.get(f"{s.url}/v1/venues/{venue['venue_id']}/code", params={"format": "png"})
    assert poster.status_code == 200 and poster.headers["content-type"] == "image/png"
    [read] = zxingcpp.read_barcodes(Image.open(io.BytesIO(poster.content)),
                                    formats=zxingcpp.BarcodeFormat.QRCode)
    assert read.text == venue["code"]
    citizen = s.citizen(f"visitor-{secrets.token_hex(3)}")
    checked = httpx.post(f"{s.url}/v1/checkins", headers=citizen, json={"code": read.text})
    assert checked.status_code == 201, checked.text
    assert checked.json()["venue"]["name"] == "老王面馆"

    def in_history() -> bool:  # check-ins are stored off the hot path (a queued writer)
        mine = httpx.get(f"{s.url}/v1/me/checkins", headers=citizen).json()["items"]
        return [c["venue"]["venue_id"] for c in mine] == [venue["venue_id"]]

    within(5.0, in_history)

    # Unified recognition names every kind.
    personal = httpx.post(f"{s.url}/v1/codes", headers=citizen).json()["code"]

    def resolve(code: str) -> dict[str, Any]:
        r = httpx.post(f"{s.url}/v1/resolve", headers=window_headers, json={"code": code})
        assert r.status_code == 200, r.text
        return dict(r.json())

    kinds = {name: resolve(code) for name, code in (
        ("personal", personal), ("enterprise", enterprise_code), ("venue", venue["code"]))}
    for name, answer in kinds.items():
        assert answer["kind"] == name and answer["valid"] is True and answer["issuer"], answer
    assert "subject" not in kinds["personal"] and "attributes" not in kinds["personal"]
    assert kinds["enterprise"]["enterprise"]["name"] == "Acme Trading"
    assert kinds["venue"]["venue"]["venue_id"] == venue["venue_id"]
    other = resolve("HC1:" + "A" * 40)
    assert other["reason"] == "unsupported_version" and other["kind"] is None

    # Revoking the shop and suspending the enterprise stop their codes within a second.
    revoke = httpx.post(f"{s.url}/v1/admin/venues/{venue['venue_id']}/revoke", headers=s.admin)
    assert revoke.status_code == 200, revoke.text
    assert within(1.0, lambda: resolve(venue["code"])["reason"] == "revoked") < 1.0
    refused = httpx.post(f"{s.url}/v1/checkins", headers=citizen, json={"code": venue["code"]})
    assert refused.status_code in (403, 409, 422) and "revoked" in refused.text
    suspended = httpx.put(f"{s.url}/v1/admin/enterprises/{eid}", headers=s.admin,
                          json={**enterprise, "status": "suspended"})
    assert suspended.status_code == 200

    def enterprise_refused() -> bool:
        return bool(httpx.post(f"{s.url}/v1/verify", headers=window_headers, json={
            "code": enterprise_code, "scene": "government"}).json()["reason"] == "revoked")

    assert within(1.0, enterprise_refused) < 1.0
