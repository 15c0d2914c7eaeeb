"""The load test's budget: p99 per endpoint and error rates against thresholds from a
TOML file (``loadtests/budget.toml`` unless ``SUISHEN_LOADTEST_BUDGET`` names another).

Pure: :func:`check` takes per-endpoint figures and a budget and returns the problems; the
Locust file calls it when the run ends and sets a non-zero exit code when it finds any, so
``locust --headless`` fails the run that missed its budget. No Locust import here.

File format::

    max_error_rate = 0.0            # failures / requests, per endpoint and overall
    min_requests = 1                # an endpoint in [p99_ms] that saw fewer is a problem

    [p99_ms]                        # endpoint name (as Locust reports it) -> milliseconds
    "POST /v1/codes" = 50
    "POST /v1/verify [metro in]" = 20
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_FILE = Path(__file__).resolve().parents[1] / "budget.toml"
ENV = "SUISHEN_LOADTEST_BUDGET"


@dataclass(frozen=True, slots=True)
class Budget:
    """Thresholds of one run."""

    p99_ms: Mapping[str, float] = field(default_factory=dict)
    max_error_rate: float = 0.0
    min_requests: int = 1


@dataclass(frozen=True, slots=True)
class Figures:
    """What the run measured for one endpoint."""

    requests: int
    failures: int
    p99_ms: float


def load(path: str | Path | None = None) -> Budget:
    """Read a budget file (``SUISHEN_LOADTEST_BUDGET``, else the default one)."""
    source = Path(path or os.environ.get(ENV) or DEFAULT_FILE)
    data = tomllib.loads(source.read_text(encoding="utf-8"))
    p99 = data.get("p99_ms", {})
    if not isinstance(p99, dict) or not all(
        isinstance(v, int | float) and not isinstance(v, bool) and v > 0 for v in p99.values()
    ):
        raise ValueError(f"{source}: [p99_ms] maps endpoint names to positive milliseconds")
    rate = data.get("max_error_rate", 0.0)
    minimum = data.get("min_requests", 1)
    if not isinstance(rate, int | float) or not 0 <= rate <= 1:
        raise ValueError(f"{source}: max_error_rate is a fraction between 0 and 1")
    if not isinstance(minimum, int) or minimum < 0:
        raise ValueError(f"{source}: min_requests is a non-negative integer")
    return Budget({str(k): float(v) for k, v in p99.items()}, float(rate), minimum)


def check(figures: Mapping[str, Figures], budget: Budget) -> list[str]:
    """Every way the run missed its budget (empty when it met it)."""
    problems = []
    total = sum(f.requests for f in figures.values())
    failed = sum(f.failures for f in figures.values())
    if total == 0:
        return ["no request was made"]
    if failed / total > budget.max_error_rate:
        problems.append(f"error rate {failed / total:.2%} over {budget.max_error_rate:.2%} "
                        f"({failed} of {total})")
    for name, limit in sorted(budget.p99_ms.items()):
        seen = figures.get(name)
        if seen is None or seen.requests < budget.min_requests:
            problems.append(f"{name}: {0 if seen is None else seen.requests} requests, "
                            f"fewer than {budget.min_requests}")
            continue
        if seen.p99_ms > limit:
            problems.append(f"{name}: p99 {seen.p99_ms:.1f} ms over {limit:g} ms")
        if seen.failures / seen.requests > budget.max_error_rate:
            problems.append(f"{name}: {seen.failures} of {seen.requests} failed")
    return problems
