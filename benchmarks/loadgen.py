"""A small, fast HTTP/1.1 load generator: one process, asyncio (uvloop when installed).

httpx spends more CPU per request than the service under test does, so a benchmark
driven by it measures the client. This generator speaks HTTP/1.1 keep-alive over raw
sockets with :class:`asyncio.Protocol` callbacks: a request is pre-built bytes, a
response is parsed just enough (status line, ``Content-Length`` or chunked body,
``Connection: close``), and the next request is written from inside ``data_received`` —
no coroutine, no future, no header dictionary per request.

Two modes:

* **closed loop** (:func:`run_closed`): ``connections`` connections each keep exactly one
  request in flight, for a duration or a number of requests: the maximum throughput
  (saturation) of the server;
* **open loop** (:func:`run_open`): requests are *scheduled* at a fixed rate whatever the
  server does, over a pool of connections (a request waits for a free connection when all
  are busy — that wait shows in the scheduled latency). Use it for "p99 at half of
  saturation".

Latencies are measured from the moment the request is written (``latency``) and, in the
open loop, also from the moment it was scheduled (``scheduled``: corrected for
coordinated omission, includes any wait for a free connection or a late timer).

Library use::

    req = build_request("POST", "/v1/verify", "127.0.0.1:8000",
                        {"Authorization": "Bearer ..."}, {"code": "SC1:...", "scene": "library"})
    result = run(run_closed("127.0.0.1", 8000, [req], connections=32, duration=10))
    print(result.summary())

Command line (a quick ``wrk``-like tool)::

    .venv/bin/python benchmarks/loadgen.py http://127.0.0.1:8000/healthz -c 32 -d 5
    .venv/bin/python benchmarks/loadgen.py http://127.0.0.1:8000/v1/verify -m POST \\
        -H "Authorization: Bearer ..." --json '{"code": "SC1:...", "scene": "library"}' \\
        --rate 1000 -d 10
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import math
import sys
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar, cast
from urllib.parse import urlsplit

T = TypeVar("T")
_CRLF2 = b"\r\n\r\n"
MAX_HEADER_BYTES = 64 * 1024


# --- requests -----------------------------------------------------------------------


def build_request(
    method: str,
    path: str,
    host: str,
    headers: Mapping[str, str] | None = None,
    body: bytes | str | Mapping[str, Any] | Sequence[Any] | None = None,
    *,
    content_type: str | None = None,
) -> bytes:
    """The bytes of one HTTP/1.1 keep-alive request.

    ``body`` may be bytes, text, or a JSON-able object (sent as compact JSON with
    ``Content-Type: application/json`` unless ``content_type`` says otherwise).
    """
    raw: bytes
    if body is None:
        raw = b""
    elif isinstance(body, bytes):
        raw = body
    elif isinstance(body, str):
        raw = body.encode("utf-8")
    else:
        raw = json.dumps(body, separators=(",", ":")).encode("utf-8")
        content_type = content_type or "application/json"
    lines = [f"{method.upper()} {path} HTTP/1.1", f"Host: {host}"]
    given = {k.lower() for k in (headers or {})}
    for name, value in (headers or {}).items():
        if "\r" in value or "\n" in value or "\r" in name or "\n" in name:
            raise ValueError(f"header {name!r} contains a line break")
        lines.append(f"{name}: {value}")
    if content_type and "content-type" not in given:
        lines.append(f"Content-Type: {content_type}")
    if raw or method.upper() in {"POST", "PUT", "PATCH"}:
        lines.append(f"Content-Length: {len(raw)}")
    lines.append("")
    lines.append("")
    return "\r\n".join(lines).encode("latin-1") + raw


# --- results ------------------------------------------------------------------------


@dataclass
class Result:
    """What one run measured. Latencies are in seconds, sorted ascending."""

    mode: str
    connections: int
    elapsed: float
    completed: int = 0
    statuses: collections.Counter[int] = field(default_factory=collections.Counter)
    errors: int = 0  # connection failures, timeouts, unparsable responses
    body_mismatches: int = 0  # 2xx answers without the expected substring
    latencies: list[float] = field(default_factory=list)
    scheduled: list[float] = field(default_factory=list)  # open loop only
    bodies: list[bytes] = field(default_factory=list)  # 2xx bodies when kept
    target_rate: float | None = None
    exhausted: bool = False  # a once-only request list ran out before the deadline
    max_queue: int = 0  # open loop: most requests waiting for a free connection
    error_samples: list[str] = field(default_factory=list)

    @property
    def throughput(self) -> float:
        """Completed requests (any status) per second."""
        return self.completed / self.elapsed if self.elapsed > 0 else 0.0

    @property
    def ok(self) -> int:
        """2xx answers."""
        return sum(n for status, n in self.statuses.items() if 200 <= status < 300)

    @property
    def non_2xx(self) -> int:
        """Answers with a status outside 2xx."""
        return self.completed - self.ok

    def percentile(self, p: float, *, scheduled: bool = False) -> float:
        """The ``p``-th percentile (0..100, nearest rank) in seconds; NaN when empty."""
        data = self.scheduled if scheduled else self.latencies
        if not data:
            return math.nan
        rank = max(1, math.ceil(p / 100 * len(data)))
        return data[min(rank, len(data)) - 1]

    @property
    def p50(self) -> float:
        return self.percentile(50)

    @property
    def p90(self) -> float:
        return self.percentile(90)

    @property
    def p99(self) -> float:
        return self.percentile(99)

    @property
    def max(self) -> float:
        return self.latencies[-1] if self.latencies else math.nan

    def summary(self) -> str:
        """One human line."""
        ms = 1000.0
        text = (
            f"{self.mode}: {self.completed} req in {self.elapsed:.2f}s = "
            f"{self.throughput:,.0f} req/s; p50 {self.p50 * ms:.2f} ms, "
            f"p90 {self.p90 * ms:.2f} ms, p99 {self.p99 * ms:.2f} ms, "
            f"max {self.max * ms:.2f} ms; non-2xx {self.non_2xx}, errors {self.errors}"
        )
        if self.scheduled:
            text += f"; scheduled p99 {self.percentile(99, scheduled=True) * ms:.2f} ms"
        if self.body_mismatches:
            text += f"; unexpected bodies {self.body_mismatches}"
        if self.exhausted:
            text += "; request list exhausted"
        return text

    @classmethod
    def pooled(cls, results: Sequence[Result]) -> Result:
        """One result of several runs of the same kind, as if they were one run: counts
        summed, elapsed times added, latencies merged (so its p99 is the p99 of every
        request of every run, not an average of p99s)."""
        if not results:
            raise ValueError("no results to pool")
        first = results[0]
        out = cls(mode=first.mode, connections=first.connections,
                  elapsed=sum(r.elapsed for r in results), target_rate=first.target_rate)
        for r in results:
            out.completed += r.completed
            out.statuses.update(r.statuses)
            out.errors += r.errors
            out.body_mismatches += r.body_mismatches
            out.exhausted = out.exhausted or r.exhausted
            out.max_queue = max(out.max_queue, r.max_queue)
            out.error_samples += r.error_samples[:5]
        out.latencies = sorted(x for r in results for x in r.latencies)
        out.scheduled = sorted(x for r in results for x in r.scheduled)
        return out

    def as_dict(self) -> dict[str, Any]:
        """JSON-friendly figures (milliseconds)."""
        ms = 1000.0
        return {
            "mode": self.mode,
            "connections": self.connections,
            "elapsed_s": round(self.elapsed, 3),
            "completed": self.completed,
            "throughput": round(self.throughput, 1),
            "target_rate": self.target_rate,
            "p50_ms": round(self.p50 * ms, 3),
            "p90_ms": round(self.p90 * ms, 3),
            "p99_ms": round(self.p99 * ms, 3),
            "max_ms": round(self.max * ms, 3),
            "scheduled_p99_ms": (
                round(self.percentile(99, scheduled=True) * ms, 3) if self.scheduled else None
            ),
            "statuses": dict(self.statuses),
            "errors": self.errors,
            "body_mismatches": self.body_mismatches,
            "exhausted": self.exhausted,
        }


# --- the engine ---------------------------------------------------------------------


class _Run:
    """Shared state of one run: request source, recording, completion."""

    def __init__(
        self,
        requests: Sequence[bytes],
        *,
        once: bool,
        expect: bytes | None,
        keep_bodies: bool,
        result: Result,
        total: int | None,
    ) -> None:
        if not requests:
            raise ValueError("no requests to send")
        self.requests = requests
        self.n_requests = len(requests)
        self.once = once
        self.expect = expect
        self.keep_bodies = keep_bodies
        self.result = result
        self.next_index = 0
        self.limit = min(total, len(requests)) if once and total else (
            len(requests) if once else total
        )
        self.sending = True
        self.in_flight = 0
        self.idle_event: asyncio.Event | None = None
        # Open loop: requests waiting for a free connection, as (bytes, scheduled_at).
        self.queue: collections.deque[tuple[bytes, float]] = collections.deque()
        self.idle: list[_Connection] = []

    def take(self) -> bytes | None:
        """The next request, or None when the run has no more to send."""
        if not self.sending:
            return None
        i = self.next_index
        if self.limit is not None and i >= self.limit:
            if self.once and self.limit == self.n_requests:
                self.result.exhausted = True
            self.sending = False
            return None
        self.next_index = i + 1
        return self.requests[i % self.n_requests]

    def record(self, status: int, body: bytes, sent: float, scheduled: float | None,
               done: float) -> None:
        result = self.result
        result.completed += 1
        result.statuses[status] += 1
        result.latencies.append(done - sent)
        if scheduled is not None:
            result.scheduled.append(done - scheduled)
        if 200 <= status < 300:
            if self.expect is not None and self.expect not in body:
                result.body_mismatches += 1
            if self.keep_bodies:
                result.bodies.append(body)

    def error(self, what: str) -> None:
        self.result.errors += 1
        if len(self.result.error_samples) < 5:
            self.result.error_samples.append(what)

    def finished_one(self) -> None:
        self.in_flight -= 1
        if self.in_flight == 0 and not self.sending and self.idle_event is not None:
            self.idle_event.set()


class _Connection(asyncio.Protocol):
    """One keep-alive connection with at most one request in flight."""

    def __init__(self, run: _Run, closed_loop: bool) -> None:
        self.run = run
        self.closed_loop = closed_loop
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.busy = False
        self.sent_at = 0.0
        self.scheduled_at: float | None = None
        self.header_end = -1
        self.status = 0
        self.need = -1  # total bytes of the response once the header is parsed; -2 chunked
        self.must_close = False
        self.lost: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.broken = False

    # asyncio.Protocol -------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def connection_lost(self, exc: Exception | None) -> None:
        self.broken = True
        if self.busy:
            self.busy = False
            self.run.error(f"connection lost mid-request: {exc!r}")
            self.run.finished_one()
        if not self.lost.done():
            self.lost.set_result(None)

    def data_received(self, data: bytes) -> None:
        if not self.busy:
            self.run.error("unsolicited bytes from the server")
            self._abort()
            return
        buf = self.buf
        buf += data
        if self.need == -1:
            end = buf.find(_CRLF2)
            if end < 0:
                if len(buf) > MAX_HEADER_BYTES:
                    self._fail("response header too large")
                return
            if not self._parse_header(bytes(buf[:end]), end + 4):
                return
        if self.need == -2:
            body = self._dechunk()
            if body is None:
                return
        else:
            if len(buf) < self.need:
                return
            if len(buf) > self.need:
                self._fail("bytes after the response (pipelining is not used)")
                return
            body = bytes(buf[self.header_end :])
        self._complete(body)

    # parsing ----------------------------------------------------------------------
    def _parse_header(self, head: bytes, header_end: int) -> bool:
        if not head.startswith(b"HTTP/1."):
            self._fail(f"not an HTTP/1.x response: {head[:40]!r}")
            return False
        try:
            self.status = int(head[9:12])
        except ValueError:
            self._fail(f"bad status line: {head[:40]!r}")
            return False
        self.header_end = header_end
        length = -1
        chunked = False
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            lname = name.strip().lower()
            if lname == b"content-length":
                try:
                    length = int(value.strip())
                except ValueError:
                    self._fail("bad Content-Length")
                    return False
            elif lname == b"transfer-encoding":
                chunked = b"chunked" in value.lower()
            elif lname == b"connection":
                self.must_close = b"close" in value.lower()
        if chunked:
            self.need = -2
        elif length >= 0:
            self.need = header_end + length
        elif self.status in (204, 304) or 100 <= self.status < 200:
            self.need = header_end
        else:
            self._fail("response without Content-Length or chunked encoding")
            return False
        return True

    def _dechunk(self) -> bytes | None:
        buf = self.buf
        pos = self.header_end
        out = bytearray()
        while True:
            eol = buf.find(b"\r\n", pos)
            if eol < 0:
                return None
            try:
                size = int(bytes(buf[pos:eol]).split(b";")[0], 16)
            except ValueError:
                self._fail("bad chunk size")
                return None
            start = eol + 2
            if size == 0:
                if buf.find(_CRLF2, eol) < 0:  # trailers (if any) end with an empty line
                    return None
                return bytes(out)
            if len(buf) < start + size + 2:
                return None
            out += buf[start : start + size]
            pos = start + size + 2

    # request cycle ----------------------------------------------------------------
    def send(self, request: bytes, scheduled: float | None) -> None:
        self.busy = True
        self.scheduled_at = scheduled
        self.need = -1
        self.buf.clear()
        self.run.in_flight += 1
        self.sent_at = time.perf_counter()
        assert self.transport is not None
        self.transport.write(request)

    def _complete(self, body: bytes) -> None:
        done = time.perf_counter()
        run = self.run
        self.busy = False
        run.record(self.status, body, self.sent_at, self.scheduled_at, done)
        run.finished_one()
        if self.must_close:
            self._abort()
            return
        self.next()

    def next(self) -> None:
        """Send the next request (closed loop) or take a queued one (open loop)."""
        run = self.run
        if self.broken:
            return
        if self.closed_loop:
            request = run.take()
            if request is not None:
                self.send(request, None)
            return
        if run.queue:
            request, scheduled = run.queue.popleft()
            self.send(request, scheduled)
        else:
            run.idle.append(self)

    def _fail(self, what: str) -> None:
        self.run.error(what)
        if self.busy:
            self.busy = False
            self.run.finished_one()
        self._abort()

    def _abort(self) -> None:
        self.broken = True
        if self.transport is not None:
            self.transport.close()


async def _connect(host: str, port: int, run: _Run, closed_loop: bool) -> _Connection:
    loop = asyncio.get_running_loop()
    _, protocol = await loop.create_connection(
        lambda: _Connection(run, closed_loop), host, port
    )
    return protocol


async def _supervise(
    host: str, port: int, run: _Run, closed_loop: bool, *, connections: int,
    stop: asyncio.Event,
) -> list[_Connection]:
    """Open the connections; replace any that break while the run is sending."""
    conns = [await _connect(host, port, run, closed_loop) for _ in range(connections)]

    async def keeper(slot: int) -> None:
        while not stop.is_set():
            conn = conns[slot]
            await conn.lost
            if stop.is_set() or not run.sending:
                return
            await asyncio.sleep(0.01)
            try:
                fresh = await _connect(host, port, run, closed_loop)
            except OSError as exc:
                run.error(f"reconnect failed: {exc!r}")
                continue
            conns[slot] = fresh
            if run in _ACTIVE:
                fresh.next()

    for slot in range(connections):
        task = asyncio.ensure_future(keeper(slot))
        _KEEPERS.add(task)
        task.add_done_callback(_KEEPERS.discard)
    return conns


_KEEPERS: set[asyncio.Future[None]] = set()
_ACTIVE: set[_Run] = set()


async def _drain(run: _Run, grace: float) -> None:
    """Wait for in-flight requests after sending stopped; count stragglers as errors."""
    if run.in_flight == 0:
        return
    run.idle_event = asyncio.Event()
    try:
        await asyncio.wait_for(run.idle_event.wait(), timeout=grace)
    except TimeoutError:
        for _ in range(run.in_flight):
            run.error(f"no answer within {grace}s after the run")
        run.in_flight = 0


async def run_closed(
    host: str,
    port: int,
    requests: Sequence[bytes],
    *,
    connections: int = 32,
    duration: float | None = None,
    total: int | None = None,
    once: bool = False,
    expect: bytes | None = None,
    keep_bodies: bool = False,
    grace: float = 10.0,
) -> Result:
    """Closed loop: every connection keeps one request in flight.

    Stops after ``duration`` seconds, after ``total`` requests, or — with ``once`` —
    when every request of the list has been sent once (each request used at most once:
    single-use codes). ``expect`` counts 2xx bodies that lack the substring.
    """
    if duration is None and total is None and not once:
        raise ValueError("give a duration, a total or once=True")
    result = Result(mode="closed", connections=connections, elapsed=0.0)
    run = _Run(requests, once=once, expect=expect, keep_bodies=keep_bodies, result=result,
               total=total)
    stop = asyncio.Event()
    conns = await _supervise(host, port, run, True, connections=connections, stop=stop)
    _ACTIVE.add(run)
    run.idle_event = asyncio.Event()
    start = time.perf_counter()
    try:
        for conn in conns:
            conn.next()
        if duration is not None:
            deadline = start + duration
            while run.sending and time.perf_counter() < deadline:
                await asyncio.sleep(min(0.05, max(0.0, deadline - time.perf_counter())))
            run.sending = False
        else:
            while run.sending or run.in_flight:
                await asyncio.sleep(0.02)
        await _drain(run, grace)
        result.elapsed = time.perf_counter() - start
    finally:
        _ACTIVE.discard(run)
        stop.set()
        for conn in conns:
            conn._abort()
    result.latencies.sort()
    return result


# libuv (uvloop) timers count whole milliseconds: a shorter sleep is a zero-delay timer,
# and above 1,000 requests/s the open loop spun a core on them (measured: 125,000
# wake-ups/s, 71 % of a CPU) that the machine's other processes, the server's
# neighbours, then lacked. Requests that fall due within a wake-up are sent together,
# each with its own scheduled time, so lateness still shows in the scheduled latencies.
_TIMER_RESOLUTION = 0.001


async def run_open(
    host: str,
    port: int,
    requests: Sequence[bytes],
    *,
    rate: float,
    duration: float,
    connections: int = 32,
    once: bool = False,
    expect: bytes | None = None,
    grace: float = 10.0,
) -> Result:
    """Open loop: request ``i`` is due at ``start + i / rate`` whatever the server does.

    A due request goes to an idle connection, or waits in a queue for the next one to
    free up (the wait counts in the *scheduled* latencies, not in ``latencies``).
    """
    if rate <= 0:
        raise ValueError("rate must be positive")
    result = Result(mode="open", connections=connections, elapsed=0.0, target_rate=rate)
    run = _Run(requests, once=once, expect=expect, keep_bodies=False, result=result,
               total=None)
    stop = asyncio.Event()
    conns = await _supervise(host, port, run, False, connections=connections, stop=stop)
    run.idle = list(conns)
    _ACTIVE.add(run)
    interval = 1.0 / rate
    start = time.perf_counter()
    end = start + duration
    sent = 0
    try:
        while True:
            now = time.perf_counter()
            due = min(int((now - start) * rate) + 1, int(duration * rate))
            while sent < due:
                request = run.take()
                if request is None:
                    break
                scheduled = start + sent * interval
                sent += 1
                conn = None
                while run.idle:
                    candidate = run.idle.pop()
                    if not candidate.broken:
                        conn = candidate
                        break
                if conn is not None:
                    conn.send(request, scheduled)
                else:
                    run.queue.append((request, scheduled))
                    result.max_queue = max(result.max_queue, len(run.queue))
            if not run.sending or sent >= int(duration * rate) or now >= end:
                break
            next_due = start + sent * interval
            await asyncio.sleep(max(_TIMER_RESOLUTION, next_due - time.perf_counter()))
        run.sending = False
        # Queued requests still go out as connections free up; wait for all of them.
        deadline = time.perf_counter() + grace
        while (run.queue or run.in_flight) and time.perf_counter() < deadline:
            await asyncio.sleep(0.005)
        for _ in range(len(run.queue) + run.in_flight):
            run.error(f"no answer within {grace}s after the run")
        result.elapsed = time.perf_counter() - start
    finally:
        _ACTIVE.discard(run)
        stop.set()
        for conn in conns:
            conn._abort()
    result.latencies.sort()
    result.scheduled.sort()
    return result


def run(coro: Awaitable[T]) -> T:
    """Run a coroutine on uvloop when it is installed, else on the default loop."""
    async def main() -> T:
        return await coro

    try:
        import uvloop
    except ImportError:
        return asyncio.run(main())
    return uvloop.run(main())


# --- command line -------------------------------------------------------------------


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("url", help="http://host:port/path")
    parser.add_argument("-m", "--method", default="GET")
    parser.add_argument("-H", "--header", action="append", default=[],
                        help="'Name: value' (repeatable)")
    parser.add_argument("--json", help="JSON request body")
    parser.add_argument("-c", "--connections", type=int, default=32)
    parser.add_argument("-d", "--duration", type=float, default=10.0)
    parser.add_argument("--rate", type=float, help="open loop at this many requests/s")
    parser.add_argument("--expect", help="count 2xx bodies that lack this substring")
    parser.add_argument("--as-json", action="store_true", help="print the figures as JSON")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse_args(argv)
    url = urlsplit(args.url)
    if url.scheme != "http" or not url.hostname:
        print("only http://host[:port]/path URLs", file=sys.stderr)
        return 2
    port = url.port or 80
    headers: dict[str, str] = {}
    for item in args.header:
        name, sep, value = item.partition(":")
        if not sep:
            print(f"bad header {item!r}", file=sys.stderr)
            return 2
        headers[name.strip()] = value.strip()
    path = (url.path or "/") + (f"?{url.query}" if url.query else "")
    body = json.loads(args.json) if args.json else None
    request = build_request(args.method, path, f"{url.hostname}:{port}", headers, body)
    expect = args.expect.encode() if args.expect else None
    runner: Callable[[], Awaitable[Result]]
    if args.rate:
        def runner() -> Awaitable[Result]:
            return run_open(url.hostname or "", port, [request], rate=args.rate,
                            duration=args.duration, connections=args.connections,
                            expect=expect)
    else:
        def runner() -> Awaitable[Result]:
            return run_closed(url.hostname or "", port, [request],
                              connections=args.connections, duration=args.duration,
                              expect=expect)
    result = run(runner())
    if args.as_json:
        print(json.dumps(result.as_dict(), indent=2))
    else:
        print(result.summary())
        for sample in result.error_samples:
            print("  error:", sample)
    return 0 if result.errors == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
