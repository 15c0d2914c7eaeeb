"""The citizen page's history sections in a real Chromium (SPEC.md §6.4, issue 12):
*my journeys* (a journey ridden through the API, shown with its fare in yuan; the
*more* button pages on), *my check-ins* (a venue checked in at through the API), *my
devices* (removing one behind a confirmation; this browser's own offline keys go with
it)."""

from __future__ import annotations

from typing import Any

import httpx

from suishen.keys.algorithms import Alg, PrivateKey
from tests.browser.conftest import Tab
from tests.browser.helpers import (
    next_code,
    shown_code,
    sign_in_citizen,
    verify,
    wait_for_items,
)
from tests.e2e.harness import Server

METRO = {"operator": "metro-co", "zones": {"L1-S01": 1, "L1-S02": 1, "L3-S30": 3},
         "fares": {"0": 300, "1": 400, "2": 500}, "max_fare": 900,
         "exit_without_entry": "refuse"}
BUS = {"operator": "busferry-co", "flat_fare": 200, "max_fare": 200}


def put_fares(server: Server, network: str, table: dict[str, Any]) -> None:
    r = httpx.put(f"{server.url}/v1/admin/fares/{network}", headers=server.admin, json=table)
    assert r.status_code == 200, r.text


def api_code(server: Server, headers: dict[str, str]) -> str:
    """A fresh personal code through the API (not the page)."""
    r = httpx.post(server.url + "/v1/codes", headers=headers)
    assert r.status_code == 201, r.text
    code: str = r.json()["code"]
    return code


def test_my_journeys_show_the_ride_with_its_fare_and_page_on(open_tab, server: Server) -> None:
    put_fares(server, "metro", METRO)
    put_fares(server, "bus", BUS)
    metro = server.register_partner(["metro"])
    bus = server.register_partner(["bus"])
    sub = "browser-rider"
    # 20 bus rides first (through the API), so the page's first page of 20 is full.
    citizen = server.citizen(sub)
    bus_headers = server.partner_headers(bus)
    for _ in range(20):
        r = httpx.post(server.url + "/v1/verify", headers=bus_headers,
                       json={"code": api_code(server, citizen), "scene": "bus",
                             "checkpoint": "B42-V7"})
        assert r.json()["journey"]["fare"] == 200, r.text
    # Then a metro journey with the codes the page shows: in at L1-S01, out at L3-S30
    # (two zones crossed: 500 fen).
    tab = open_tab("citizen-journeys")
    sign_in_citizen(tab, server, sub)
    entry = verify(server, metro, shown_code(tab, serial=1), "metro",
                   checkpoint="L1-S01-G3", direction="in")
    assert entry["valid"] is True, entry
    exit_ = verify(server, metro, next_code(tab), "metro",
                   checkpoint="L3-S30-G1", direction="out")
    assert exit_["journey"]["fare"] == 500, exit_
    stored = wait_for_items(server, tab, "/v1/me/journeys?limit=21", 21)
    assert stored[0]["network"] == "metro"

    page = tab.page
    assert page.is_visible('[data-tab="journeys"]')
    page.click('[data-tab="journeys"]')
    page.wait_for_selector("#journeys li")
    rows = page.locator("#journeys li")
    assert rows.count() == 20  # one page
    top = rows.first
    assert top.get_attribute("data-fare") == "500"
    assert top.get_attribute("data-status") == "complete"
    text = top.inner_text()
    assert "地铁" in text and "已完成" in text and "票价 5.00 元" in text
    assert "L1-S01" in text and "L3-S30" in text and "→" in text
    assert "在线" in text
    assert "公交" in rows.nth(1).inner_text() and "2.00 元" in rows.nth(1).inner_text()
    tab.shot("my-journeys")
    # More: the 21st journey, the oldest bus ride; then no more.
    assert page.is_visible("#journeys-more")
    page.click("#journeys-more")
    page.wait_for_function("() => document.querySelectorAll('#journeys li').length === 21")
    page.wait_for_selector("#journeys-more", state="hidden")
    assert rows.nth(20).get_attribute("data-status") == "single_tap"
    # English.
    page.click("#lang")
    assert "fare 5.00 yuan" in rows.first.inner_text()
    assert "complete" in rows.first.inner_text()
    tab.shot("my-journeys-english")


def test_my_journeys_empty(open_tab, server: Server) -> None:
    tab = open_tab("citizen-journeys-empty")
    sign_in_citizen(tab, server, "browser-no-rides")
    tab.page.click('[data-tab="journeys"]')
    tab.page.wait_for_selector("#journeys-empty", state="visible")
    assert tab.page.locator("#journeys li").count() == 0
    assert tab.page.is_hidden("#journeys-more")
    tab.shot("no-journeys")


