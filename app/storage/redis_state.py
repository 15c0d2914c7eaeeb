"""Redis fast state for production (``SUISHEN_REDIS_URL``), shared by every API process.

What MUST hold (``tests/contract`` checks it against a real server):

* Every call gives up within about ``socket_connect_timeout + socket_timeout`` (0.5 s
  by default) and raises :class:`~suishen.errors.BackendUnavailable` for every Redis or
  socket error — never a redis-py exception. The caller picks fail-open or fail-closed
  per scene. Connections are re-made on the next call, so the object recovers by itself
  when Redis returns.
* ``first_use`` is one ``SET key <token> NX GET EX ttl`` (Redis >= 7.0): atomic across
  processes, and one round trip whether the code is new or refused. On an older Redis
  (which refuses ``NX`` with ``GET``) it says so once in the log and uses
  ``SET NX EX`` then ``GET``, as before.
* The two hot-path operations, ``first_use`` and ``rate_limit``, go through
  :class:`~suishen.app.storage.redis_fast.FastRedis` (one pipelined connection; measured
  with ``benchmarks/redis_client_bench.py`` against redis-py with hiredis, see
  ``benchmarks/README.md``) for ``redis://`` and ``rediss://`` URLs; everything else
  uses redis-py. A URL the fast client does not support (``unix://``, options other
  than ``ssl_ca_certs``/``ssl_cert_reqs``) puts redis-py on the hot path too, never
  silently: a warning at start and :attr:`RedisState.hot_path_client` (exported as the
  ``suishen_redis_hot_path_client`` metric by the factory).
* ``rate_limit`` is GCRA (a token bucket of one second's worth of requests) in one Lua
  script on one key per partner: atomic and shared by every process.
* The change feed is a Redis Stream. :meth:`publish` runs one script that stamps each
  event with the stream's *epoch* (a random token created with the stream) and a
  sequence number. Each process reads the stream from its last id in a background task
  (``XREAD BLOCK``), so it sees every event within milliseconds and, after a
  disconnection, continues where it stopped. If it finds a hole in the sequence (the
  stream was trimmed past it) or a new epoch (Redis restarted empty, or the key was
  lost) it calls the handler with ``Event("resync")``: reload everything from the
  database. The listener never dies: it logs (no secrets), backs off up to one second
  and retries.

Keys (see ``docs/storage.md`` for the table). Multi-key operations touch only the feed's
two keys, which share the hash tag ``{<prefix>}`` so that they sit in one Redis Cluster
slot; every other key is single-key and spreads over the cluster.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import uuid
from collections.abc import Awaitable
from typing import Any, TypeVar

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError, ResponseError

from suishen.app.storage.base import Event, EventHandler
from suishen.app.storage.redis_fast import FastRedis, NoScriptError, ReplyError, UnsupportedURL
from suishen.app.storage.transit import SlotMove
from suishen.errors import BackendUnavailable, ConfigError, describe

__all__ = ["RedisState"]

log = logging.getLogger(__name__)

_T = TypeVar("_T")

_PREFIX = re.compile(r"[A-Za-z0-9_.:-]{1,64}")
_ERRORS: tuple[type[BaseException], ...] = (RedisError, OSError, asyncio.TimeoutError)
_BACKOFF_MIN = 0.05
_BACKOFF_MAX = 1.0

# GCRA: each allowed request moves the "theoretical arrival time" (TAT) on by 1/rate
# seconds; a request is allowed while TAT stays within one second of now, i.e. up to
# ``rate`` requests in a burst, then ``rate`` per second (``count`` requests at once move
# it on by count/rate: all of them fit, or none is taken). Times are milliseconds given by
# the caller (time is a parameter); the key expires when the bucket is full again.
# 1/rate is rarely exact in binary: a microsecond of tolerance keeps the rate-th request
# of a burst from being refused for a rounding error.
_RATE_LIMIT_LUA = """
local now = tonumber(ARGV[1])
local rate = tonumber(ARGV[2])
local count = tonumber(ARGV[3] or '1')
local interval = 1000 / rate
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local new_tat = tat + interval * count
local wait = new_tat - 1000 - now
if wait > 0.001 then
  return string.format('%.6f', wait)
