"""A bounded schema-driven fuzz run (schemathesis, all checks) against the running
service's own ``/openapi.json``, with operator, partner and citizen credentials: no 5xx
and no answer that contradicts the documented schema."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis  # a pinned test dependency: never skipped
import uvicorn
from hypothesis import HealthCheck, given, settings
from schemathesis.specs.openapi.checks import positive_data_acceptance

from suishen.app.deps import FailureThrottle
from suishen.app.main import create_app
from tests.api.conftest import ADMIN_TOKEN, make_settings
from tests.contract.servers import free_port


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    data: Path = tmp_path_factory.mktemp("schemathesis")
    app = create_app(make_settings(data))
    # the fuzzer sends many requests without or with wrong credentials on purpose
    app.state.auth_throttles = {name: FailureThrottle(limit=10**9) for name in ("admin", "oauth")}
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error",
                                           lifespan="on"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline, "server did not start"
        time.sleep(0.05)
    citizen = httpx.post(url + "/v1/dev/citizen-token", json={"sub": "fuzz"}).json()
    admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    p = httpx.post(url + "/v1/admin/partners", headers=admin,
                   json={"name": "fuzz", "scenes": ["library", "metro"]}).json()
    tok = httpx.post(url + "/v1/oauth/token", data={
        "grant_type": "client_credentials", "client_id": p["client_id"],
        "client_secret": p["client_secret"]}).json()
    try:
        yield {"url": url, "admin": admin,
               "citizen": {"Authorization": f"Bearer {citizen['access_token']}"},
               "partner": {"Authorization": f"Bearer {tok['access_token']}"}}
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def _headers(live: dict[str, Any], path: str) -> dict[str, str]:
    if path.startswith("/v1/admin"):
        return dict(live["admin"])
    if path in ("/v1/verify", "/v1/resolve", "/v1/gate-events"):
        return dict(live["partner"])
    if path in ("/v1/codes", "/v1/me/verifications"):
        return dict(live["citizen"])
    return {}


# Rules a JSON Schema cannot state, so schema-valid input may rightly be refused (422):
# the USCC check character (GB 32100-2015 mod-31 checksum) of an enterprise; for a fare
# table, which of the two documented table shapes goes with which network (a path
# parameter) and no fare above max_fare; a venue's enterprise_id must name a registered
# enterprise (a reference to stored data). Every other check (no 5xx, documented statuses
# and answers, headers) still runs on these operations.
_CROSS_FIELD_RULES = {
    ("PUT", "/v1/admin/enterprises/{enterprise_id}"),
    ("PUT", "/v1/admin/fares/{network}"),
    ("POST", "/v1/admin/venues"),
}


def test_openapi_conformance(live: dict[str, Any]) -> None:
    schema = schemathesis.openapi.from_url(live["url"] + "/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 12
    examples = 0
    def runner(operation: Any) -> Any:
        headers = _headers(live, operation.path)
        excluded = ([positive_data_acceptance]
                    if (operation.method.upper(), operation.path) in _CROSS_FIELD_RULES
                    else [])

        @given(case=operation.as_strategy())
        @settings(max_examples=25, deadline=None, derandomize=True, database=None,
                  suppress_health_check=list(HealthCheck))
        def run(case: Any) -> None:
            nonlocal examples
            examples += 1
            case.call_and_validate(headers=headers, excluded_checks=excluded)

        return run

    for operation in operations:
        runner(operation)()
    assert examples >= 200
