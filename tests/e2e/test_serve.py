"""End to end on the embedded default: a real ``suishen serve`` process, a QR image
read back by zxing-cpp, a gate that verifies it, and a graceful stop that loses no
audit record."""

from __future__ import annotations

import io
import signal
from pathlib import Path

import httpx
import pytest
import zxingcpp
from PIL import Image

from tests.e2e.harness import Server

pytestmark = pytest.mark.e2e


@pytest.fixture
def server(tmp_path: Path):  # type: ignore[no-untyped-def]
    srv = Server(tmp_path).start()
    yield srv
    srv.stop()


def test_png_code_verified_at_a_gate(server: Server) -> None:
    citizen = server.citizen("e2e-citizen")
    r = httpx.post(server.url + "/v1/codes?format=png", headers=citizen)
    assert r.status_code == 201
    decoded = zxingcpp.read_barcodes(
        Image.open(io.BytesIO(r.content)), formats=zxingcpp.BarcodeFormat.QRCode
    )
    assert len(decoded) == 1
    code = decoded[0].text
    gate = server.register_partner(["metro"])
    headers = server.partner_headers(gate)
    body = {"code": code, "scene": "metro", "checkpoint": "L2-S12-G3", "direction": "in"}
    first = httpx.post(server.url + "/v1/verify", headers=headers, json=body)
    assert first.status_code == 200 and first.json()["valid"] is True
    second = httpx.post(server.url + "/v1/verify", headers=headers, json=body)
    assert second.json()["reason"] == "replayed"


def test_sigterm_drains_audit(tmp_path: Path) -> None:
    # A long flush interval keeps records queued until the stop drains them.
    srv = Server(tmp_path, SUISHEN_AUDIT_FLUSH_INTERVAL_MS="60000").start()
    try:
        citizen = srv.citizen("drain")
        library = srv.register_partner(["library"])
        headers = srv.partner_headers(library)
        code = httpx.post(srv.url + "/v1/codes", headers=citizen).json()["code"]
        for i in range(25):
            r = httpx.post(
                srv.url + "/v1/verify",
                headers=headers,
                json={"code": code, "scene": "library", "checkpoint": f"d{i}"},
            )
            assert r.json()["valid"] is True
        # uvicorn re-raises the captured SIGTERM after its graceful shutdown.
        assert srv.stop(signal.SIGTERM) in (0, -signal.SIGTERM)
        assert "Application shutdown complete" in srv.log()
    finally:
        srv.stop()
    again = Server(tmp_path).start()
    try:
        page = httpx.get(
            again.url + "/v1/me/verifications?limit=100", headers=again.citizen("drain")
        ).json()
        assert len(page["items"]) == 25
    finally:
        again.stop()


def test_production_posture_refuses_to_start(tmp_path: Path) -> None:
    srv = Server(tmp_path, SUISHEN_ENV="production")
    with pytest.raises(RuntimeError) as err:
        srv.start(timeout=15)
    assert "SUISHEN_IDP_ISSUER" in str(err.value)
    assert "Traceback" not in str(err.value)