end
redis.call('SET', KEYS[1], string.format('%.6f', new_tat), 'PX', math.ceil(new_tat - now))
return '0'
"""

# KEYS[1] = stream, KEYS[2] = meta hash; ARGV = epoch candidate, max length, event JSON.
_PUBLISH_LUA = """
redis.call('HSETNX', KEYS[2], 'epoch', ARGV[1])
local epoch = redis.call('HGET', KEYS[2], 'epoch')
local seq = redis.call('HINCRBY', KEYS[2], 'seq', 1)
return redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[2], '*',
                  'epoch', epoch, 'seq', seq, 'event', ARGV[3])
"""


# Transit taps (issue 10). KEYS[1] = the code's single-use key, KEYS[2] = the citizen's
# journey slot; ARGV = token, ttl, move kind, value, now, passback seconds, slot ttl.
# Single use as in first_use (SET NX GET; the caller's own token counts as first), then,
# for a first use only, the slot's value and the tap's predicted move applied to it
# (suishen.app.storage.transit.SlotMove.predict is the reference; the contract suite
# checks this script against it): one round trip. The journey rules themselves stay in
# Python (suishen.verifiers.transit.tap), which checks the prediction.
_FIRST_USE_MOVE_LUA = """
local old = redis.call('SET', KEYS[1], ARGV[1], 'NX', 'GET', 'EX', ARGV[2])
if old and old ~= ARGV[1] then return {0, false, false} end
local cur = redis.call('GET', KEYS[2])
local kind = ARGV[3]
if kind == 'keep' then return {1, cur, cur} end
if kind == 'clear' then
  if cur then redis.call('DEL', KEYS[2]) end
  return {1, cur, false}
end
if cur then
  local at = tonumber(string.match(cur, '^%[(%-?%d+),'))
  if at and math.max(0, tonumber(ARGV[5]) - at) < tonumber(ARGV[6]) then
    return {1, cur, cur}
  end
