"""Structured JSON logs with request ids, Prometheus metrics, and the one ASGI
middleware that every request passes (request id, body-size limit, latency).

The middleware is plain ASGI (no ``BaseHTTPMiddleware``): it adds a few microseconds,
not a task per request, because ``POST /v1/verify`` runs under a tight budget.
"""

from __future__ import annotations

import asyncio
import contextvars
import json
import logging
import os
import re
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from suishen.app.problems import from_exception, problem_response
from suishen.errors import BodyTooLarge

request_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "request_id", default=None
)
_VALID_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, request id, extras."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": round(record.created, 3),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        rid = request_id_var.get()
        if rid:
            out["request_id"] = rid
        for key in ("event", "status", "path", "method", "duration_ms", "client_id"):
            if hasattr(record, key):
                out[key] = getattr(record, key)
        if record.exc_info:
            # The trace goes to the log (operators), never to a client.
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, ensure_ascii=False)


def configure_logging(level: str) -> None:
    """JSON logs on stderr for the ``suishen`` and ``uvicorn`` loggers."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    for name in ("suishen", "uvicorn", "uvicorn.error", "uvicorn.access"):
        logger = logging.getLogger(name)
        logger.handlers[:] = [handler]
        logger.propagate = False
        logger.setLevel(level.upper())


class Metrics:
    """The service's Prometheus metrics, on a registry of their own (no globals)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.verifications = Counter(
            "suishen_verifications", "Verification decisions", ["scene", "reason"], registry=r
        )
        self.codes_issued = Counter("suishen_codes_issued", "Personal codes issued", registry=r)
        self.requests = Histogram(
            "suishen_request_duration_seconds",
            "Request latency by route",
            ["route", "method", "status"],
            buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 2.5),
            registry=r,
        )
        self.backend_errors = Counter(
            "suishen_backend_errors", "Storage backend failures", ["backend", "operation"],
            registry=r,
        )
        self.audit_queue = Gauge("suishen_audit_queue_depth", "Audit records waiting",
                                 registry=r, multiprocess_mode="livesum")
        self.audit_written = Counter("suishen_audit_written", "Audit records stored", registry=r)
        self.audit_dropped = Counter(
            "suishen_audit_dropped", "Audit records dropped (queue full)", registry=r
        )
        self.audit_dead_letter = Counter(
            "suishen_audit_dead_letter",
            "Audit records the database refused for their content, set aside", registry=r,
        )
        self.journeys_written = Counter("suishen_journeys_written",
                                        "Journey records stored", registry=r)
        self.journeys_dropped = Counter(
            "suishen_journeys_dropped", "Journey records dropped (queue full)", registry=r,
        )
        self.journeys_dead_letter = Counter(
            "suishen_journeys_dead_letter",
            "Journey records the database refused for their content, set aside", registry=r,
        )
        self.checkins = Counter("suishen_checkins", "Check-ins accepted", registry=r)
        self.checkins_written = Counter("suishen_checkins_written", "Check-ins stored",
                                        registry=r)
        self.checkins_dropped = Counter(
            "suishen_checkins_dropped", "Check-ins dropped (queue full)", registry=r,
        )
        self.checkins_dead_letter = Counter(
            "suishen_checkins_dead_letter",
            "Check-ins the database refused for their content (logged without the citizen)",
            registry=r,
        )
        self.gate_events = Counter(
            "suishen_gate_events", "Offline gate decisions uploaded, by outcome "
            "(accepted, duplicate, duplicate_use, ignored, error)", ["outcome"], registry=r,
        )
        self.journey_conflicts = Counter(
            "suishen_journey_conflicts",
            "Journey taps decided again because another tap changed the entry first",
            registry=r,
        )
        self.audit_oldest_age = Gauge(
            "suishen_audit_oldest_age_seconds", "Age of the oldest queued audit record",
            registry=r, multiprocess_mode="livemax",
        )
        # No partner client ids in label values (issue 8 item 6): a total only.
        self.rate_limited = Counter(
            "suishen_rate_limited", "Requests refused by rate limits", registry=r
        )
        self.pool = Gauge("suishen_db_pool_connections", "Database pool connections",
                          ["state"], registry=r, multiprocess_mode="livesum")
        self.events = Counter("suishen_events_applied", "Change-feed events applied",
                              ["kind"], registry=r)
        self.trust_pruned = Counter(
            "suishen_trust_pruned_rows",
            "Ended credential rows and old trust versions (with flips) pruned", registry=r,
        )
        self.trust_prune_duration = Histogram(
            "suishen_trust_prune_duration_seconds", "Duration of one trust prune round",
            buckets=(0.001, 0.01, 0.1, 0.5, 1.0, 5.0, 30.0), registry=r,
        )
        # 1 for the client that serves single use and rate limits with Redis state: "fast"
        # (app/storage/redis_fast.py) or "redis-py" (a URL the fast client does not
        # support). Alert on client="redis-py": the hot path costs several times more CPU.
        self.redis_hot_path_client = Gauge(
            "suishen_redis_hot_path_client",
            "Redis client serving single use and rate limits (1 = in use)", ["client"],
            registry=r, multiprocess_mode="livemax",
        )


