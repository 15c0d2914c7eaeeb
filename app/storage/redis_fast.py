"""A lean, pipelined RESP2 client for the two hot-path commands of :class:`RedisState`.

Why: on ``POST /v1/verify`` for single-use scenes every request makes two Redis calls
(``rate_limit``: ``EVALSHA``; ``first_use``: ``SET NX GET EX``). Measured on the metro
verify path (``benchmarks/redis_client_bench.py``, issue 7 item 10), redis-py's asyncio
client costs an order of magnitude more CPU per command than this one, with its hiredis
parser as with the pure-Python one and with a blocking or a non-blocking pool: the cost
is one round trip and one ``send``/``recv`` pair per command on a pooled connection plus
the pool, retry and timeout machinery, not the parsing. This client is one
:class:`asyncio.Protocol` on one connection:

* :meth:`FastRedis.execute` encodes the command, appends it to a write buffer that is
  flushed once per event-loop tick (every command issued in one tick goes out in one
  ``send``), and awaits a future. Replies are parsed by ``hiredis.Reader`` (the C parser
  redis-py uses too) and matched to futures in FIFO order as they arrive (Redis answers
  in order on one connection).
* Bounds: connecting (TCP, TLS + ``AUTH`` + ``SELECT``) is capped by ``connect_timeout``;
  every command by ``timeout`` from the moment it is written — one watchdog timer per
  connection looks at the oldest pending command only (deadlines grow in FIFO order).
* Failure: on any connection error, timeout or protocol error every pending future
  fails with :class:`~suishen.errors.BackendUnavailable` and the connection is dropped;
  the next call reconnects. A server *error reply* is a :class:`ReplyError` (with
  :class:`NoScriptError` for ``NOSCRIPT``) and leaves the connection in use.

URLs: ``redis://[[user]:password@]host[:port][/db]`` and the same with ``rediss://``
(TLS; the system's CAs, or ``?ssl_ca_certs=FILE``; ``?ssl_cert_reqs=none`` turns
verification off, as in redis-py). :func:`parse_url` raises :class:`UnsupportedURL` for
anything else (``unix://``, other options); :class:`RedisState` then uses redis-py for
these commands too and says so loudly (a warning and the
``suishen_redis_hot_path_client`` metric).
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections import deque
from dataclasses import dataclass
from typing import Any, cast
from urllib.parse import parse_qs, unquote, urlsplit

import hiredis

from suishen.errors import BackendUnavailable, ConfigError, StorageError, describe

__all__ = [
    "FastRedis",
    "NoScriptError",
    "ProtocolError",
    "RedisAddress",
    "ReplyError",
    "UnsupportedURL",
    "parse_url",
]

Arg = bytes | str | int | float


class ReplyError(StorageError):
    """Redis answered with an error reply (``-ERR ...``, ``-WRONGTYPE ...``)."""


class NoScriptError(ReplyError):
    """``-NOSCRIPT``: EVALSHA for a script the server does not know (load it)."""


class ProtocolError(StorageError):
    """The server sent something that is not RESP2 (the connection is dropped)."""


class UnsupportedURL(ValueError):
    """A Redis URL this client does not handle (use redis-py for it)."""


@dataclass(frozen=True, slots=True)
class RedisAddress:
    """Where and how to connect. ``repr`` hides the password.

    ``tls``: connect with TLS (``rediss://``), verifying the server's certificate and host
    name against ``ca_file`` (or the system's CAs) unless ``verify`` is False."""

    host: str
    port: int = 6379
    db: int = 0
    username: str | None = None
    password: str | None = None
    tls: bool = False
    ca_file: str | None = None
    verify: bool = True

    def __repr__(self) -> str:
        secret = ", password=***" if self.password is not None else ""
        tls = ", tls" if self.tls else ""
        return f"RedisAddress({self.host!r}, {self.port}, db={self.db}{secret}{tls})"

    def ssl_context(self) -> ssl.SSLContext | None:
        """The TLS context of a ``rediss://`` address (None for plain ``redis://``)."""
        if not self.tls:
            return None
        context = ssl.create_default_context(cafile=self.ca_file)
        if not self.verify:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        return context


# The URL options understood here, with redis-py's meaning (so one URL configures both).
_TLS_OPTIONS = frozenset({"ssl_ca_certs", "ssl_cert_reqs"})


def parse_url(url: str) -> RedisAddress:
    """``redis[s]://[[user]:password@]host[:port][/db][?ssl_ca_certs=F&ssl_cert_reqs=R]``
    → :class:`RedisAddress`.

    :class:`UnsupportedURL` for other schemes (``unix``), other query options, TLS
    options on a ``redis://`` URL, a user name without a password and a malformed port or
    database (the message never contains the URL: it may hold a password)."""
    try:
        parts = urlsplit(url)
        port = parts.port or 6379
        options = parse_qs(parts.query, keep_blank_values=True, strict_parsing=bool(parts.query))
    except ValueError:
        raise UnsupportedURL("malformed Redis URL") from None
    if parts.scheme not in ("redis", "rediss"):
        raise UnsupportedURL(f"scheme {parts.scheme!r} is not supported by the fast client")
    tls = parts.scheme == "rediss"
    unknown = sorted(set(options) - _TLS_OPTIONS) if tls else sorted(options)
    if unknown or parts.fragment or any(len(v) != 1 for v in options.values()):
        what = ", ".join(unknown) or "a repeated option"
        raise UnsupportedURL(f"URL options are not supported by the fast client ({what})")
    path = parts.path.strip("/")
    if path and not (path.isascii() and path.isdigit()):
        raise UnsupportedURL("the database in a Redis URL must be a number")
    username = unquote(parts.username) if parts.username else None
    password = unquote(parts.password) if parts.password is not None else None
    if username is not None and password is None:
        raise UnsupportedURL("a user name without a password is not supported")
    cert_reqs = options.get("ssl_cert_reqs", ["required"])[0].lower()
    if cert_reqs not in ("required", "none"):
        raise UnsupportedURL("ssl_cert_reqs must be 'required' or 'none' for the fast client")
    return RedisAddress(
        host=parts.hostname or "localhost",
        port=port,
        db=int(path) if path else 0,
        username=username,
        password=password,
        tls=tls,
        ca_file=options.get("ssl_ca_certs", [None])[0] or None,
        verify=cert_reqs == "required",
    )


# --- RESP2 -------------------------------------------------------------------------------
def encode(args: tuple[Arg, ...]) -> bytes:
    """One command as a RESP2 array of bulk strings."""
    out = [b"*%d\r\n" % len(args)]
    for arg in args:
        if isinstance(arg, bytes):
            data = arg
        elif isinstance(arg, str):
            data = arg.encode()
        elif isinstance(arg, int) and not isinstance(arg, bool):
            data = b"%d" % arg
        elif isinstance(arg, float):
            data = repr(arg).encode()  # as redis-py does
        else:
            raise TypeError(
                f"Redis arguments are bytes, str, int or float, not {type(arg).__name__}"
            )
        out.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(out)


def _reply_error(message: str) -> ReplyError:
    """hiredis's ``replyError`` factory: error replies become values (not raised), so that
    an error inside an array or one caller's error never disturbs the FIFO."""
    if message.startswith("NOSCRIPT"):
        return NoScriptError(message)
    return ReplyError(message)


_INCOMPLETE: Any = object()


def new_reader() -> Any:
    """A ``hiredis.Reader`` for RESP2 replies: simple and bulk strings are ``bytes``, a
    null bulk or array is ``None``, integers are ``int``, arrays are lists (nested),
    error replies are :class:`ReplyError` *values* (the caller raises top-level ones),
    an incomplete buffer gives ``_INCOMPLETE``; :class:`ProtocolError` is raised for
    anything that is not RESP."""
    return hiredis.Reader(protocolError=ProtocolError, replyError=_reply_error,
                          notEnoughData=_INCOMPLETE)


# --- connection --------------------------------------------------------------------------
class _Connection(asyncio.Protocol):
    """One TCP connection: a FIFO of pending futures, a per-tick write buffer and a
    watchdog for the oldest pending command."""

    def __init__(self, loop: asyncio.AbstractEventLoop, timeout: float) -> None:
        self.loop = loop
        self.timeout = timeout
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self._pending: deque[tuple[asyncio.Future[Any], float]] = deque()
        self._out: list[bytes] = []
        self._flush_scheduled = False
        self._reader = new_reader()
        self._watchdog: asyncio.TimerHandle | None = None
        self._error: str | None = None

    # asyncio.Protocol ---------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports do not subclass asyncio.Transport: no isinstance check.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        reader = self._reader
        pending = self._pending
        try:
            reader.feed(data)
            while (value := reader.gets()) is not _INCOMPLETE:
                if not pending:
                    raise ProtocolError("a reply nobody asked for")
                future, _ = pending.popleft()
                if future.done():  # the caller was cancelled: drop its reply
                    continue
                if isinstance(value, ReplyError):
                    future.set_exception(value)
                else:
                    future.set_result(value)
        except ProtocolError as exc:
            self.fail(f"protocol error: {exc}")

    def connection_lost(self, exc: Exception | None) -> None:
        self.fail("connection lost" if exc is None else f"connection lost: {exc}")

    # use ----------------------------------------------------------------------------
    def send(self, data: bytes) -> asyncio.Future[Any]:
        """Queue ``data`` (one command) and return the future of its reply."""
        future = self.loop.create_future()
        deadline = self.loop.time() + self.timeout
        self._pending.append((future, deadline))
        self._out.append(data)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self.loop.call_soon(self._flush)
        if self._watchdog is None:
            self._watchdog = self.loop.call_at(deadline, self._check)
        return future

    def _flush(self) -> None:
        self._flush_scheduled = False
        if self.closed or self.transport is None:
            return
        out, self._out = self._out, []
        self.transport.write(out[0] if len(out) == 1 else b"".join(out))

    def _check(self) -> None:
        self._watchdog = None
        if self.closed:
            return
        pending = self._pending
        # The oldest command's reply is overdue: the connection is stuck (a cancelled
        # caller's reply is still due too, so it counts).
        if pending:
            _, deadline = pending[0]
            if deadline <= self.loop.time():
                self.fail(f"no reply within {self.timeout:g} s")
                return
            self._watchdog = self.loop.call_at(deadline, self._check)

    def fail(self, reason: str) -> None:
        """Fail every pending call with BackendUnavailable and drop the connection."""
        if not self.closed:
            self.closed = True
            self._error = reason
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None
        pending, self._pending = self._pending, deque()
        self._out = []
        self._reader = new_reader()
        for future, _ in pending:
            if not future.done():
                future.set_exception(BackendUnavailable(f"Redis unavailable: {reason}"))
        if self.transport is not None:
            # Idempotent; connection_lost comes back here. A transport of a closed event
            # loop (a test's loop that ended) cannot be aborted any more.
            with contextlib.suppress(RuntimeError):
                self.transport.abort()


class FastRedis:
    """A pipelined RESP2 client on one lazily (re)connected connection.

    Constructing it does no I/O. :meth:`execute` raises :class:`BackendUnavailable`
    when Redis cannot be reached, does not answer within ``timeout`` seconds or breaks
    the protocol; :class:`ReplyError` when it answers with an error.
    """

    def __init__(
        self,
        address: RedisAddress,
        *,
        timeout: float = 0.25,
        connect_timeout: float = 0.25,
    ) -> None:
        if timeout <= 0 or connect_timeout <= 0:
            raise ValueError("timeouts must be positive")
        self.address = address
        # Built once (it reads the CA file); the handshake counts against connect_timeout.
        try:
            self._ssl = address.ssl_context()
        except OSError as exc:  # a missing or unreadable ssl_ca_certs file
            raise ConfigError(f"Redis TLS: cannot use ssl_ca_certs: {describe(exc)}") from None
        self.timeout = timeout
        self.connect_timeout = connect_timeout
        self._conn: _Connection | None = None
        self._lock: asyncio.Lock | None = None
        self._lock_loop: asyncio.AbstractEventLoop | None = None
        self._attempts = 0
        self._last_error = ""

    @classmethod
    def from_url(
        cls, url: str, *, timeout: float = 0.25, connect_timeout: float = 0.25
    ) -> FastRedis:
        """:class:`UnsupportedURL` when :func:`parse_url` does not support the URL."""
        return cls(parse_url(url), timeout=timeout, connect_timeout=connect_timeout)

    def __repr__(self) -> str:
        return f"FastRedis({self.address!r}, connected={self.connected})"

    @property
    def connected(self) -> bool:
        """True while a connection is open."""
        return self._conn is not None and not self._conn.closed

    async def execute(self, *args: Arg) -> Any:
        """Send one command and return its reply (see :func:`parse` for the types)."""
        conn = self._conn
        loop = asyncio.get_running_loop()
        if conn is None or conn.closed or conn.loop is not loop:
            conn = await self._connect(loop)
        return await conn.send(encode(args))

    async def _connect(self, loop: asyncio.AbstractEventLoop) -> _Connection:
        attempt = self._attempts
        if self._lock is None or self._lock_loop is not loop:
            self._lock, self._lock_loop = asyncio.Lock(), loop
        async with self._lock:
            conn = self._conn
            if conn is not None and not conn.closed and conn.loop is loop:
                return conn
            if self._attempts != attempt:
                # Someone else tried while we waited, and failed: do not queue up one
                # connect timeout per waiting caller.
                raise BackendUnavailable(f"Redis unavailable: {self._last_error}")
            self._attempts += 1
            if conn is not None:
                conn.fail("replaced")
            self._conn = None
            try:
                conn = await self._open(loop)
            except BackendUnavailable as exc:
                self._last_error = str(exc).removeprefix("Redis unavailable: ")
                raise
            except BaseException:  # cancelled while connecting: waiters fail too
                self._last_error = "connect interrupted"
                raise
            self._conn = conn
            return conn

    async def _open(self, loop: asyncio.AbstractEventLoop) -> _Connection:
        addr = self.address
        conn: _Connection | None = None
        futures: list[asyncio.Future[Any]] = []
        try:
            async with asyncio.timeout(self.connect_timeout):
                _, conn = await loop.create_connection(
                    lambda: _Connection(loop, self.connect_timeout), addr.host, addr.port,
                    ssl=self._ssl, server_hostname=addr.host if self._ssl else None,
                )
                setup: list[tuple[Arg, ...]] = []
                if addr.password is not None:
                    if addr.username is not None:
                        setup.append((b"AUTH", addr.username, addr.password))
                    else:
                        setup.append((b"AUTH", addr.password))
                if addr.db:
                    setup.append((b"SELECT", addr.db))
                futures = [conn.send(encode(cmd)) for cmd in setup]
                for future in futures:
                    await future
        except BaseException as exc:
            if conn is not None:
                conn.fail("connection set-up failed")
            for future in futures:  # nobody reads the replies after the failed one
                if future.done() and not future.cancelled():
                    future.exception()
                else:
                    future.cancel()
            if isinstance(exc, ReplyError):
                code = str(exc).split(" ", 1)[0] or "error"  # the code only (AUTH errors)
                raise BackendUnavailable(
                    f"Redis unavailable: connection set-up refused ({code})"
                ) from None
            if isinstance(exc, (OSError, TimeoutError)):
                what = "connect timed out" if isinstance(exc, TimeoutError) else describe(exc)
                raise BackendUnavailable(f"Redis unavailable: {what}") from None
            raise
        conn.timeout = self.timeout
        return conn

    async def close(self) -> None:
        """Drop the connection (pending calls fail with BackendUnavailable). A later
        call connects again."""
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.fail("client closed")
            with contextlib.suppress(Exception):
                await asyncio.sleep(0)  # let the transport finish closing


