"""The operator console's enterprises and venues sections in a real Chromium (SPEC.md
§6.3, §6.4): an enterprise created, refused with a bad USCC, found again and suspended;
a venue registered, its poster shown and decoded, found by id and revoked behind a
confirmation."""

from __future__ import annotations

import httpx

from tests.browser.conftest import Tab
from tests.browser.helpers import decode_qr
from tests.browser.test_console import console
from tests.e2e.harness import Server

USCC = "91350100M000100Y43"  # GB 32100-2015's worked example


def save(tab: Tab) -> None:
    tab.page.click("#ent-form button[type=submit]")


def test_operator_creates_finds_and_suspends_an_enterprise(open_tab, server: Server) -> None:
    tab = console(open_tab, server, "console-enterprise")
    tab.allowed_statuses.update({404, 422})  # a new id; the bad USCC
    page = tab.page
    assert page.is_visible('[data-tab="enterprises"]')
    page.click('[data-tab="enterprises"]')
    page.fill("#ent-find-id", "acme-sh")
    page.click("#ent-find-form button[type=submit]")
    page.wait_for_selector("#ent-form", state="visible")
    assert "(new)" in page.inner_text("#ent-id")
    page.fill("#ent-name", "上海示例科技有限公司")
    page.fill("#ent-uscc", "91350100M000100Y44")  # wrong check character
    page.fill("#ent-attr-legal_representative", "张三")
    page.fill("#ent-attr-licences", "食品经营许可证\n营业执照")
    page.fill("#ent-agents", "agent-li\nagent-wang")
    save(tab)
    page.wait_for_selector("#notice:not(.ok)", state="visible")
    assert "uscc" in page.inner_text("#notice")
    tab.shot("1-bad-uscc")
    assert httpx.get(server.url + "/v1/admin/enterprises/acme-sh",
                     headers=server.admin).status_code == 404  # nothing written
    page.fill("#ent-uscc", USCC)
    save(tab)
    page.wait_for_selector("#notice.ok")
    stored = httpx.get(server.url + "/v1/admin/enterprises/acme-sh", headers=server.admin).json()
    assert stored["name"] == "上海示例科技有限公司" and stored["uscc"] == USCC
    assert stored["status"] == "active"
    assert stored["attributes"] == {"legal_representative": "张三",
                                    "licences": ["食品经营许可证", "营业执照"]}
    assert stored["agents"] == ["agent-li", "agent-wang"]
    tab.shot("2-enterprise-saved")

    # Found again in a fresh console; suspended there.
    other = console(open_tab, server, "console-enterprise-find")
    other.page.click('[data-tab="enterprises"]')
    other.page.fill("#ent-find-id", "acme-sh")
    other.page.click("#ent-find-form button[type=submit]")
    other.page.wait_for_selector("#ent-form", state="visible")
    assert other.page.input_value("#ent-name") == "上海示例科技有限公司"
    assert other.page.input_value("#ent-attr-licences") == "食品经营许可证\n营业执照"
    assert other.page.input_value("#ent-agents") == "agent-li\nagent-wang"
    other.page.select_option("#ent-status", "suspended")
    save(other)
    other.page.wait_for_selector("#notice.ok")
    assert "suspended" in other.page.inner_text("#notice")
    stored = httpx.get(server.url + "/v1/admin/enterprises/acme-sh", headers=server.admin).json()
    assert stored["status"] == "suspended" and stored["agents"] == ["agent-li", "agent-wang"]
    other.shot("suspended")


def test_operator_registers_a_venue_shows_its_poster_and_revokes_it(
        open_tab, server: Server) -> None:
    tab = console(open_tab, server, "console-venues")
    page = tab.page
    assert page.is_visible('[data-tab="venues"]')
    page.click('[data-tab="venues"]')
    page.fill("#venue-name-in", "静安区图书馆")
    page.fill("#venue-address-in", "上海市静安区新闸路1702号")
    page.select_option("#venue-kind-in", "venue")
    page.fill("#venue-info-in", "opening_hours: 09:00-21:00\nphone: 021-62171234")
    page.click("#venue-form button[type=submit]")
    page.wait_for_selector("#venue", state="visible")
    venue_id = page.inner_text("#venue-id")
    stored = httpx.get(f"{server.url}/v1/admin/venues/{venue_id}", headers=server.admin).json()
    assert stored["name"] == "静安区图书馆" and stored["kind"] == "venue"
    assert stored["info"] == {"opening_hours": "09:00-21:00", "phone": "021-62171234"}
    assert page.inner_text("#venue-status") == "active"
    # The poster on the page is the venue's code: zxing-cpp reads it from a screenshot.
    page.wait_for_function("() => { const i = document.getElementById('venue-poster');"
                           " return i.complete && i.naturalWidth > 0 }")
    assert decode_qr(page.locator("#venue-poster").screenshot()) == stored["code"]
    assert page.get_attribute("#venue-png", "href") == f"/v1/venues/{venue_id}/code?format=png"
    tab.shot("1-venue-registered")
    citizen = server.citizen("browser-visitor")
    r = httpx.post(server.url + "/v1/checkins", headers=citizen, json={"code": stored["code"]})
    assert r.status_code == 201, r.text

    # Revoke: cancel first (nothing happens), then confirm.
    page.click("#venue-revoke")
    page.wait_for_selector("#confirm[open]")
    assert venue_id in page.inner_text("#confirm-text")
    tab.shot("2-revoke-confirm")
    page.click("#confirm-cancel")
    assert httpx.get(f"{server.url}/v1/admin/venues/{venue_id}",
                     headers=server.admin).json()["revoked_at"] is None
    page.click("#venue-revoke")
    page.click("#confirm-ok")
    page.wait_for_selector("#venue-status.revoked")
    assert page.is_hidden("#venue-poster-box") and page.is_hidden("#venue-revoke")
    tab.shot("3-venue-revoked")
    assert httpx.get(f"{server.url}/v1/venues/{venue_id}/code?format=svg").status_code == 404
    r = httpx.post(server.url + "/v1/checkins", headers=citizen, json={"code": stored["code"]})
    assert r.status_code == 422, r.text

    # Found by id in a fresh console: revoked.
    other = console(open_tab, server, "console-venues-find")
    other.page.click('[data-tab="venues"]')
    other.page.fill("#venue-find-id", venue_id)
    other.page.click("#venue-find-form button[type=submit]")
    other.page.wait_for_selector("#venue-status.revoked")
    assert other.page.inner_text("#venue-name") == "静安区图书馆"
