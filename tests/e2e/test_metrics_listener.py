"""Issue 8 item 6 and issue 7 item 8: metrics on their own listener, summed over
workers; one access-log line per request."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import httpx

from tests.e2e.harness import Server


def _sample(text: str, name: str) -> float:
    match = re.search(rf"^{re.escape(name)} (\S+)$", text, re.MULTILINE)
    return float(match.group(1)) if match else 0.0


def test_metrics_sum_over_two_workers_on_their_own_listener(tmp_path: Path) -> None:
    srv = Server(tmp_path, SUISHEN_WORKERS="2").start(timeout=40)
    try:
        citizen = srv.citizen("e2e-metrics")
        issued = 30
        for _ in range(issued):  # a new connection each time: both workers take some
            with httpx.Client() as client:
                assert client.post(srv.url + "/v1/codes", headers=citizen).status_code == 201
        assert httpx.get(srv.url + "/metrics").status_code == 404
        text = httpx.get(srv.metrics_url).text
        assert _sample(text, "suishen_codes_issued_total") == issued
        assert "client_id" not in text
    finally:
        srv.stop()


def test_access_log_writes_one_line_per_request(tmp_path: Path) -> None:
    srv = Server(tmp_path, SUISHEN_ACCESS_LOG="true").start()
    try:
        for _ in range(3):
            assert httpx.get(srv.url + "/v1/keys").status_code == 200
        time.sleep(0.3)
    finally:
        srv.stop()
    lines = [line for line in srv.log_path.read_text().splitlines() if "/v1/keys" in line]
    assert len(lines) == 3, lines
    assert all(json.loads(line)["path"] == "/v1/keys" for line in lines)
