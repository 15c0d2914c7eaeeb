"""The operator console ``/console/`` in a real Chromium: sign-in with the admin token,
registering a partner (the secret shown once, with a copy button), suspending and
reactivating a citizen (whose page then shows it), and the live panel."""

from __future__ import annotations

import httpx

from tests.browser.conftest import CODE_TTL, DESKTOP, Tab
from tests.browser.helpers import shown_code, sign_in_citizen, verify
from tests.e2e.harness import ADMIN_TOKEN, Server


def console(open_tab, server: Server, name: str, **context) -> Tab:
    tab = open_tab(name, viewport=DESKTOP, **context)
    tab.page.goto(server.url + "/console/")
    tab.page.wait_for_selector("#signin-form", state="visible")
    tab.page.fill("#admin-token", ADMIN_TOKEN)
    tab.page.click("#signin-form button[type=submit]")
    tab.page.wait_for_selector("#console", state="visible")
    # The token is in this tab's session storage, nowhere else.
    assert tab.page.evaluate("sessionStorage.getItem('suishen.admin.token')") == ADMIN_TOKEN
    assert tab.page.evaluate("localStorage.length") == 0
    return tab


def test_a_wrong_admin_token_is_refused(open_tab, server: Server) -> None:
    tab = open_tab("console-refused", viewport=DESKTOP)
    tab.allowed_statuses.add(401)
    tab.page.goto(server.url + "/console/")
    tab.page.fill("#admin-token", "not-the-token")
    tab.page.click("#signin-form button[type=submit]")
    tab.page.wait_for_selector("#notice", state="visible")
    assert "refused" in tab.page.inner_text("#notice")
    assert tab.page.is_hidden("#console")
    assert tab.page.evaluate("sessionStorage.getItem('suishen.admin.token')") is None
    tab.shot("sign-in-refused")


def test_operator_registers_a_partner_and_the_secret_is_shown_once(
        open_tab, server: Server) -> None:
    tab = console(open_tab, server, "console-partner",
                  permissions=["clipboard-read", "clipboard-write"])
    page = tab.page
    tab.shot("1-citizens")
    page.click('[data-tab="partners"]')
    page.fill("#partner-name", "Metro line 2")
    page.check("#scene-metro")
    page.check("#scene-bus")
    page.check("#attribute-transit_account")
    tab.shot("2-partner-form")
    page.click("#partner-form button[type=submit]")
    page.wait_for_selector("#secret-box", state="visible")
    client_id = page.inner_text("#client-id")
    secret = page.inner_text("#client-secret")
    tab.shot("3-partner-secret")
    # The secret works: a partner token for the scenes chosen in the form.
    r = httpx.post(server.url + "/v1/oauth/token", data={
        "grant_type": "client_credentials", "client_id": client_id, "client_secret": secret})
    assert r.status_code == 200, r.text
    assert set(r.json()["scope"].split()) == {"verify:metro", "verify:bus"}
    page.click("#copy-secret")
    page.wait_for_selector("#copied", state="visible")
    assert page.evaluate("navigator.clipboard.readText()") == secret
    # Dismissed, it is gone from the page for good.
    page.click("#secret-done")
    assert page.is_hidden("#secret-box")
    assert secret not in page.content()


def test_operator_suspends_a_citizen_and_the_citizen_sees_it(open_tab, server: Server) -> None:
    partner = server.register_partner(["library"], attributes=["reader_id"])
    citizen = open_tab("citizen-suspension")
    citizen.allowed_statuses.add(403)  # the suspended citizen's POST /v1/codes
    sign_in_citizen(citizen, server, "browser-bob")
    code = shown_code(citizen)

    tab = console(open_tab, server, "console-citizen")
    page = tab.page
    page.fill("#find-sub", "browser-bob")
    page.click("#find-form button[type=submit]")
    page.wait_for_selector("#subject", state="visible")
    assert page.inner_text("#subject-status") == "active"
    page.fill("#attr-reader_id", "R-7")
    page.click("#attrs-form button[type=submit]")
    page.wait_for_selector("#notice:has-text('Saved')")
    page.click("#suspend")
    page.wait_for_selector("#subject-status:text-is('suspended')")
    tab.shot("citizen-suspended")
    stored = httpx.get(server.url + "/v1/admin/subjects/browser-bob", headers=server.admin).json()
    assert stored["status"] == "suspended"
    assert stored["attributes"] == {"reader_id": "R-7"}
    assert verify(server, partner, code, "library")["reason"] == "revoked"

    # The citizen's page shows the suspension at its next refresh, without a reload.
    citizen.page.wait_for_selector("#suspended", state="visible", timeout=CODE_TTL * 1000)
    assert "暂停" in citizen.page.inner_text("#suspended")
    assert citizen.page.get_attribute("#qr", "src") is None  # no code to show
    citizen.shot("suspended")

    page.click("#reactivate")
    page.wait_for_selector("#subject-status:text-is('active')")
    citizen.page.wait_for_selector("#suspended", state="hidden", timeout=15_000)
    again = shown_code(citizen, serial=2)
    answer = verify(server, partner, again, "library")
    assert answer["valid"] is True
    assert answer["attributes"] == {"reader_id": "R-7"}

    # Neither the admin token nor the citizen's token is in the server's log (which,
    # with the access log on, names every request the pages made).
    citizen_token = citizen.page.evaluate("sessionStorage.getItem('suishen.citizen.token')")
    log = server.log_path.read_text()
    assert '"path": "/v1/admin/subjects/{sub}"' in log
    assert ADMIN_TOKEN not in log
    assert citizen_token and citizen_token not in log


def test_live_panel_shows_verifications_per_second(open_tab, server: Server) -> None:
    partner = server.register_partner(["library"])
    headers = server.partner_headers(partner)
    code = httpx.post(server.url + "/v1/codes", headers=server.citizen("browser-live")).json()
    tab = console(open_tab, server, "console-live")
    page = tab.page
    page.click('[data-tab="live"]')
    page.wait_for_timeout(2500)  # a first reading
    stats = httpx.get(server.url + "/v1/admin/stats", headers=server.admin).json()
    before = sum(v["count"] for v in stats["verifications"]
                 if (v["scene"], v["reason"]) == ("library", "ok"))
    for _ in range(30):
        httpx.post(server.url + "/v1/verify", headers=headers,
                   json={"code": code["code"], "scene": "library"}).raise_for_status()
        httpx.post(server.url + "/v1/verify", headers=headers,
                   json={"code": "SC1:XYZ", "scene": "library"}).raise_for_status()
    row = '#rates tr[data-series="library / ok"]'
    # A rate above zero, and (a reading later) the total with all 30.
    page.wait_for_function(
        f"() => {{ const r = document.querySelector('{row}');"
        " return r && Number(r.children[2].textContent) > 0 }", timeout=10_000)
    page.wait_for_function(
        f"() => {{ const r = document.querySelector('{row}');"
        f" return r && Number(r.children[3].textContent) === {before + 30} }}", timeout=10_000)
    assert page.locator('#rates tr[data-series="library / malformed"]').count() == 1
    # The chart has been drawn: the first series' colour is on the canvas.
    drawn = page.evaluate("""() => {
        const c = document.getElementById('chart');
        const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
        let n = 0;
        for (let i = 0; i < d.length; i += 4) if (d[i] === 0x23 && d[i+1] === 0x4e) n++;
        return n; }""")
    assert drawn > 20
    tab.shot("live")
