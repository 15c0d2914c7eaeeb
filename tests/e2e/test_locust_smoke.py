"""The Locust city-peak suite against a real ``suishen serve``, briefly (issue 13 item
3): it runs with FastHttpUser, writes its HTML and CSV reports, and its exit code follows
the budget file — 0 when met, 1 when missed. Speed is not asserted here."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e.harness import ADMIN_TOKEN, ROOT, Server

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    srv = Server(tmp_path_factory.mktemp("locust")).start()
    yield srv
    srv.stop()


def run_locust(server: Server, tmp_path: Path, budget: str) -> subprocess.CompletedProcess[str]:
    budget_file = tmp_path / "budget.toml"
    budget_file.write_text(budget)
    env = {k: v for k, v in os.environ.items() if not k.startswith("SUISHEN_")}
    env.update(SUISHEN_ADMIN_TOKEN=ADMIN_TOKEN, SUISHEN_LOADTEST_CITIZENS="3",
               SUISHEN_LOADTEST_BUDGET=str(budget_file))
    return subprocess.run(
        [sys.executable, "-m", "locust", "-f", str(ROOT / "loadtests" / "locustfile.py"),
         "--headless", "-u", "4", "-r", "4", "-t", "4s", "--host", server.url,
         "--html", str(tmp_path / "report.html"), "--csv", str(tmp_path / "report"),
         "--only-summary"],
        check=False, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120,
    )


def test_a_met_budget_exits_0_and_writes_the_reports(server: Server, tmp_path: Path) -> None:
    result = run_locust(server, tmp_path, 'max_error_rate = 0.0\n[p99_ms]\n'
                                          '"POST /v1/codes" = 60000\n')
    assert result.returncode == 0, result.stderr[-3000:]
    assert "budget missed" not in result.stderr
    assert (tmp_path / "report.html").stat().st_size > 1000
    stats = (tmp_path / "report_stats.csv").read_text()
    assert "POST /v1/codes" in stats and "POST /v1/verify" in stats


def test_a_missed_budget_exits_1_and_says_why(server: Server, tmp_path: Path) -> None:
    result = run_locust(server, tmp_path, '[p99_ms]\n"POST /v1/codes" = 0.001\n'
                                          '"POST /v1/verify [nowhere]" = 100\n')
    assert result.returncode == 1
    assert "budget missed: POST /v1/codes: p99" in result.stderr
    assert "budget missed: POST /v1/verify [nowhere]: 0 requests" in result.stderr
