"""The SDK's HTTP layer and partner client (sdk/http.py, sdk/client.py) against a real
local HTTP server that misbehaves on purpose: 503/429 with and without Retry-After,
problem+json errors, token caching and renewal, fallback to the offline gate."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from suishen.sdk.client import PartnerClient
from suishen.sdk.http import HTTP, ServiceError
from suishen.verifiers.reasons import Reason


class Script:
    """What the server answers, in order, per path; records requests."""

    def __init__(self) -> None:
        self.answers: dict[str, list[tuple[int, dict[str, str], Any]]] = {}
        self.seen: list[tuple[str, str, dict[str, str], bytes]] = []

    def add(self, path: str, status: int, body: Any, headers: dict[str, str] | None = None):
        self.answers.setdefault(path, []).append((status, headers or {}, body))


@pytest.fixture
def server() -> Iterator[tuple[str, Script]]:
    script = Script()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def _serve(self) -> None:
            length = int(self.headers.get("content-length") or 0)
            body = self.rfile.read(length)
            path = self.path.split("?")[0]
            script.seen.append((self.command, self.path, dict(self.headers.items()), body))
            queue = script.answers.get(path) or [(404, {}, {"title": "not found"})]
            status, headers, answer = queue.pop(0) if len(queue) > 1 else queue[0]
            data = answer if isinstance(answer, bytes) else json.dumps(answer).encode()
            self.send_response(status)
            ctype = "application/problem+json" if status >= 400 else "application/json"
            self.send_header("content-type", ctype)
            for k, v in headers.items():
                self.send_header(k, v)
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = _serve

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", script
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_retries_503_honouring_retry_after(server: tuple[str, Script]) -> None:
    url, script = server
    script.add("/x", 503, {"title": "busy"}, {"retry-after": "2"})
    script.add("/x", 429, {"title": "slow down"})
    script.add("/x", 200, {"ok": True})
    slept: list[float] = []
    http = HTTP(url, sleep=slept.append)
    assert http.request("GET", "/x").json() == {"ok": True}
    assert slept == [2.0, 0.4]  # Retry-After first, then our own backoff (2nd attempt)


def test_gives_up_after_retries_with_the_problem(server: tuple[str, Script]) -> None:
    url, script = server
    script.add("/x", 503, {"title": "busy", "detail": "draining", "type": "about:blank"})
    http = HTTP(url, retries=2, sleep=lambda _: None)
    with pytest.raises(ServiceError) as info:
        http.request("GET", "/x")
    assert (info.value.status, info.value.title, info.value.detail) == (503, "busy", "draining")
    assert len(script.seen) == 3


def test_client_errors_are_not_retried(server: tuple[str, Script]) -> None:
    url, script = server
    script.add("/x", 422, {"title": "Unprocessable", "detail": "scene: unknown"})
    with pytest.raises(ServiceError) as info:
        HTTP(url, sleep=lambda _: None).request("POST", "/x", json_body={})
    assert info.value.status == 422 and len(script.seen) == 1


def test_an_unreachable_service_is_a_service_error() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens
    http = HTTP(f"http://127.0.0.1:{port}", retries=1, sleep=lambda _: None)
    with pytest.raises(ServiceError) as info:
        http.request("GET", "/healthz")
    assert info.value.status == 0


@pytest.mark.parametrize("url", ["file:///etc/passwd", "ftp://x", "localhost:8000", ""])
def test_only_http_urls(url: str) -> None:
    with pytest.raises(ServiceError):
        HTTP(url)


def token_answer(token: str, expires_in: int = 300) -> dict[str, Any]:
    return {"access_token": token, "token_type": "Bearer", "expires_in": expires_in}


VERIFY_OK = {"valid": True, "reason": "ok", "verified_at": "2027-01-15T08:00:00Z",
             "kind": "personal", "subject": "abc", "attributes": {"reader_id": "R-1"}}


def test_partner_token_is_cached_and_renewed_before_expiry(server: tuple[str, Script]) -> None:
    url, script = server
    script.add("/v1/oauth/token", 200, token_answer("t1"))
    script.add("/v1/oauth/token", 200, token_answer("t2"))
    script.add("/v1/verify", 200, VERIFY_OK)
    now = [1000.0]
    client = PartnerClient(url, "gate-1", "s3cret", clock=lambda: now[0])
    result = client.verify("SC1:X", scene="library", checkpoint="desk-1")
    assert (result.reason, result.subject) == (Reason.OK, "abc")
    assert result.attributes == {"reader_id": "R-1"}
    client.verify("SC1:X", scene="library", checkpoint="desk-1")
    tokens = [s for s in script.seen if s[1] == "/v1/oauth/token"]
    assert len(tokens) == 1
    assert tokens[0][3] == b"grant_type=client_credentials"
    assert tokens[0][2]["Authorization"].startswith("Basic ")
    verifies = [s for s in script.seen if s[1] == "/v1/verify"]
    assert verifies[0][2]["Authorization"] == "Bearer t1"
    sent = json.loads(verifies[0][3])
    assert sent == {"code": "SC1:X", "scene": "library", "checkpoint": "desk-1"}
    now[0] += 300 - 29  # within the renewal margin
    client.verify("SC1:X", scene="library", checkpoint="desk-1")
    assert script.seen[-1][2]["Authorization"] == "Bearer t2"
    assert "s3cret" not in repr(client)


def test_a_401_fetches_one_new_token(server: tuple[str, Script]) -> None:
    url, script = server
    script.add("/v1/oauth/token", 200, token_answer("old"))
    script.add("/v1/oauth/token", 200, token_answer("new"))
    script.add("/v1/verify", 401, {"title": "Unauthorized"})
    script.add("/v1/verify", 200, VERIFY_OK)
    client = PartnerClient(url, "gate-1", "s3cret")
    assert client.verify("SC1:X", scene="library", checkpoint="c").valid
    assert script.seen[-1][2]["Authorization"] == "Bearer new"


def test_unknown_reason_from_the_service_is_refused(server: tuple[str, Script]) -> None:
    url, script = server
    script.add("/v1/oauth/token", 200, token_answer("t"))
    script.add("/v1/verify", 200, {**VERIFY_OK, "reason": "teleported"})
    with pytest.raises(ServiceError):
        PartnerClient(url, "g", "s").verify("SC1:X", scene="library", checkpoint="c")


class StubGate:
    """Records the offline fallback call (the real gate is tested in test_gate.py)."""

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []

    def verify(self, code: str, **kw: Any):
        from suishen.sdk.gate import GateDecision

        self.calls.append({"code": code, **kw})
        return GateDecision(True, "ok", "offline", kw["scene"], kw["direction"],
                            kw["checkpoint"], "2027-01-15T08:00:00Z", degraded=True)


def test_verify_or_decide_falls_back_to_the_gate_when_unavailable(
    server: tuple[str, Script],
) -> None:
    url, script = server
    script.add("/v1/oauth/token", 503, {"title": "down"})
    client = PartnerClient(url, "g", "s", retries=0)
    gate = StubGate()
    result = client.verify_or_decide(gate, "SC1:X", scene="metro", direction="in", now=5)
    assert (result.online, result.reason, result.degraded) == (False, Reason.OK, True)
    assert gate.calls == [{"code": "SC1:X", "scene": "metro", "direction": "in",
                           "checkpoint": "offline", "now": 5}]


def test_verify_or_decide_does_not_hide_client_errors(server: tuple[str, Script]) -> None:
    url, script = server
    script.add("/v1/oauth/token", 200, token_answer("t"))
    script.add("/v1/verify", 403, {"title": "Forbidden", "detail": "scene not registered"})
    with pytest.raises(ServiceError) as info:
        PartnerClient(url, "g", "s").verify_or_decide(StubGate(), "SC1:X", scene="metro")
    assert info.value.status == 403


def test_resolve_is_typed_and_refuses_unknown_reasons(server: tuple[str, Script]) -> None:
    url, script = server
    script.add("/v1/oauth/token", 200, token_answer("t"))
    script.add("/v1/resolve", 200, {"kind": "enterprise", "issuer": "urn:suishen",
                                    "valid": True, "reason": "ok",
                                    "verified_at": "2027-01-15T08:00:00Z",
                                    "enterprise": {"name": "Acme"}})
    script.add("/v1/resolve", 200, {"kind": None, "issuer": None, "valid": False,
                                    "reason": "teleported", "verified_at": "x"})
    client = PartnerClient(url, "g", "s")
    found = client.resolve("SC1:X")
    assert found.reason is Reason.OK and found.enterprise == {"name": "Acme"}
    assert json.loads(script.seen[-1][3]) == {"code": "SC1:X"}
    with pytest.raises(ServiceError):
        client.resolve("SC1:Y")
