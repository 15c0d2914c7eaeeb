"""The load test's budget check (loadtests/common/budget.py), pure."""

from __future__ import annotations

from pathlib import Path

import pytest

from loadtests.common.budget import DEFAULT_FILE, Budget, Figures, check, load


def test_met_and_missed() -> None:
    budget = Budget({"a": 10.0, "b": 5.0}, max_error_rate=0.01)
    ok = {"a": Figures(100, 0, 9.0), "b": Figures(50, 0, 5.0)}
    assert check(ok, budget) == []
    slow = {"a": Figures(100, 0, 11.0), "b": Figures(50, 0, 5.0)}
    assert check(slow, budget) == ["a: p99 11.0 ms over 10 ms"]
    failing = {"a": Figures(100, 5, 1.0), "b": Figures(50, 0, 1.0)}
    problems = check(failing, budget)
    assert problems[0].startswith("error rate 3.33% over 1.00%")
    assert "a: 5 of 100 failed" in problems
    assert check({"a": Figures(3, 0, 1.0)}, budget) == ["b: 0 requests, fewer than 1"]
    assert check({}, budget) == ["no request was made"]


def test_the_default_budget_file_loads() -> None:
    budget = load(DEFAULT_FILE)
    assert "POST /v1/codes" in budget.p99_ms and budget.max_error_rate == 0.0


@pytest.mark.parametrize("text", [
    '[p99_ms]\n"a" = -1\n', '[p99_ms]\n"a" = true\n', 'max_error_rate = 2\n',
    'min_requests = -1\n', '[p99_ms]\n"a" = "fast"\n',
])
def test_bad_budget_files_are_refused(tmp_path: Path, text: str) -> None:
    path = tmp_path / "b.toml"
    path.write_text(text)
    with pytest.raises(ValueError):
        load(path)
