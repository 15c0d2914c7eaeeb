"""Pooling open-loop runs (benchmarks/loadgen.py ``Result.pooled``), which
``benchmarks/http_bench.py`` uses for the p99 at half load: the pooled p99 is the p99
of every request, not an average of the runs' p99s."""

from __future__ import annotations

import collections
import math
import random
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import loadgen  # the benchmark's own module


def _run(latencies: list[float], *, status: int = 200, errors: int = 0) -> loadgen.Result:
    return loadgen.Result(mode="open", connections=32, elapsed=5.0, completed=len(latencies),
                          statuses=collections.Counter({status: len(latencies)}),
                          errors=errors, latencies=sorted(latencies),
                          scheduled=sorted(x + 0.001 for x in latencies), target_rate=2000.0)


def test_the_pooled_p99_is_the_p99_of_every_request() -> None:
    rng = random.Random(7)
    quiet = [rng.uniform(0.0004, 0.0012) for _ in range(10_000)]
    spiky = [rng.uniform(0.0004, 0.0012) for _ in range(9_700)] + [0.010] * 300
    pooled = loadgen.Result.pooled([_run(quiet), _run(spiky, status=429, errors=2)])
    everything = sorted(quiet + spiky)
    assert pooled.p99 == everything[math.ceil(0.99 * len(everything)) - 1]
    # 300 slow requests of 20,000 are 1.5 %: the pooled p99 is one of them, while the
    # mean of the two runs' p99s would say about 5.6 ms
    assert pooled.p99 == 0.010
    assert pooled.completed == 20_000 and pooled.elapsed == 10.0
    assert pooled.throughput == 2000.0 and pooled.target_rate == 2000.0
    assert pooled.statuses == {200: 10_000, 429: 10_000} and pooled.non_2xx == 10_000
    assert pooled.errors == 2
    assert pooled.percentile(99, scheduled=True) == pytest.approx(0.011)


def test_pooling_nothing_is_an_error() -> None:
    with pytest.raises(ValueError, match="no results"):
        loadgen.Result.pooled([])