class _AuditQueue(Protocol):
    @property
    def pending(self) -> int: ...

    def health(self) -> str: ...


class PeriodicTask:
    """Runs ``job`` now and then every ``interval`` seconds, in a task of its own, until
    :meth:`close`; a failing round is logged and the next one runs (background work of
    the Runtime: gauges, trust pruning)."""

    def __init__(self, name: str, job: Callable[[], Awaitable[object]], interval: float) -> None:
        self._name = name
        self._job = job
        self._interval = interval
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Start the rounds."""
        self._task = asyncio.create_task(self._loop(), name=self._name)

    async def close(self) -> None:
        """Stop them (a round in progress is cancelled)."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def _loop(self) -> None:
        while True:
            try:
                await self._job()
            except Exception:  # never let one round stop the loop; it is logged
                logging.getLogger("suishen.background").exception("%s failed", self._name)
            await asyncio.sleep(self._interval)


class GaugeLoop:
    """Sets the gauges read at scrape time, once a second. The scrape is served by
    another listener, possibly another process, so each worker refreshes its own:
    audit queue depth and oldest age (``audit.health()`` sets the latter), and the
    database pool when the backend reports ``pool_stats()``."""

    def __init__(self, metrics: Metrics, *, audit: _AuditQueue, db: object,
                 interval: float = 1.0) -> None:
        self._metrics = metrics
        self._audit = audit
        self._db = db
        self._periodic = PeriodicTask("metrics-gauges", self._update, interval)

    async def _update(self) -> None:
        self.update()

    def update(self) -> None:
        """Set every gauge now."""
        self._metrics.audit_queue.set(self._audit.pending)
        self._audit.health()
        stats = getattr(self._db, "pool_stats", None)
        if callable(stats):
            for state, value in stats().items():
                self._metrics.pool.labels(state).set(value)

    def start(self) -> None:
        """Update the gauges every ``interval`` seconds until :meth:`close`."""
        self._periodic.start()

    async def close(self) -> None:
        """Stop updating."""
        await self._periodic.close()




class FastRequest:
    """What a fast-lane endpoint gets (see :meth:`EdgeMiddleware.fast`): the runtime,
    the ASGI scope (method, query string), the first ``Authorization`` and
    ``Content-Type`` headers, and the whole body, read within the body-size limit. The
    request id is in :data:`request_id_var`, as on every route."""

    __slots__ = ("authorization", "body", "content_type", "runtime", "scope")

    def __init__(self, runtime: Any, scope: Scope, authorization: str | None,
                 content_type: str | None, body: bytes) -> None:
        self.runtime = runtime
        self.scope = scope
        self.authorization = authorization
        self.content_type = content_type
        self.body = body


#: A fast-lane answer: status, body, and headers (the content type included; the lane
#: adds ``content-length`` and ``x-request-id``).
Answer = tuple[int, bytes, Sequence[tuple[bytes, bytes]]]
FastEndpoint = Callable[[FastRequest], Awaitable[Answer]]


def response_answer(response: Response) -> Answer:
    """A complete Starlette response (a problem, say) in fast-lane form."""
    return response.status_code, bytes(response.body), [
        h for h in response.raw_headers if h[0] != b"content-length"]


def problem_answer(exc: BaseException) -> Answer:
    """The problem+json answer for ``exc`` (:func:`~suishen.app.problems.from_exception`,
    the one mapping) in fast-lane form."""
    return response_answer(from_exception(exc))


