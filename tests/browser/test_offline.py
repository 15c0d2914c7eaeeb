"""The citizen page offline (SPEC.md §6.4): the browser registers as a device (WebCrypto
P-256 keys, non-extractable, in IndexedDB; credentials from ``POST /v1/devices``), is
cached by a service worker, and with the network gone shows an offline code made in the
browser, which the SDK's gate (``suishen gate verify``, from a trust bundle fetched
before) accepts."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.browser.conftest import Tab
from tests.browser.helpers import (
    decode_qr,
    shown_code,
    sign_in_citizen,
    verify,
    wait_for_items,
)
from tests.e2e.harness import ROOT, SUISHEN, Server

# Chromium's console line for every fetch that fails while the context is offline.
OFFLINE_ERRORS = ("net::ERR_INTERNET_DISCONNECTED",)


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(SUISHEN), *args], capture_output=True, text=True, cwd=ROOT,
                          timeout=60, check=False)


def gate(folder: Path, code: str, direction: str = "in", checkpoint: str = "L2-S12-G3",
         state: str = "gate-state.json") -> dict[str, Any]:
    done = cli("gate", "verify", "--bundle", str(folder / "bundle.cose"),
               "--anchor", str(folder / "anchor.json"), "--scene", "metro",
               "--direction", direction, "--checkpoint", checkpoint,
               "--state", str(folder / state), code)
    assert done.returncode in (0, 1), done.stderr
    decision: dict[str, Any] = json.loads(done.stdout.splitlines()[-1])
    return decision


def offline_code(tab: Tab, serial: int | None = None, timeout_ms: float = 15_000) -> str:
    selector = "#qr-offline:not([hidden])" + (f'[data-serial="{serial}"]' if serial else "")
    tab.page.wait_for_selector(selector, timeout=timeout_ms)
    assert tab.page.is_visible("#offline-badge")
    return decode_qr(tab.page.locator("#code-box").screenshot())


@pytest.fixture
def gate_dir(server: Server, tmp_path: Path) -> tuple[Path, dict[str, Any]]:
    partner = server.register_partner(["metro"])
    folder = tmp_path / "gate"
    folder.mkdir()
    return folder, partner


def fetch_bundle(server: Server, folder: Path, partner: dict[str, Any]) -> None:
    done = cli("bundle", "fetch", "--url", server.url, "--client-id", partner["client_id"],
               "--client-secret", partner["client_secret"], "--out", str(folder / "bundle.cose"))
    assert done.returncode == 0, done.stderr
    (folder / "anchor.json").write_text(httpx.get(server.url + "/v1/trust-anchor").text)


def test_offline_the_page_shows_a_code_made_in_the_browser_that_a_gate_accepts(
        open_tab, server: Server, gate_dir: tuple[Path, dict[str, Any]]) -> None:
    folder, partner = gate_dir
    tab = open_tab("citizen-offline")
    tab.allowed_substrings.update(OFFLINE_ERRORS)
    sign_in_citizen(tab, server, "browser-offline")
    online = shown_code(tab)
    page = tab.page
    page.wait_for_selector('body[data-offline="ready"]', timeout=20_000)
    # The browser is a registered device of this citizen.
    devices = httpx.get(server.url + "/v1/devices",
                        headers=server.citizen("browser-offline")).json()["devices"]
    assert len(devices) == 1 and devices[0]["status"] == "active"
    # Its keys are non-extractable CryptoKeys in IndexedDB.
    stored = page.evaluate("""async () => {
        const db = await new Promise((ok, err) => {
            const r = indexedDB.open('suishen-offline'); r.onsuccess = () => ok(r.result);
            r.onerror = () => err(r.error); });
        const rows = await new Promise((ok) => {
            const q = db.transaction('credentials').objectStore('credentials').getAll();
            q.onsuccess = () => ok(q.result); });
        db.close();
        return rows.map((r) => ({type: r.key.type, extractable: r.key.extractable,
                                 alg: r.key.algorithm.namedCurve, usages: r.key.usages,
                                 bytes: r.credential.length})); }""")
    assert len(stored) >= 1
    assert all(r == {"type": "private", "extractable": False, "alg": "P-256",
                     "usages": ["sign"], "bytes": r["bytes"]} for r in stored)
    page.wait_for_function("navigator.serviceWorker.controller !== null", timeout=10_000)
    fetch_bundle(server, folder, partner)

    page.context.set_offline(True)
    page.click("#refresh")
    code = offline_code(tab)
    tab.shot("1-offline-code")
    assert code != online and code.startswith("SC1:") and len(code) <= 366
    decision = gate(folder, code)
    assert decision["valid"] is True and decision["reason"] == "ok", decision
    assert decision["kind"] == "offline"
    assert gate(folder, code)["reason"] == "replayed"  # the gate remembers it

    # The page itself comes from the service worker with no network, and still works.
    page.reload()
    page.wait_for_selector("#signed-in", state="visible")
    again = offline_code(tab)
    assert again != code
    assert gate(folder, again)["valid"] is True
    tab.shot("2-offline-after-reload")

    # Online again: back to the service's code (the page retries every 5 s).
    page.context.set_offline(False)
    page.wait_for_selector('body[data-mode="online"]', timeout=15_000)
    page.wait_for_selector("#offline-badge", state="hidden")


def test_offline_codes_verify_online_too_and_sign_out_forgets_the_device(
        open_tab, server: Server) -> None:
    metro = server.register_partner(["metro"])
    tab = open_tab("citizen-offline-online")
    tab.allowed_substrings.update(OFFLINE_ERRORS)
    sign_in_citizen(tab, server, "browser-offline-2")
    shown_code(tab)
    tab.page.wait_for_selector('body[data-offline="ready"]', timeout=20_000)
    tab.page.context.set_offline(True)
    tab.page.click("#refresh")
    code = offline_code(tab)
    tab.page.context.set_offline(False)
    # POST /v1/verify judges an offline code against live state.
    answer = verify(server, metro, code, "metro")
    assert answer["valid"] is True and answer.get("kind") == "offline", answer
    # My devices lists this browser.
    tab.page.click('[data-tab="devices"]')
    item = tab.page.wait_for_selector("#devices li", timeout=10_000)
    assert "browser" in item.inner_text() and "使用中" in item.inner_text()
    assert item.get_attribute("data-status") == "active"
    tab.shot("my-devices")
    tab.page.click("#signout")
    tab.page.wait_for_selector("#dev-form", state="visible")
    # The wipe is asynchronous (two IndexedDB transactions); the page says "signed out"
    # only once it is done, so wait for that rather than for the form.
    tab.page.wait_for_selector('#notice[data-key="signout.done"]', timeout=10_000)
    left = tab.page.evaluate("""async () => {
        const db = await new Promise((ok) => {
            const r = indexedDB.open('suishen-offline'); r.onsuccess = () => ok(r.result); });
        const n = await new Promise((ok) => {
            const q = db.transaction('credentials').objectStore('credentials').count();
            q.onsuccess = () => ok(q.result); });
        db.close(); return n; }""")
    assert left == 0


def test_a_journey_through_offline_gates_shows_with_the_offline_badge(
        open_tab, server: Server, gate_dir: tuple[Path, dict[str, Any]]) -> None:
    """In at one offline gate and out at another with the page's offline codes; the
    gates upload (``suishen gate upload``); *my journeys* shows it, marked offline."""
    folder, partner = gate_dir
    r = httpx.put(server.url + "/v1/admin/fares/metro", headers=server.admin, json={
        "operator": "metro-co", "zones": {"L2-S12": 1, "L9-S40": 3},
        "fares": {"0": 300, "1": 400, "2": 500}, "max_fare": 900,
        "exit_without_entry": "refuse"})
    assert r.status_code == 200, r.text
    tab = open_tab("citizen-offline-journey")
    tab.allowed_substrings.update(OFFLINE_ERRORS)
    sign_in_citizen(tab, server, "browser-offline-rider")
    shown_code(tab)
    page = tab.page
    page.wait_for_selector('body[data-offline="ready"]', timeout=20_000)
    fetch_bundle(server, folder, partner)
    page.context.set_offline(True)
    page.click("#refresh")
    entry = offline_code(tab)
    assert gate(folder, entry, "in", "L2-S12-G3", "entry-gate.json")["valid"] is True
    serial = int(page.get_attribute("#qr-offline", "data-serial") or "0")
    exit_ = offline_code(tab, serial=serial + 1)  # the page's next offline code (5 s)
    assert gate(folder, exit_, "out", "L9-S40-G1", "exit-gate.json")["valid"] is True
    page.context.set_offline(False)
    for state in ("entry-gate.json", "exit-gate.json"):
        done = cli("gate", "upload", "--state", str(folder / state), "--url", server.url,
                   "--client-id", partner["client_id"],
                   "--client-secret", partner["client_secret"])
        assert done.returncode == 0, done.stderr
    page.wait_for_selector('body[data-mode="online"]', timeout=15_000)
    wait_for_items(server, tab, "/v1/me/journeys", 1)
    page.click('[data-tab="journeys"]')
    row = page.wait_for_selector("#journeys li")
    assert row.get_attribute("data-fare") == "500"  # zone 1 to zone 3: two crossed
    text = row.inner_text()
    assert "离线闸机" in text and "L2-S12" in text and "L9-S40" in text
    tab.shot("offline-journey")
