"""Steps shared by the browser tests."""

from __future__ import annotations

import io
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


def sign_in_citizen(tab: Tab, server: Server, sub: str) -> None:
    """Open the citizen page and sign in with the development identity provider."""
    tab.page.goto(server.url + "/app/")
    tab.page.wait_for_selector("#dev-form", state="visible")
    tab.page.fill("#dev-sub", sub)
    tab.page.click("#dev-submit")
    tab.page.wait_for_selector("#signed-in", state="visible")


def verify(server: Server, partner: dict[str, Any], code: str, scene: str) -> dict[str, Any]:
    """``POST /v1/verify`` as ``partner``."""
    r = httpx.post(server.url + "/v1/verify", headers=server.partner_headers(partner),
                   json={"code": code, "scene": scene, "checkpoint": "browser-test"})
    assert r.status_code == 200, r.text
    answer: dict[str, Any] = r.json()
    return answer
