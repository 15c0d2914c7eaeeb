"""The fast lane's edge (``EdgeMiddleware.fast``) against the general one.

``EdgeMiddleware.__call__`` wraps ``receive`` and ``send`` around any ASGI app;
``EdgeMiddleware.fast`` reads the request and sends the answer itself (issue 13: the
wrappers cost a verify request 13,000 instructions). They must not differ in anything
a client or an operator sees, so the same endpoint is served both ways — the general
way through the ASGI adapter below, which is how fast endpoints were served before — and
every request, valid or hostile, must give the same messages (status, headers, body)
and the same latency metric. Requests are drawn by hypothesis: headers in any order and
number (duplicates included), bodies split into any chunks, declared lengths that lie,
bodies over the limit, client disconnects, other methods.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client import generate_latest
from starlette.types import Message, Receive, Scope, Send

from suishen.app.observability import (
    Answer,
    EdgeMiddleware,
    FastEndpoint,
    FastRequest,
    Metrics,
    request_id_var,
)

LIMIT = 64
PATH = "/v1/fast"
_GENERATED_ID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]+$")


class _Route:
    path = PATH


async def echo(request: FastRequest) -> Answer:
    """An endpoint that shows everything it was given."""
    body = json.dumps({
        "authorization": request.authorization,
        "content_type": request.content_type,
        "body": request.body.decode("latin-1"),
        "method": request.scope["method"],
        "query": request.scope["query_string"].decode("latin-1"),
        "request_id": request_id_var.get(),
        "runtime": request.runtime,
    }).encode()
    status = 201 if request.body else 200
    return status, body, [(b"content-type", b"application/json"), (b"x-echo", b"1")]


def general(endpoint: FastEndpoint) -> Any:
    """``endpoint`` as a plain ASGI app (the general path EdgeMiddleware wraps): first
    Authorization and Content-Type, the body read to the end (None on a disconnect),
    the answer sent with its length."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        scope["route"] = _Route()
        authorization = content_type = None
        for name, value in scope["headers"]:
            if name == b"authorization" and authorization is None:
                authorization = value.decode("latin-1")
            elif name == b"content-type" and content_type is None:
                content_type = value.decode("latin-1")
        chunks = []
        more = True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunks.append(message.get("body", b""))
            more = message.get("more_body", False)
        status, body, headers = await endpoint(FastRequest(
            scope["app"].state.runtime, scope, authorization, content_type, b"".join(chunks)))
        await send({"type": "http.response.start", "status": status,
                    "headers": [*headers, (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})

    return app


class _State:
    runtime = "the runtime"


class _App:
    state = _State()


def _edges() -> tuple[Any, Any, Metrics, Metrics]:
    m_general, m_fast = Metrics(), Metrics()
    # route=PATH: the general edge's fixed route label, as the fast lane's is (before
    # issue 13 an answer given before the endpoint ran, a 413, counted as "unmatched").
    slow = EdgeMiddleware(general(echo), max_body_bytes=LIMIT, metrics=m_general, route=PATH)
    edge = EdgeMiddleware(general(echo), max_body_bytes=LIMIT, metrics=m_fast)
    return slow, edge.fast(echo, PATH, _Route()), m_general, m_fast


async def _serve(app: Any, scope: Scope, messages: list[Message]) -> tuple[list[Message], str]:
    queue = list(messages)
    sent: list[Message] = []

    async def receive() -> Message:
        return queue.pop(0) if queue else {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        sent.append(message)

    error = ""
    try:
        await app(dict(scope), receive, send)
    except Exception as exc:
        error = type(exc).__name__
    return sent, error


def _normalised(sent: list[Message], client_id: str | None) -> list[Any]:
    """The messages with the request id checked and taken out (each edge numbers its
    own), and headers as a sorted list (their order carries no meaning)."""
    out: list[Any] = []
    for message in sent:
        if message["type"] == "http.response.start":
            headers = [(bytes(k), bytes(v)) for k, v in message["headers"]]
            ids = [v.decode() for k, v in headers if k == b"x-request-id"]
            assert len(ids) == 1, headers
            if client_id is not None:
                assert ids == [client_id]
            else:
                assert _GENERATED_ID.match(ids[0]), ids
            rest = sorted(h for h in headers if h[0] != b"x-request-id")
            out.append(("start", message["status"], rest))
        else:
            body = message.get("body", b"")
            if message.get("more_body"):
                out.append(("body", body, True))
                continue
            try:  # the echo shows the request id: checked above, equal but for the number
                shown = json.loads(body)
                if isinstance(shown, dict) and "request_id" in shown:
                    assert shown["request_id"] == (client_id or shown["request_id"])
                    shown["request_id"] = "(checked)"
                out.append(("body", shown))
            except ValueError:
                out.append(("body", body))
    return out


def _latency_counts(metrics: Metrics) -> list[str]:
    """The latency histogram's request counts, one line per (route, method, status)."""
    return [line for line in generate_latest(metrics.registry).decode().splitlines()
            if line.startswith("suishen_request_duration_seconds_count")]


_token = st.text(st.sampled_from("abcXYZ019._-/ "), max_size=8)
_header = st.one_of(
    st.tuples(st.just(b"authorization"), _token.map(lambda t: f"Bearer {t}".encode())),
    st.tuples(st.just(b"content-type"), st.sampled_from(
        [b"application/json", b"text/plain", b"application/json; charset=utf-8", b""])),
    st.tuples(st.just(b"x-request-id"), st.sampled_from(
        [b"abc-1", b"A.b_c-9", b"bad id", b"", b"x" * 65, b"\xff\xfe"])),
    st.tuples(st.just(b"content-length"), st.sampled_from(
        [b"0", b"5", b"64", b"65", b"100000", b"-1", b"abc", b" 7", b""])),
    st.tuples(st.just(b"host"), st.just(b"test")),
)


@st.composite
def _requests(draw: st.DrawFn) -> tuple[Scope, list[Message], str | None]:
    headers = draw(st.lists(_header, max_size=7))
    body = draw(st.binary(max_size=LIMIT * 2))
    cuts = sorted(draw(st.lists(st.integers(0, len(body)), max_size=3)))
    pieces = [body[a:b] for a, b in zip([0, *cuts], [*cuts, len(body)], strict=True)]
    messages: list[Message] = [
        {"type": "http.request", "body": piece, "more_body": i < len(pieces) - 1}
        for i, piece in enumerate(pieces)]
    if draw(st.booleans()) and len(messages) > 1:  # the client goes away mid-body
        messages = messages[: draw(st.integers(0, len(messages) - 1))]
    method = draw(st.sampled_from(["POST", "POST", "GET", "PUT"]))
    query = draw(st.sampled_from([b"", b"format=png", b"a=1&a=2"]))
    scope = {"type": "http", "method": method, "path": PATH, "headers": headers,
             "query_string": query, "app": _App()}
    client_id = None
    for name, value in headers:
        if name == b"x-request-id":
            text = value.decode("latin-1")
            if re.fullmatch(r"[A-Za-z0-9._-]{1,64}", text):
                client_id = text
    return scope, messages, client_id


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_requests())
async def test_fast_edge_answers_as_the_general_edge(
        request_: tuple[Scope, list[Message], str | None]) -> None:
    scope, messages, client_id = request_
    slow, fast, m_general, m_fast = _edges()
    sent_general, error_general = await _serve(slow, scope, messages)
    sent_fast, error_fast = await _serve(fast, scope, messages)
    assert error_fast == error_general
    assert _normalised(sent_fast, client_id) == _normalised(sent_general, client_id)
    counts = _latency_counts(m_fast)
    assert counts == _latency_counts(m_general)
    assert len(counts) == 1  # every request is counted once, answered or not
    assert request_id_var.get() is None  # both reset it


@pytest.mark.parametrize("declared", [None, b"10"])
async def test_a_normal_request_is_answered_with_its_length_and_id(
        declared: bytes | None) -> None:
    """Not only equal to the general edge, but right: one answer, its length, the id."""
    _, fast, _, metrics = _edges()
    headers = [(b"x-request-id", b"gate-7")] + (
        [(b"content-length", declared)] if declared else [])
    scope = {"type": "http", "method": "POST", "path": PATH, "headers": headers,
             "query_string": b"", "app": _App()}
    sent, error = await _serve(fast, scope, [
        {"type": "http.request", "body": b"01234", "more_body": True},
        {"type": "http.request", "body": b"56789", "more_body": False}])
    assert error == ""
    start, body = sent
    assert start["status"] == 201
    assert dict(start["headers"])[b"content-length"] == str(len(body["body"])).encode()
    assert dict(start["headers"])[b"x-request-id"] == b"gate-7"
    assert json.loads(body["body"])["body"] == "0123456789"
    assert ('suishen_request_duration_seconds_count{method="POST",'
            'route="/v1/fast",status="201"} 1.0') in generate_latest(metrics.registry).decode()


async def test_a_streamed_body_over_the_limit_is_413_and_never_reaches_the_endpoint() -> None:
    _, fast, _, _ = _edges()
    scope = {"type": "http", "method": "POST", "path": PATH, "headers": [],
             "query_string": b"", "app": _App()}
    sent, _ = await _serve(fast, scope, [
        {"type": "http.request", "body": b"x" * 40, "more_body": True},
        {"type": "http.request", "body": b"x" * 40, "more_body": False}])
    assert sent[0]["status"] == 413
    assert dict(sent[0]["headers"])[b"content-type"] == b"application/problem+json"
    assert b"x-echo" not in dict(sent[0]["headers"])