def stored_offline(tab: Tab) -> dict[str, Any]:
    """What this browser's IndexedDB holds for offline codes."""
    found: dict[str, Any] = tab.page.evaluate("""async () => {
        const db = await new Promise((ok, err) => {
            const r = indexedDB.open('suishen-offline'); r.onsuccess = () => ok(r.result);
            r.onerror = () => err(r.error); });
        const get = (store, fn) => new Promise((ok) => {
            const q = fn(db.transaction(store).objectStore(store));
            q.onsuccess = () => ok(q.result); });
        const out = {credentials: await get('credentials', (s) => s.count()),
                     meta: (await get('meta', (s) => s.get('meta'))) || {}};
        db.close(); return out; }""")
    return found


def test_removing_devices_behind_a_confirmation(open_tab, server: Server) -> None:
    sub = "browser-devices"
    tab = open_tab("citizen-devices")
    sign_in_citizen(tab, server, sub)
    page = tab.page
    page.wait_for_selector('body[data-offline="ready"]', timeout=20_000)
    mine = stored_offline(tab)
    assert mine["credentials"] >= 1 and mine["meta"]["device_id"]
    # A second device of the same citizen: an old phone (registered through the API).
    r = httpx.post(server.url + "/v1/devices", headers=server.citizen(sub),
                   json={"name": "old phone",
                         "keys": [PrivateKey.generate(Alg.ES256).public().jwk_members()]})
    assert r.status_code == 201, r.text
    phone = r.json()["device_id"]

    page.click('[data-tab="devices"]')
    page.wait_for_function("() => document.querySelectorAll('#devices li').length === 2")
    this_row = page.locator(f'#devices li[data-device-id="{mine["meta"]["device_id"]}"]')
    phone_row = page.locator(f'#devices li[data-device-id="{phone}"]')
    assert "本机" in this_row.inner_text() and "本机" not in phone_row.inner_text()
    tab.shot("1-my-devices")

    # Cancel: nothing happens.
    phone_row.locator("button.remove").click()
    page.wait_for_selector("#confirm[open]")
    assert "old phone" in page.inner_text("#confirm-text")
    tab.shot("2-remove-confirm")
    page.click("#confirm-cancel")
    page.wait_for_selector("#confirm", state="hidden")
    listed = httpx.get(server.url + "/v1/devices", headers=server.citizen(sub)).json()["devices"]
    assert {d["device_id"]: d["status"] for d in listed}[phone] == "active"

    # Confirm: the old phone is revoked; this browser keeps its keys.
    phone_row.locator("button.remove").click()
    page.click("#confirm-ok")
    page.wait_for_selector(f'#devices li[data-device-id="{phone}"][data-status="revoked"]')
    assert phone_row.locator("button.remove").count() == 0
    assert page.get_attribute("#notice", "data-key") == "devices.removed"
    assert stored_offline(tab)["credentials"] == mine["credentials"]

    # This browser itself: revoked at the service, and its offline keys leave IndexedDB.
    this_row.locator("button.remove").click()
    assert "本浏览器" in page.inner_text("#confirm-text")
    page.click("#confirm-ok")
    page.wait_for_selector(f'#devices li[data-device-id="{mine["meta"]["device_id"]}"]'
                           '[data-status="revoked"]')
    listed = httpx.get(server.url + "/v1/devices", headers=server.citizen(sub)).json()["devices"]
    assert all(d["status"] == "revoked" for d in listed)
    assert stored_offline(tab) == {"credentials": 0, "meta": {}}
    assert page.get_attribute("body", "data-offline") == "none"
    tab.shot("3-devices-removed")


def test_my_check_ins(open_tab, server: Server) -> None:
    venue = httpx.post(server.url + "/v1/admin/venues", headers=server.admin,
                       json={"name": "徐汇书店", "address": "上海市徐汇区漕溪北路1号",
                             "kind": "shop"})
    assert venue.status_code == 201, venue.text
    tab = open_tab("citizen-checkins")
    sign_in_citizen(tab, server, "browser-visitor-2")
    token = tab.page.evaluate("sessionStorage.getItem('suishen.citizen.token')")
    r = httpx.post(server.url + "/v1/checkins", headers={"Authorization": f"Bearer {token}"},
                   json={"code": venue.json()["code"]})
    assert r.status_code == 201, r.text
    wait_for_items(server, tab, "/v1/me/checkins", 1)
    page = tab.page
    assert page.is_visible('[data-tab="checkins"]')
    page.click('[data-tab="checkins"]')
    row = page.wait_for_selector("#checkins li")
    text = row.inner_text()
    assert "徐汇书店" in text and "商户" in text and "漕溪北路" in text
    assert row.get_attribute("data-venue-id") == venue.json()["venue_id"]
    assert page.is_hidden("#checkins-more")
    tab.shot("my-check-ins")
