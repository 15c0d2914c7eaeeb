"""The console's keys panel: the key list with states and windows; rotate and revoke only
behind a confirmation. (A module of its own: it changes the server's keys.)"""

from __future__ import annotations

import httpx

from tests.browser.test_console import console
from tests.e2e.harness import Server


def keys(server: Server) -> dict[str, str]:
    body = httpx.get(server.url + "/v1/keys").json()
    return {k["kid"]: k["status"] for k in body["keys"]}


def test_rotate_and_revoke_need_a_confirmation(open_tab, server: Server) -> None:
    tab = console(open_tab, server, "console-keys")
    page = tab.page
    page.click('[data-tab="keys"]')
    before = keys(server)
    (active,) = [kid for kid, status in before.items() if status == "active"]
    page.wait_for_selector(f'#keys tr[data-kid="{active}"]')
    assert page.inner_text(f'#keys tr[data-kid="{active}"] td:nth-child(3)') == "active"
    tab.shot("1-keys")

    page.click("#rotate")
    page.wait_for_selector("#confirm[open]")
    tab.shot("2-rotate-confirm")
    page.click("#confirm-cancel")
    assert keys(server) == before  # cancelled: nothing happened

    page.click("#rotate")
    page.click("#confirm-ok")
    page.wait_for_selector("#notice:has-text('Rotated')")
    after = keys(server)
    (new,) = [kid for kid, status in after.items() if status == "active"]
    assert new != active and after[active] == "retired"
    page.wait_for_selector(f'#keys tr[data-kid="{new}"]')

    page.click(f'#keys tr[data-kid="{active}"] button.revoke')
    page.click("#confirm-cancel")
    assert keys(server)[active] == "retired"
    page.click(f'#keys tr[data-kid="{active}"] button.revoke')
    page.click("#confirm-ok")
    page.wait_for_selector(f'#keys tr[data-kid="{active}"] td.revoked')
    assert keys(server)[active] == "revoked"
    tab.shot("3-keys-revoked")
