"""Issue 8 item 3: single use survives a restart of the embedded default."""

from __future__ import annotations

from pathlib import Path

import httpx

from tests.e2e.harness import Server


def test_a_consumed_code_is_still_replayed_after_a_restart(tmp_path: Path) -> None:
    first_server = Server(tmp_path).start()
    try:
        citizen = first_server.citizen("e2e-restart")
        code = httpx.post(first_server.url + "/v1/codes", headers=citizen).json()["code"]
        gate = first_server.register_partner(["metro"])
        headers = first_server.partner_headers(gate)
        body = {"code": code, "scene": "metro", "checkpoint": "L2-S12-G3", "direction": "in"}
        r = httpx.post(first_server.url + "/v1/verify", headers=headers, json=body)
        assert r.json()["reason"] == "ok"
        r = httpx.post(first_server.url + "/v1/verify", headers=headers, json=body)
        assert r.json()["reason"] == "replayed"
    finally:
        first_server.stop()
    again = Server(tmp_path).start()  # same data directory, a new process
    try:
        headers = again.partner_headers(gate)
        r = httpx.post(again.url + "/v1/verify", headers=headers, json=body)
        assert r.json()["reason"] == "replayed", r.text  # today: "ok"
    finally:
        again.stop()
