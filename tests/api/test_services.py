"""Issue 7 item 3: services return domain results and raise domain errors (under the one
root ``SuishenError``); only ``app/problems.py`` turns them into HTTP answers."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from suishen.app import problems
from suishen.app.auth.errors import InvalidAdminToken, MissingBearerToken
from suishen.app.runtime import Runtime, build_runtime
from suishen.app.services.verify import VerifyOutcome
from suishen.app.storage.base import Partner
from suishen.errors import (
    BackendUnavailable,
    BodyTooLarge,
    InvalidRequest,
    NotFound,
    RateLimited,
    SceneNotAllowed,
    ScopeNotAllowed,
    SubjectSuspended,
    SuishenError,
    UnknownScene,
    UnsupportedMediaType,
)
from suishen.verifiers.reasons import Reason
from tests.api.conftest import make_settings

NOW = 1_800_000_000.0


@pytest.fixture
async def runtime(tmp_path: Path) -> AsyncIterator[Runtime]:
    rt = await build_runtime(make_settings(tmp_path), clock=lambda: NOW)
    try:
        yield rt
    finally:
        await rt.close()


async def _partner(rt: Runtime, scenes: list[str], rate: int | None = None) -> Partner:
    partner, _ = await rt.partners.register(name="p", scenes=scenes, attributes=["name"],
                                            rate_limit_per_second=rate)
    return partner


def _judge(rt: Runtime, partner: Partner, code: str, scene: str,
           scopes: frozenset[str] | None = None) -> Any:
    return rt.verifier.judge(
        partner=partner, scopes=frozenset({f"verify:{s}" for s in partner.scenes})
        if scopes is None else scopes,
        scene=scene, code=code, checkpoint=None, direction="in", request_id=None)


async def test_verify_service_returns_a_typed_outcome(runtime: Runtime) -> None:
    await runtime.subjects.upsert("alice", status="active", attributes={"name": "Alice"})
    issued = await runtime.issuance.issue("alice")
    partner = await _partner(runtime, ["library"])
    outcome = await _judge(runtime, partner, issued.text, "library")
    assert isinstance(outcome, VerifyOutcome)
    assert outcome.valid and outcome.reason is Reason.OK
    assert outcome.attributes == {"name": "Alice"}
    assert outcome.verified_at == NOW
    assert outcome.code_expires_at == issued.expires_at
    assert outcome.subject and not outcome.attributes_unavailable
    rejected = await _judge(runtime, partner, "SC1:nonsense", "library")
    assert not rejected.valid and rejected.reason is Reason.MALFORMED
    assert rejected.subject is None and rejected.attributes is None


async def test_request_checks_are_domain_errors(runtime: Runtime) -> None:
    partner = await _partner(runtime, ["library"], rate=1)
    code = (await runtime.issuance.issue("bob")).text
    with pytest.raises(ScopeNotAllowed):
        await _judge(runtime, partner, code, "library", scopes=frozenset({"verify:metro"}))
    with pytest.raises(SceneNotAllowed):
        await _judge(runtime, partner, code, "metro",
                     scopes=frozenset({"verify:metro", "verify:library"}))
    with pytest.raises(UnknownScene):
        await _judge(runtime, partner, code, "moon", scopes=frozenset({"verify:moon"}))
    await _judge(runtime, partner, code, "library")  # the one request of this second
    with pytest.raises(RateLimited) as caught:
        await _judge(runtime, partner, code, "library")
    assert caught.value.retry_after >= 1
    assert isinstance(caught.value, SuishenError)


async def test_issuance_service(runtime: Runtime) -> None:
    issued = await runtime.issuance.issue("carol")
    assert issued.issued_at == int(NOW)
    assert issued.expires_at == int(NOW) + runtime.settings.code_ttl_seconds
    await runtime.subjects.upsert("carol", status="suspended", attributes={})
    with pytest.raises(SubjectSuspended):
        await runtime.issuance.issue("carol")


async def test_history_service_pages(runtime: Runtime) -> None:
    partner = await _partner(runtime, ["library"])
    code = (await runtime.issuance.issue("dave")).text
    for _ in range(3):
        await _judge(runtime, partner, code, "library")
    await runtime.audit.flush()
    first = await runtime.subjects.history("dave", limit=2, before=None)
    assert len(first.entries) == 2 and first.next_before is not None
    rest = await runtime.subjects.history("dave", limit=2, before=first.next_before)
    assert len(rest.entries) == 1 and rest.next_before is None
    empty = await runtime.subjects.history("nobody", limit=2, before=None)
    assert empty.entries == [] and empty.next_before is None


@pytest.mark.parametrize(("error", "status", "type_", "header"), [
    (MissingBearerToken(), 401, "unauthorized", ("www-authenticate", "Bearer")),
    (InvalidAdminToken(), 401, "unauthorized", ("www-authenticate", "Bearer")),
    (InvalidRequest("bad"), 422, "validation", None),
    (UnsupportedMediaType("json only"), 415, "unsupported-media-type", None),
    (BodyTooLarge("too big"), 413, None, None),
    (NotFound("gone"), 404, "not-found", None),
    (RateLimited("slow down", retry_after=7), 429, "rate-limited", ("retry-after", "7")),
    (ScopeNotAllowed("no scope"), 403, "scene-forbidden", None),
    (SceneNotAllowed("no scene"), 403, "scene-forbidden", None),
    (SubjectSuspended("suspended"), 403, "suspended", None),
    (UnknownScene("moon"), 422, "unknown-scene", None),
    (BackendUnavailable("db at 10.0.0.1 down"), 503, "unavailable", ("retry-after", "5")),
])
def test_one_mapping_from_domain_errors_to_problems(
    error: SuishenError, status: int, type_: str | None, header: tuple[str, str] | None
) -> None:
    response = problems.from_exception(error)
    body = json.loads(bytes(response.body))
    assert response.status_code == status == body["status"]
    assert response.media_type == problems.PROBLEM_JSON
    assert body["type"] == (problems.TYPE_BASE + type_ if type_ else "about:blank")
    assert "10.0.0.1" not in body["detail"]  # backend messages stay in the logs
    if header is not None:
        assert response.headers[header[0]] == header[1]


def test_the_app_layer_has_no_error_outside_the_root() -> None:
    assert not hasattr(problems, "HTTPProblem")
    assert RateLimited("x", retry_after=0).retry_after == 1  # never "retry after 0 s"


async def test_event_dispatcher_applies_feed_events(runtime: Runtime) -> None:
    """Issue 7 item 4: the change feed is dispatched by app/events.py, not the container."""
    from suishen.app.storage.base import Event

    handle = bytes(16)
    assert not runtime.subjects.revocations.subject_revoked(handle)
    await runtime.events.apply(Event("subject", {"handle": handle.hex(), "status": "suspended"}))
    assert runtime.subjects.revocations.subject_revoked(handle)
    await runtime.events.apply(Event("subject", {"handle": handle.hex(), "status": "active"}))
    assert not runtime.subjects.revocations.subject_revoked(handle)
    await runtime.events.apply(Event("unheard-of", {}))  # counted, ignored
    counted = runtime.metrics.registry.get_sample_value(
        "suishen_events_applied_total", {"kind": "unheard-of"})
    assert counted == 1.0
    assert not hasattr(runtime, "on_event")


def test_services_read_time_only_through_the_injected_clock() -> None:
    """Issue 7 item 4: one clock. Services and the in-process state never read the wall
    clock themselves (durations may use ``time.monotonic``)."""
    root = Path(__file__).resolve().parents[2] / "app"
    sources = [*sorted((root / "services").glob("*.py")), root / "storage" / "memory.py",
               root / "storage" / "postgres.py", root / "storage" / "sqlite.py"]
    offenders = [p.name for p in sources
                 if "time.time" in p.read_text() or "from time import" in p.read_text()]
    assert offenders == []


def test_one_describe_for_backend_errors() -> None:
    """Issue 7 item 9: one ``describe`` (was three ``_describe`` copies in storage)."""
    from suishen.errors import describe

    assert describe(ConnectionError("refused\nsecond line")) == "ConnectionError: refused"
    assert describe(TimeoutError()) == "TimeoutError"
    assert describe(OSError("   ")) == "OSError"


def test_partner_token_lifetime_bound_setting(tmp_path: Path) -> None:
    """Issue 8 item 9: SUISHEN_PARTNER_TOKEN_MAX_LIFETIME_SECONDS defaults to the TTL and
    may not be below it."""
    from pydantic import ValidationError

    assert make_settings(tmp_path).partner_token_lifetime_bound == 300
    assert make_settings(tmp_path, partner_token_ttl_seconds=120,
                         partner_token_max_lifetime_seconds=600
                         ).partner_token_lifetime_bound == 600
    with pytest.raises(ValidationError, match="MAX_LIFETIME"):
        make_settings(tmp_path, partner_token_ttl_seconds=300,
                      partner_token_max_lifetime_seconds=60)


async def test_runtime_wires_the_lifetime_bound(tmp_path: Path) -> None:
    rt = await build_runtime(make_settings(tmp_path, partner_token_ttl_seconds=120,
                                           partner_token_max_lifetime_seconds=900))
    try:
        assert (rt.partner_tokens.ttl, rt.partner_tokens.max_lifetime) == (120, 900)
    finally:
        await rt.close()