end
redis.call('SET', KEYS[2], ARGV[4], 'EX', ARGV[7])
return {1, cur, ARGV[4]}
"""

# KEYS[1] = journey slot; ARGV = expected ('' = empty), new value ('' = delete), ttl.
_SWAP_SLOT_LUA = """
local cur = redis.call('GET', KEYS[1])
if (cur or '') ~= ARGV[1] then return {0, cur} end
if ARGV[2] == '' then redis.call('DEL', KEYS[1])
else redis.call('SET', KEYS[1], ARGV[2], 'EX', ARGV[3]) end
return {1, false}
"""


def _bytes(value: Any) -> bytes | None:
    if value is None or value is False:
        return None
    return value if isinstance(value, bytes) else str(value).encode()


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class RedisState:
    """:class:`suishen.app.storage.base.StateBackend` on Redis (standalone or, with its
    key design, Redis Cluster).

    Constructing it does no I/O: the service starts while Redis is down and every call
    raises :class:`BackendUnavailable` until Redis answers.
    """

    def __init__(
        self,
        url: str,
        *,
        prefix: str = "suishen",
        socket_timeout: float = 0.25,
        socket_connect_timeout: float = 0.25,
        max_connections: int = 64,
        feed_maxlen: int = 10_000,
        block_ms: int = 500,
        fast_client: bool = True,
    ) -> None:
        if not _PREFIX.fullmatch(prefix):
            raise ConfigError("Redis key prefix: 1-64 characters of A-Z a-z 0-9 _ . : -")
        if not 0 < block_ms <= 500:
            raise ConfigError("block_ms must be in (0, 500]: events must arrive within 1 s")
        self._prefix = prefix
        # Whole-call guard on top of the socket timeouts (one retry on a stale
        # connection may connect and read a second time).
        self._op_timeout = 2 * (socket_connect_timeout + socket_timeout) + 0.05
        pool = aioredis.BlockingConnectionPool.from_url(
            url,
            max_connections=max_connections,
            timeout=self._op_timeout,  # wait this long for a free connection
            socket_timeout=socket_timeout,
            socket_connect_timeout=socket_connect_timeout,
            # One immediate retry: after a Redis restart the first command on a pooled
            # connection fails before the pool notices. More retries (redis-py's default
            # backs off for seconds) would break the caller's latency budget.
            retry=Retry(NoBackoff(), 1),
        )
        self._redis = aioredis.Redis(connection_pool=pool)
        # The listener blocks for block_ms on XREAD: it needs its own connection with a
        # read timeout longer than the block.
        self._listen_redis = aioredis.Redis.from_url(
            url,
            socket_timeout=block_ms / 1000 + socket_timeout,
            socket_connect_timeout=socket_connect_timeout,
            retry=Retry(NoBackoff(), 0),
            max_connections=2,
        )
        self._block_ms = block_ms
        self._feed_maxlen = feed_maxlen
        self._rate_script = self._redis.register_script(_RATE_LIMIT_LUA)
        self._rate_sha: str = self._rate_script.sha  # SHA-1 of the script, for EVALSHA
        # The hot path (first_use, rate_limit): a lean pipelined client when the URL is
        # one it supports, else redis-py as for everything else -- loudly.
        self._fast: FastRedis | None = None
        if fast_client:
            try:
                self._fast = FastRedis.from_url(
                    url, timeout=socket_timeout, connect_timeout=socket_connect_timeout
                )
            except UnsupportedURL as exc:
                log.warning(
                    "Redis hot path: %s; single use and rate limits use redis-py, which "
                    "costs several times more CPU per verification "
                    "(suishen_redis_hot_path_client{client=\"redis-py\"})", exc)
        # SET NX GET needs Redis >= 7.0; cleared (once, with a warning) on an older one.
        self._set_nx_get = True
        self._publish_script = self._redis.register_script(_PUBLISH_LUA)
        self._first_move_script = self._redis.register_script(_FIRST_USE_MOVE_LUA)
        self._swap_script = self._redis.register_script(_SWAP_SLOT_LUA)
        # Change-feed position of this process.
        self._handler: EventHandler | None = None
        self._task: asyncio.Task[None] | None = None
        self._stop_flag = asyncio.Event()
        self._positioned = False
        self._epoch: str | None = None
        self._seq = 0
        self._last_id = "0-0"
        # The first start() asks for a reload once positioned: whatever the caller
        # loaded before start() may miss events published in between.
        self._resync_pending = True

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        prefix: str = "suishen",
        timeout: float | None = None,
        socket_timeout: float = 0.25,
        socket_connect_timeout: float = 0.25,
        max_connections: int = 64,
        feed_maxlen: int = 10_000,
        block_ms: int = 500,
        fast_client: bool = True,
    ) -> RedisState:
        """Like the constructor; ``timeout``, when given, sets both socket timeouts."""
        if timeout is not None:
            socket_timeout = socket_connect_timeout = timeout
        return cls(
            url,
            prefix=prefix,
            socket_timeout=socket_timeout,
            socket_connect_timeout=socket_connect_timeout,
            max_connections=max_connections,
            feed_maxlen=feed_maxlen,
            block_ms=block_ms,
            fast_client=fast_client,
        )

    def __repr__(self) -> str:  # never show the URL: it may carry a password
        return f"RedisState(prefix={self._prefix!r}, listening={self.listening})"

    @property
    def hot_path_client(self) -> str:
        """Which client serves ``first_use`` and ``rate_limit``: ``"fast"`` or
        ``"redis-py"`` (a URL the fast client does not support, or ``fast_client=False``)."""
        return "fast" if self._fast is not None else "redis-py"

    # --- keys -------------------------------------------------------------------------
    def _once_key(self, key: bytes) -> str:
        return f"{self._prefix}:once:{key.hex()}"

    def _slot_key(self, slot: bytes) -> str:
        return f"{self._prefix}:journey:{slot.hex()}"

    def _rate_key(self, partner_id: str) -> str:
        return f"{self._prefix}:rl:{{{partner_id}}}"

    def _cache_key(self, key: str) -> str:
        return f"{self._prefix}:cache:{key}"

    @property
    def _feed_key(self) -> str:
        return f"{{{self._prefix}}}:feed"

    @property
    def _meta_key(self) -> str:
        return f"{{{self._prefix}}}:feed:meta"

    # --- calls ------------------------------------------------------------------------
    async def _call(self, aw: Awaitable[_T]) -> _T:
        try:
            async with asyncio.timeout(self._op_timeout):
                return await aw
        except _ERRORS as exc:
            raise BackendUnavailable(f"Redis unavailable: {describe(exc)}") from None

    async def first_use(self, key: bytes, *, ttl_seconds: int) -> bool:
        """``SET <prefix>:once:<hex> <token> NX GET EX ttl``: True only for the first caller.

        The value is a random token of this call: ``GET`` returns what was there (nothing
        for a new code), so if the reply to a successful SET is lost and the client
        retries, the retry finds its own token and still answers True -- a citizen's
        first scan is never reported as a replay because of a network hiccup. One round
        trip either way (two on a Redis older than 7.0)."""
        name = self._once_key(key)
        token = os.urandom(8)
        ttl = max(1, int(ttl_seconds))
        fast = self._fast
        if fast is not None:
            try:
                if self._set_nx_get:
                    try:
                        old = await fast.execute(b"SET", name, token, b"NX", b"GET", b"EX", ttl)
                    except ReplyError as exc:
                        if not self._no_set_nx_get(exc):
                            raise
                    else:
                        return old is None or old == token
                if await fast.execute(b"SET", name, token, b"NX", b"EX", ttl) is not None:
                    return True
                return bool(await fast.execute(b"GET", name) == token)
            except ReplyError as exc:
                raise BackendUnavailable(f"Redis unavailable: {describe(exc)}") from None
        if self._set_nx_get:
            try:
                async with asyncio.timeout(self._op_timeout):
                    old = await self._redis.set(name, token, nx=True, ex=ttl, get=True)
            except ResponseError as exc:
                if not self._no_set_nx_get(exc):
                    raise BackendUnavailable(f"Redis unavailable: {describe(exc)}") from None
            except _ERRORS as exc:
                raise BackendUnavailable(f"Redis unavailable: {describe(exc)}") from None
            else:
                return old is None or old == token
        if await self._call(self._redis.set(name, token, nx=True, ex=ttl)):
            return True
        return bool(await self._call(self._redis.get(name)) == token)

    async def _script(self, script: Any, source: str, keys: list[str],
                      args: list[Any]) -> Any:
        """Run a Lua script (EVALSHA, EVAL when not cached) on the hot-path client."""
        fast = self._fast
        if fast is None:
            return await self._call(script(keys=keys, args=args))
        try:
            try:
                return await fast.execute(b"EVALSHA", script.sha, len(keys), *keys, *args)
            except NoScriptError:  # a new or restarted Redis: EVAL also caches it
                return await fast.execute(b"EVAL", source, len(keys), *keys, *args)
        except ReplyError as exc:
            raise BackendUnavailable(f"Redis unavailable: {describe(exc)}") from None

    async def first_use_and_move(
        self, key: bytes, *, ttl_seconds: int, slot: bytes, move: SlotMove
    ) -> tuple[bool, bytes | None, bytes | None]:
        """One script: ``SET NX GET`` on the code's key, then the journey slot
        ``<prefix>:journey:<hex>`` read and moved. Needs Redis >= 7.0 (SET NX GET) and,
        on Redis Cluster, would need both keys in one slot: use a standalone Redis (or a
        replicated primary) for transit."""
        reply = await self._script(
            self._first_move_script, _FIRST_USE_MOVE_LUA,
            [self._once_key(key), self._slot_key(slot)],
            [os.urandom(8), max(1, int(ttl_seconds)), move.kind.value, move.value,
             move.now, move.passback_seconds, max(1, int(move.ttl_seconds))],
        )
        if not int(reply[0]):
            return False, None, None
        return True, _bytes(reply[1]), _bytes(reply[2])

    async def swap_slot(
        self, slot: bytes, *, expected: bytes | None, value: bytes | None, ttl_seconds: int
    ) -> tuple[bool, bytes | None]:
        """Compare and set the journey slot in one script."""
        reply = await self._script(
            self._swap_script, _SWAP_SLOT_LUA, [self._slot_key(slot)],
            [expected or b"", value or b"", max(1, int(ttl_seconds))],
        )
        return bool(int(reply[0])), _bytes(reply[1])

    def _no_set_nx_get(self, exc: BaseException) -> bool:
        """True (and SET NX GET is off from now on) when ``exc`` is the syntax error of a
        Redis older than 7.0, which does not combine NX with GET."""
        if "syntax error" not in str(exc).lower():
            return False
        if self._set_nx_get:
            self._set_nx_get = False
            log.warning("Redis refuses SET NX GET (a server older than 7.0): single use "
                        "now takes two round trips for a refused code; upgrade Redis")
        return True

    async def rate_limit(self, partner_id: str, *, per_second: int, now_ms: int,
                         count: int = 1) -> float:
        """GCRA on ``<prefix>:rl:{<partner>}``: 0.0 when allowed, else seconds to wait."""
        if per_second < 1 or count < 1:
            raise ValueError("per_second and count must be at least 1")
        fast = self._fast
        if fast is not None:
            key = self._rate_key(partner_id)
            try:
                try:
                    reply = await fast.execute(
                        b"EVALSHA", self._rate_sha, 1, key, now_ms, per_second, count
                    )
                except NoScriptError:  # a new or restarted Redis: EVAL also caches it
                    reply = await fast.execute(
                        b"EVAL", _RATE_LIMIT_LUA, 1, key, now_ms, per_second, count
                    )
                return float(reply) / 1000
            except (ReplyError, TypeError, ValueError) as exc:
                raise BackendUnavailable(f"Redis unavailable: {describe(exc)}") from None
        wait_ms = await self._call(
            self._rate_script(keys=[self._rate_key(partner_id)],
                              args=[now_ms, per_second, count])
        )
        return float(_text(wait_ms)) / 1000

    async def cache_get(self, key: str) -> bytes | None:
        value = await self._call(self._redis.get(self._cache_key(key)))
        if value is None or isinstance(value, bytes):
            return value
        return str(value).encode()

    async def cache_set(self, key: str, value: bytes, *, ttl_seconds: int) -> None:
        await self._call(self._redis.set(self._cache_key(key), value, ex=max(1, ttl_seconds)))

    async def cache_delete(self, key: str) -> None:
        await self._call(self._redis.delete(self._cache_key(key)))

    async def cache_add(self, key: str, value: bytes, *, ttl_ms: int) -> bool:
        done = await self._call(
            self._redis.set(self._cache_key(key), value, nx=True, px=max(1, ttl_ms))
        )
        return bool(done)

    async def ping(self) -> None:
        await self._call(self._redis.ping())

    # --- change feed ------------------------------------------------------------------
    async def publish(self, event: Event) -> None:
        """Append ``event`` to the stream (every process's listener delivers it, this
        one's included). :class:`BackendUnavailable` when Redis is down: the caller has
        already written the database and decides whether that is an error."""
        payload = json.dumps({"kind": event.kind, "data": event.data}, separators=(",", ":"))
        await self._call(
            self._publish_script(
                keys=[self._feed_key, self._meta_key],
                args=[uuid.uuid4().hex, self._feed_maxlen, payload],
            )
        )

    def subscribe(self, handler: EventHandler) -> None:
        self._handler = handler

    @property
    def listening(self) -> bool:
        """True while the listener task runs."""
        return self._task is not None and not self._task.done()

    async def start(self) -> None:
        """Start the listener; events published after this returns are delivered.

        The first start takes the feed's current position and then delivers one
        ``resync``, so state loaded before ``start()`` catches up on events published
        meanwhile. If Redis is down, the listener takes its position when Redis returns
        (and then delivers that ``resync``). Calling it again after :meth:`stop`
        continues from the last event seen."""
        if self.listening:
            return
        if not self._positioned:
            try:
                async with asyncio.timeout(self._op_timeout):
                    await self._position()
            except _ERRORS as exc:
                log.warning("change feed: Redis unavailable at start (%s)", describe(exc))
        self._stop_flag = asyncio.Event()
        self._task = asyncio.create_task(
            self._listen(self._stop_flag), name=f"suishen-feed-{self._prefix}"
        )

    async def stop(self) -> None:
        """Stop the listener (keeping its position) without closing connections.

        Bounded: a cancellation swallowed somewhere below (a driver converting it into
        an error) must not hang shutdown, so the loop also checks a stop flag and the
        cancellation is repeated for up to about two seconds."""
        task, self._task = self._task, None
        if task is None:
            return
        self._stop_flag.set()
        for _ in range(20):
            task.cancel()
            done, _ = await asyncio.wait({task}, timeout=0.1)
            if done:
                error = None if task.cancelled() else task.exception()
                if error is not None:
                    log.error("change feed listener ended with %s", describe(error))
                return
        log.error("change feed listener did not stop within 2 s; abandoning it")

    async def close(self) -> None:
        """Stop the listener and close the connections (bounded in time)."""
        await self.stop()
        if self._fast is not None:
            await self._fast.close()
        for client in (self._listen_redis, self._redis):
            try:
                async with asyncio.timeout(self._op_timeout):
                    await client.aclose()
            except _ERRORS as exc:
                log.warning("closing Redis connections: %s", describe(exc))

    async def _position(self) -> None:
        """Take the current epoch, sequence number and last id in one transaction (the
        two feed keys share a hash tag, so this works on a Cluster too)."""
        async with self._listen_redis.pipeline(transaction=True) as pipe:
            pipe.hsetnx(self._meta_key, "epoch", uuid.uuid4().hex)
            pipe.hmget(self._meta_key, ["epoch", "seq"])
            pipe.xrevrange(self._feed_key, "+", "-", count=1)
            _, (epoch, seq), last = await pipe.execute()
        self._epoch = _text(epoch)
        self._seq = int(seq or 0)
        self._last_id = _text(last[0][0]) if last else "0-0"
        self._positioned = True

    async def _resync(self, why: str) -> None:
        """Jump to the end of the feed, then tell the handler to reload everything:
        anything published before the jump is in the database already, anything after
        it is delivered next."""
        log.warning("change feed: %s; asking for a full reload", why)
        await self._position()
        self._resync_pending = True
        await self._flush_resync()

    async def _flush_resync(self) -> None:
        if self._resync_pending and await self._deliver(Event("resync", {})):
            self._resync_pending = False

    async def _deliver(self, event: Event) -> bool:
        if self._handler is None:
            return True
        try:
            await self._handler(event)
        except Exception:
            # A failed handler may leave this process stale: reload once it works again.
            log.exception("change feed handler failed on a %r event", event.kind)
            self._resync_pending = True
            return False
        return True

    async def _listen(self, stop: asyncio.Event) -> None:
        backoff = _BACKOFF_MIN
        while not stop.is_set():
            try:
                await self._listen_once()
                backoff = _BACKOFF_MIN
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - the listener must never die
                # Never die: Redis down, a fail-over, a bug in a handler's caller ...
                log.warning(
                    "change feed listener: %s; retrying in %.2f s", describe(exc), backoff
                )
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, _BACKOFF_MAX)
                if self._resync_pending:
                    await self._flush_resync()

    async def _listen_once(self) -> None:
        if not self._positioned:
            await self._position()
        await self._flush_resync()
        async with self._listen_redis.pipeline(transaction=False) as pipe:
            pipe.hget(self._meta_key, "epoch")
            pipe.xread({self._feed_key: self._last_id}, count=500, block=self._block_ms)
            epoch, streams = await pipe.execute()
        if epoch is None or _text(epoch) != self._epoch:
            # The meta key vanished or was re-created: Redis restarted without the data
            # (or someone deleted it). Events may have been lost.
            await self._resync("the feed was reset")
            return
        for _stream, entries in streams or ():
            for entry_id, fields in entries:
                if not await self._consume(_text(entry_id), fields):
                    return

    async def _consume(self, entry_id: str, fields: dict[Any, Any]) -> bool:
        """Deliver one entry; False when it forced a resync (drop the rest of the batch)."""
        epoch = _text(fields.get(b"epoch", b""))
        seq = int(fields.get(b"seq", b"0"))
        if epoch != self._epoch:
            await self._resync("the feed was reset")
            return False
        if seq != self._seq + 1:
            await self._resync(f"missed {seq - self._seq - 1} events (trimmed)")
            return False
        self._seq = seq
        self._last_id = entry_id
        try:
            data = json.loads(fields[b"event"])
            event = Event(str(data["kind"]), dict(data.get("data") or {}))
        except (KeyError, TypeError, ValueError):
            log.error("change feed: skipping a malformed entry %s", entry_id)
            return True
        await self._deliver(event)
        return True
