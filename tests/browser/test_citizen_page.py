"""The citizen page ``/app/`` in a real Chromium: sign-in, the code read back from a
screenshot by zxing-cpp and accepted by ``POST /v1/verify``, the automatic refresh, the
languages, the phone layout, who read my code, errors a person understands."""

from __future__ import annotations

import time
from datetime import datetime

import httpx

from tests.browser.conftest import CODE_TTL, PHONE
from tests.browser.helpers import shown_code, sign_in_citizen, verify, wait_for_items
from tests.e2e.harness import Server


def test_citizen_signs_in_and_the_shown_code_verifies(open_tab, server: Server) -> None:
    partner = server.register_partner(["library"], attributes=["reader_id"])
    httpx.put(server.url + "/v1/admin/subjects/browser-alice", headers=server.admin,
              json={"status": "active", "attributes": {"reader_id": "R-42"}}).raise_for_status()
    tab = open_tab("citizen")
    tab.page.goto(server.url + "/app/")
    tab.page.wait_for_selector("#dev-form", state="visible")
    # Chinese by default.
    assert tab.page.evaluate("document.documentElement.lang") == "zh-CN"
    assert tab.page.title() == "随申码"
    tab.shot("1-sign-in")
    sign_in_citizen(tab, server, "browser-alice")
    code = shown_code(tab)
    tab.shot("2-my-code")
    assert code.startswith("SC1:")
    answer = verify(server, partner, code, "library")
    assert answer["valid"] is True, answer
    assert answer["reason"] == "ok"
    assert answer["attributes"] == {"reader_id": "R-42"}
    # The countdown runs, the brightness hint is there.
    left = int(tab.page.inner_text("#countdown"))
    assert 0 < left <= CODE_TTL
    assert "亮度" in tab.page.inner_text("#tab-code")


def test_code_is_large_centred_and_the_page_fits_a_phone(open_tab, server: Server) -> None:
    tab = open_tab("citizen-layout")
    sign_in_citizen(tab, server, "browser-layout")
    shown_code(tab)
    page = tab.page
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    box = page.locator("#qr").bounding_box()
    assert box is not None
    assert box["width"] >= 0.8 * PHONE["width"]  # large
    centre = box["x"] + box["width"] / 2
    assert abs(centre - PHONE["width"] / 2) < 4  # centred
    # On white (the quiet zone is white too): the corner pixel of the image area.
    background = page.evaluate(
        "getComputedStyle(document.getElementById('code-box')).backgroundColor")
    assert background == "rgb(255, 255, 255)"


def test_english_is_selectable_and_remembered(open_tab, server: Server) -> None:
    tab = open_tab("citizen-en")
    sign_in_citizen(tab, server, "browser-english")
    shown_code(tab)
    tab.page.click("#lang")
    assert tab.page.evaluate("document.documentElement.lang") == "en"
    assert tab.page.inner_text('[data-tab="code"]') == "My code"
    assert "brightness" in tab.page.inner_text("#tab-code")
    tab.shot("my-code-english")
    tab.page.reload()
    tab.page.wait_for_selector("#signed-in", state="visible")
    assert tab.page.inner_text('[data-tab="code"]') == "My code"  # kept in localStorage


def test_code_refreshes_by_itself_before_it_expires(open_tab, server: Server) -> None:
    partner = server.register_partner(["library"])
    tab = open_tab("citizen-refresh")
    sign_in_citizen(tab, server, "browser-refresh")
    first = shown_code(tab, serial=1)
    first_expires = tab.page.get_attribute("#qr", "data-expires-at")
    assert first_expires
    # No reload, no click: the page fetches the next code at half life.
    second = shown_code(tab, serial=2, timeout_ms=CODE_TTL * 1000)
    replaced_at = time.time()
    assert replaced_at < datetime.fromisoformat(first_expires).timestamp()
    assert second != first
    assert verify(server, partner, second, "library")["valid"] is True
    tab.shot("refreshed")


def test_who_read_my_code(open_tab, server: Server) -> None:
    partner = server.register_partner(["library"])
    tab = open_tab("citizen-reads")
    sign_in_citizen(tab, server, "browser-reads")
    code = shown_code(tab)
    assert verify(server, partner, code, "library")["valid"] is True
    assert verify(server, partner, code + "A", "library")["valid"] is False  # not theirs
    # Audit records are written off the hot path: wait until the service has stored it.
    wait_for_items(server, tab, "/v1/me/verifications", 1)
    tab.page.click('[data-tab="reads"]')
    item = tab.page.wait_for_selector("#reads li", timeout=10_000)
    text = item.inner_text()
    assert "e2e library" in text and "图书馆" in text and "browser-test" in text
    assert tab.page.locator("#reads li").count() == 1
    tab.shot("who-read-my-code")


def test_signed_out_when_the_token_is_refused(open_tab, server: Server) -> None:
    tab = open_tab("citizen-signed-out")
    tab.allowed_statuses.add(401)
    tab.page.goto(server.url + "/app/")
    tab.page.wait_for_selector("#dev-form", state="visible")
    tab.page.evaluate("sessionStorage.setItem('suishen.citizen.token', 'not-a-token')")
    tab.page.reload()
    tab.page.wait_for_selector("#dev-form", state="visible")
    notice = tab.page.locator("#notice")
    assert notice.get_attribute("data-key") == "err.signed_out"
    assert "重新登录" in notice.inner_text()
    assert tab.page.evaluate("sessionStorage.getItem('suishen.citizen.token')") is None
    tab.shot("signed-out")


def test_a_clock_that_is_obviously_wrong_is_named(open_tab, server: Server) -> None:
    tab = open_tab("citizen-clock")
    # The device believes it is a day behind.
    tab.page.clock.set_system_time(datetime.fromtimestamp(time.time() - 86_400))
    sign_in_citizen(tab, server, "browser-clock")
    shown_code(tab)  # the code still shows and counts down on the monotonic clock
    notice = tab.page.locator("#notice")
    notice.wait_for(state="visible")
    assert notice.get_attribute("data-key") == "err.clock"
    tab.shot("clock-wrong")
