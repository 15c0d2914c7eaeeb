"""The citizen page's history sections in a real Chromium (SPEC.md §6.4, issue 12):
*my journeys* (a journey ridden through the API, shown with its fare in yuan; the
*more* button pages on), *my devices* (removing one behind a confirmation; this
browser's own offline keys go with it)."""

from __future__ import annotations

from typing import Any

import httpx

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
