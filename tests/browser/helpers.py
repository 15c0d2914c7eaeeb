"""Steps shared by the browser tests."""

from __future__ import annotations

import io
import time
from typing import Any

import httpx
import zxingcpp
from PIL import Image

from tests.browser.conftest import Tab
from tests.e2e.harness import Server


def decode_qr(png: bytes) -> str:
    """The text of the one QR code in a screenshot, read by zxing-cpp (QR only, as gate
    scanners do)."""
    found = zxingcpp.read_barcodes(Image.open(io.BytesIO(png)),
                                   formats=zxingcpp.BarcodeFormat.QRCode)
    assert len(found) == 1, f"{len(found)} QR codes in the screenshot"
    text: str = found[0].text
    return text


def shown_code(tab: Tab, serial: int = 1, timeout_ms: float = 15_000) -> str:
    """Wait until the page shows its ``serial``-th code, and read it from a screenshot."""
    tab.page.wait_for_selector(f'#qr[data-serial="{serial}"]', timeout=timeout_ms)
    tab.page.wait_for_function(
        "() => { const i = document.getElementById('qr');"
        " return i.complete && i.naturalWidth > 0 }")
    return decode_qr(tab.page.locator("#code-box").screenshot())


def next_code(tab: Tab) -> str:
    """Click *refresh now* and read the code that replaces the one shown (whichever
    comes first: the click's or the page's own refresh)."""
    serial = int(tab.page.get_attribute("#qr", "data-serial") or "0")
    tab.page.click("#refresh")
    tab.page.wait_for_function(
        f"() => {{ const i = document.getElementById('qr');"
        f" return Number(i.dataset.serial) > {serial} && i.complete && i.naturalWidth > 0 }}")
    return decode_qr(tab.page.locator("#code-box").screenshot())


def sign_in_citizen(tab: Tab, server: Server, sub: str) -> None:
    """Open the citizen page and sign in with the development identity provider."""
    tab.page.goto(server.url + "/app/")
    tab.page.wait_for_selector("#dev-form", state="visible")
    tab.page.fill("#dev-sub", sub)
    tab.page.click("#dev-submit")
    tab.page.wait_for_selector("#signed-in", state="visible")


def verify(server: Server, partner: dict[str, Any], code: str, scene: str,
           **extra: str) -> dict[str, Any]:
    """``POST /v1/verify`` as ``partner`` (``extra``: ``checkpoint``, ``direction``)."""
    r = httpx.post(server.url + "/v1/verify", headers=server.partner_headers(partner),
                   json={"code": code, "scene": scene, "checkpoint": "browser-test", **extra})
    assert r.status_code == 200, r.text
    answer: dict[str, Any] = r.json()
    return answer


def wait_for_items(server: Server, tab: Tab, path: str, count: int,
                   timeout_s: float = 20) -> list[dict[str, Any]]:
    """Poll ``GET path`` with the tab's citizen token until it has ``count`` items:
    history records (audit, journeys, check-ins) are written off the hot path, and the
    page shows what the service has when its tab opens."""
    token = tab.page.evaluate("sessionStorage.getItem('suishen.citizen.token')")
    deadline = time.monotonic() + timeout_s
    while True:
        items: list[dict[str, Any]] = httpx.get(
            server.url + path, headers={"Authorization": f"Bearer {token}"}).json()["items"]
        if len(items) >= count:
            return items
        assert time.monotonic() < deadline, f"{path}: {len(items)} items, not {count}"
        time.sleep(0.2)