class EdgeMiddleware:
    """Request id (``X-Request-ID``), body-size limit (413) and latency metrics.

    The same edge serves the fast lane (:meth:`fast`), without wrapping ``send`` and
    ``receive``; both share every rule below, and ``tests/api/test_fast_edge.py`` runs
    the same requests through both and compares the answers and the metrics."""

    def __init__(self, app: ASGIApp, *, max_body_bytes: int, metrics: Metrics,
                 access_log: bool = False, route: str | None = None,
                 path_limits: dict[str, int] | None = None) -> None:
        self.app = app
        self.route = route  # a fixed route label (the fast lane), else the matched route
        self.max_body = max_body_bytes
        # Larger limits for a few paths (offline gate uploads: up to 1,000 entries; device
        # registration: a whole batch of keys). A ``{name}`` segment matches one segment.
        self.path_limits = {p: n for p, n in (path_limits or {}).items() if "{" not in p}
        self._templated = [
            (re.compile("^" + re.sub(r"\\\{[^/]+?\\\}", "[^/]+", re.escape(p)) + "$"), n)
            for p, n in (path_limits or {}).items() if "{" in p
        ]
        self.metrics = metrics
        self.access_log = access_log
        self.log = logging.getLogger("suishen.access")
        self._prefix = os.urandom(4).hex()
        self._counter = 0
        # Looked up once: the latency histogram's children by (route, method, status), as
        # labels() keeps them anyway, and the body limits of the paths seen (bounded: a
        # path is the client's choice).
        self._observers: dict[tuple[Any, Any, Any], Callable[[float], None]] = {}
        self._limits: dict[str, int] = {}

    def _limit_for(self, path: str) -> int:
        """The body limit of ``path``: its own (exact, then templated) or the default."""
        limit = self._limits.get(path)
        if limit is None:
            limit = self._find_limit(path)
            if len(self._limits) < _MAX_CACHED_PATHS:
                self._limits[path] = limit
        return limit

    def _find_limit(self, path: str) -> int:
        exact = self.path_limits.get(path)
        if exact is not None:
            return exact
        for pattern, limit in self._templated:
            if pattern.match(path):
                return limit
        return self.max_body

    def _new_id(self) -> str:
        self._counter += 1
        return f"{self._prefix}-{self._counter:x}"

    @staticmethod
    def _client_id(value: bytes) -> str | None:
        """The client's ``X-Request-ID`` when it is a valid one (else one is made)."""
        candidate = value.decode("latin-1")
        return candidate if _VALID_REQUEST_ID.match(candidate) else None

    @staticmethod
    def _declared_problem(length: bytes, limit: int) -> Response | None:
        """The answer a declared ``Content-Length`` gets before the app runs: 413 over
        the limit, 400 when it is not a length; None when it is fine."""
        try:
            declared = int(length)
        except ValueError:
            declared = -1
        if declared > limit:
            return from_exception(BodyTooLarge(f"request body larger than {limit} bytes"))
        if declared < 0:  # HTTP framing, not a domain error
            return problem_response(400, "invalid Content-Length")
        return None

    def _done(self, path: str, method: str, status: int, started: float) -> None:
        """Latency metric and access line of a finished request."""
        elapsed = time.perf_counter() - started
        key = (path, method, status)
        observe = self._observers.get(key)
        if observe is None:
            observe = self._observers[key] = self.metrics.requests.labels(
                path, method, str(status)).observe
        observe(elapsed)
        if self.access_log:
            self.log.info("request", extra={"path": path, "method": method, "status": status,
                                            "duration_ms": round(elapsed * 1000, 3)})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        rid = None
        length = None
        for name, value in scope["headers"]:
            if name == b"x-request-id":
                rid = self._client_id(value) or rid
            elif name == b"content-length":
                length = value
        rid = rid or self._new_id()
        token = request_id_var.set(rid)
        status_holder: list[Any] = [500, False]  # status, response started
        rid_header = (b"x-request-id", rid.encode("ascii"))

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                status_holder[0] = message["status"]
                status_holder[1] = True
                message["headers"] = [*message.get("headers", []), rid_header]
            await send(message)

        limit = self._limit_for(scope.get("path", ""))
        try:
            if length is not None:
                problem = self._declared_problem(length, limit)
                if problem is not None:
                    await problem(scope, receive, send_wrapper)
                    return
                await self.app(scope, receive, send_wrapper)
            else:
                await self.app(scope, self._limited(receive, limit), send_wrapper)
        except BodyTooLarge as exc:
            if not status_holder[1]:
                await from_exception(exc)(scope, receive, send_wrapper)
        finally:
            path = self.route or str(getattr(scope.get("route"), "path", "unmatched"))
            self._done(path, scope["method"], status_holder[0], started)
            request_id_var.reset(token)

    def _limited(self, receive: Receive, limit: int) -> Receive:
        seen = 0

        async def wrapped() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise BodyTooLarge(f"request body larger than {limit} bytes")
            return message

        return wrapped

    # --- the fast lane ------------------------------------------------------------------
    def fast(self, endpoint: FastEndpoint, path: str, route: object) -> ASGIApp:
        """An ASGI app serving ``endpoint`` at ``path`` with this edge's rules (request
        id, body limit, latency metric under ``path``, access line), for
        :class:`suishen.app.main.SuishenApp`'s fast lane.

        Why a second entry: wrapping ``send`` and ``receive`` in closures and sending
        through the wrapper cost a verify request 13,000 instructions of the ~290,000
        its own work takes beyond the limit app's (``verify_inproc_bench.py
        --instructions``, issue 13, 2026-12-03). Here the edge reads the
        headers once (the endpoint's too), reads the body within the limit, and sends
        the endpoint's answer itself. The answers are those of :meth:`__call__` around
        the same endpoint: the differential test ``tests/api/test_fast_edge.py`` checks
        status, headers, body and metrics over valid and hostile requests."""
        limit = self._limit_for(path)
        client_id, declared_problem = self._client_id, self._declared_problem

        async def app(scope: Scope, receive: Receive, send: Send) -> None:
            started = time.perf_counter()
            scope["route"] = route
            rid = authorization = content_type = length = None
            for name, value in scope["headers"]:
                if name == b"authorization":
                    if authorization is None:
                        authorization = value.decode("latin-1")
                elif name == b"content-type":
                    if content_type is None:
                        content_type = value.decode("latin-1")
                elif name == b"content-length":
                    length = value
                elif name == b"x-request-id":
                    rid = client_id(value) or rid
            rid = rid or self._new_id()
            token = request_id_var.set(rid)
            status = 500  # what a request that ends without an answer is counted as
            try:
                problem = None if length is None else declared_problem(length, limit)
                if problem is not None:
                    answer: Answer = response_answer(problem)
                else:
                    chunks = []
                    seen = 0
                    more = True
                    while more:
                        message = await receive()
                        if message["type"] == "http.disconnect":
                            return
                        chunk = message.get("body", b"")
                        chunks.append(chunk)
                        seen += len(chunk)
                        if length is None and seen > limit:
                            break
                        more = message.get("more_body", False)
                    if length is None and seen > limit:
                        answer = problem_answer(
                            BodyTooLarge(f"request body larger than {limit} bytes"))
                    else:
                        answer = await endpoint(FastRequest(
                            scope["app"].state.runtime, scope, authorization,
                            content_type, b"".join(chunks)))
                status, body, headers = answer
                await send({"type": "http.response.start", "status": status, "headers": [
                    *headers, (b"content-length", str(len(body)).encode()),
                    (b"x-request-id", rid.encode("ascii"))]})
                await send({"type": "http.response.body", "body": body})
            finally:
                self._done(path, scope["method"], status, started)
                request_id_var.reset(token)

        return app


_MAX_CACHED_PATHS = 256


def verification_counts(metrics: Metrics) -> dict[tuple[str, str], int]:
    """Verification decisions so far by ``(scene, reason)``: of every worker when
    prometheus-client's multiprocess mode is on (``suishen serve`` with a metrics port),
    else of this process. Read by the operator console's live panel
    (``GET /v1/admin/stats``), which turns two readings into a rate."""
    counts: dict[tuple[str, str], int] = {}
    families: Any
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client.multiprocess import MultiProcessCollector

        registry = CollectorRegistry()
        MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        families = registry.collect()
    else:
        families = metrics.verifications.collect()
    for family in families:
        if family.name != "suishen_verifications":
            continue
        for sample in family.samples:
            if sample.name.endswith("_total"):
                key = (sample.labels.get("scene", ""), sample.labels.get("reason", ""))
                counts[key] = counts.get(key, 0) + int(sample.value)
    return counts
