"""The lean pipelined RESP2 client of the hot path (:mod:`suishen.app.storage.redis_fast`),
against real servers: the shared Redis (keys under the session prefix), the private
stoppable Redis and a server that never answers."""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis
import uvloop

from suishen.app.storage.redis_fast import (
    FastRedis,
    NoScriptError,
    ProtocolError,
    RedisAddress,
    ReplyError,
    UnsupportedURL,
    encode,
    parse,
    parse_url,
)
from suishen.app.storage.redis_state import RedisState
from suishen.errors import BackendUnavailable
from tests.contract.conftest import RedisSession
from tests.contract.servers import PrivateRedis, SilentServer, free_port

FAIL_FAST_S = 1.0


@pytest.fixture
async def fast(redis_session: RedisSession) -> AsyncIterator[FastRedis]:
    client = FastRedis.from_url(redis_session.url)
    yield client
    await client.close()


@pytest.fixture
def prefix(redis_session: RedisSession) -> str:
    return redis_session.test_prefix()


def no_extra_tasks(before: set[asyncio.Task[object]]) -> bool:
    return not (asyncio.all_tasks() - before - {asyncio.current_task()})


# --- RESP2 against the real server -----------------------------------------------------------
async def test_every_reply_type(fast: FastRedis, prefix: str) -> None:
    key = f"{prefix}:k"
    assert await fast.execute(b"SET", key, b"v\r\n\x00") == b"OK"  # simple string
    assert await fast.execute("GET", key) == b"v\r\n\x00"  # bulk (binary-safe)
    assert await fast.execute("GET", f"{prefix}:missing") is None  # null bulk
    assert await fast.execute("SET", key, b"") == b"OK"
    assert await fast.execute("GET", key) == b""  # empty bulk
    assert await fast.execute("INCR", f"{prefix}:n") == 1  # integer
    assert await fast.execute("INCRBY", f"{prefix}:n", -5) == -4  # negative integer
    assert await fast.execute("DEL", key, f"{prefix}:n") == 2
    assert await fast.execute("PING") == b"PONG"
    nested = await fast.execute(
        "EVAL",
        "return {1, 'two', {3, {'four'}}, {}, false, redis.error_reply('inner')}",
        0,
    )
    assert nested[:5] == [1, b"two", [3, [b"four"]], [], None]  # Lua false -> nil
    assert isinstance(nested[5], ReplyError) and "inner" in str(nested[5])
    assert await fast.execute("EVAL", "return {}", 0) == []
    with pytest.raises(ReplyError, match="WRONGTYPE"):
        await fast.execute("RPUSH", f"{prefix}:l", "x")
        await fast.execute("GET", f"{prefix}:l")
    with pytest.raises(ReplyError, match="boom"):
        await fast.execute("EVAL", "return redis.error_reply('boom')", 0)
    await fast.execute("DEL", f"{prefix}:l")
    assert fast.connected  # an error reply does not drop the connection
    assert await fast.execute("ECHO", 12.5) == b"12.5"
    with pytest.raises(TypeError):
        await fast.execute("ECHO", True)


async def test_large_reply_arrives_in_pieces(fast: FastRedis, prefix: str) -> None:
    big = os.urandom(3_000_000)
    await fast.execute("SET", f"{prefix}:big", big)
    many = [os.urandom(100) for _ in range(2000)]
    await fast.execute("RPUSH", f"{prefix}:list", *many)
    got_big, got_many = await asyncio.gather(
        fast.execute("GET", f"{prefix}:big"), fast.execute("LRANGE", f"{prefix}:list", 0, -1)
    )
    assert got_big == big and got_many == many
    await fast.execute("DEL", f"{prefix}:big", f"{prefix}:list")


def test_parser_incomplete_input_and_protocol_errors() -> None:
    reply = b"*4\r\n$3\r\nabc\r\n:-7\r\n*2\r\n$-1\r\n+OK\r\n-ERR x\r\n"
    for cut in range(len(reply)):  # every prefix is incomplete, never wrong
        value, pos = parse(reply[:cut], 0)
        assert pos == 0 and value is not None and not isinstance(value, list)
    value, pos = parse(reply + b"+next\r\n", 0)
    assert value[:3] == [b"abc", -7, [None, b"OK"]] and isinstance(value[3], ReplyError)
    assert parse(reply + b"+next\r\n", pos) == (b"next", pos + 7)
    assert parse(b"*-1\r\n", 0) == (None, 5)
    assert isinstance(parse(b"-NOSCRIPT No matching script\r\n", 0)[0], NoScriptError)
    for bad in (b"?what\r\n", b"$x\r\n", b":1.5\r\n", b"$3\r\nabcd\r\n", b"$-2\r\n"):
        with pytest.raises(ProtocolError):
            parse(bad, 0)
    assert encode(("SET", b"k", 5)) == b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\n5\r\n"


# --- pipelining --------------------------------------------------------------------------------
async def test_500_concurrent_calls_each_get_their_own_reply(
    fast: FastRedis, prefix: str
) -> None:
    counter = f"{prefix}:ctr"
    values = await asyncio.gather(*(fast.execute("INCR", counter) for _ in range(500)))
    assert sorted(values) == list(range(1, 501))
    assert values == sorted(values)  # FIFO: written and answered in call order

    keys = [f"{prefix}:d{i}" for i in range(500)]
    await asyncio.gather(*(fast.execute("SET", k, f"value-{i}") for i, k in enumerate(keys)))
    mixed = [fast.execute("GET", k) for k in keys]
    mixed.insert(250, fast.execute("EVAL", "return redis.error_reply('mid')", 0))
    got = await asyncio.gather(*mixed, return_exceptions=True)
    assert isinstance(got.pop(250), ReplyError)  # one error does not shift the others
    assert got == [f"value-{i}".encode() for i in range(500)]
    await fast.execute("DEL", counter, *keys)


def test_under_uvloop(redis_session: RedisSession, prefix: str) -> None:
    """The service runs on uvloop (its transports are not asyncio.Transport)."""

    async def run() -> list[object]:
        client = FastRedis.from_url(redis_session.url)
        try:
            counter = f"{prefix}:uv"
            got: list[object] = list(
                await asyncio.gather(*(client.execute("INCR", counter) for _ in range(200)))
            )
            await client.close()  # reconnects
            got.append(await client.execute("DEL", counter))
            return got
        finally:
            await client.close()

    loop = uvloop.new_event_loop()
    try:
        assert loop.run_until_complete(run()) == [*range(1, 201), 1]
    finally:
        loop.close()


async def test_a_cancelled_caller_does_not_shift_replies(fast: FastRedis, prefix: str) -> None:
    await fast.execute("SET", f"{prefix}:a", "A")
    await fast.execute("SET", f"{prefix}:b", "B")
    first = asyncio.ensure_future(fast.execute("GET", f"{prefix}:a"))
    second = asyncio.ensure_future(fast.execute("GET", f"{prefix}:b"))
    await asyncio.sleep(0)  # both written
    first.cancel()
    assert await second == b"B"
    assert await fast.execute("GET", f"{prefix}:a") == b"A"
    await fast.execute("DEL", f"{prefix}:a", f"{prefix}:b")


# --- faults ------------------------------------------------------------------------------------
async def test_a_server_that_never_answers_times_out(silent_server: SilentServer) -> None:
    before = asyncio.all_tasks()
    client = FastRedis.from_url(f"redis://127.0.0.1:{silent_server.port}/0")
    try:
        start = time.monotonic()
        results = await asyncio.gather(
            *(client.execute("PING") for _ in range(50)), return_exceptions=True
        )
        took = time.monotonic() - start
        assert all(isinstance(r, BackendUnavailable) for r in results), results[:3]
        assert took < FAIL_FAST_S, took
        assert not client.connected  # dropped; the next call reconnects
        start = time.monotonic()
        with pytest.raises(BackendUnavailable):
            await client.execute("PING")
        assert time.monotonic() - start < FAIL_FAST_S
    finally:
        await client.close()
    assert no_extra_tasks(before)


async def test_connect_set_up_on_a_silent_server_times_out(silent_server: SilentServer) -> None:
    client = FastRedis.from_url(f"redis://:pw@127.0.0.1:{silent_server.port}/3")
    try:
        start = time.monotonic()
        results = await asyncio.gather(
            *(client.execute("PING") for _ in range(20)), return_exceptions=True
        )
        assert all(isinstance(r, BackendUnavailable) for r in results)
        assert time.monotonic() - start < FAIL_FAST_S  # waiters do not queue up
    finally:
        await client.close()


async def test_nothing_listening_fails_fast() -> None:
    client = FastRedis.from_url(f"redis://127.0.0.1:{free_port()}/0")
    start = time.monotonic()
    with pytest.raises(BackendUnavailable):
        await client.execute("PING")
    assert time.monotonic() - start < FAIL_FAST_S


async def test_redis_stopped_then_restarted_same_object(private_redis: PrivateRedis) -> None:
    before = asyncio.all_tasks()
    client = FastRedis.from_url(private_redis.url)
    try:
        assert await client.execute("SET", "k", "1") == b"OK"
        await asyncio.to_thread(private_redis.stop)
        start = time.monotonic()
        results = await asyncio.gather(
            *(client.execute("GET", "k") for _ in range(20)), return_exceptions=True
        )
        assert all(isinstance(r, BackendUnavailable) for r in results)
        with pytest.raises(BackendUnavailable):
            await client.execute("GET", "k")
        assert time.monotonic() - start < FAIL_FAST_S
        await asyncio.to_thread(private_redis.start)
        assert await client.execute("GET", "k") is None  # an empty Redis, same client
        assert await client.execute("SET", "k", "2") == b"OK"
    finally:
        await client.close()
    assert no_extra_tasks(before)


async def test_a_protocol_error_drops_the_connection() -> None:
    answers = [b"+OK\r\n", b"%3\r\nnot resp2\r\n", b"+OK\r\n"]
    writers: list[asyncio.StreamWriter] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writers.append(writer)
        await reader.readuntil(b"PING\r\n")
        writer.write(answers.pop(0))
        await writer.drain()
        with contextlib.suppress(ConnectionError):
            await reader.read()
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    client = FastRedis.from_url(f"redis://127.0.0.1:{port}")
    try:
        assert await client.execute("PING") == b"OK"
        await client.close()
        with pytest.raises(BackendUnavailable, match="protocol"):
            await client.execute("PING")
        assert not client.connected
        assert await client.execute("PING") == b"OK"  # reconnected
    finally:
        await client.close()
        server.close()
        await server.wait_closed()
        for writer in writers:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()


async def test_close_fails_pending_calls_and_later_calls_reconnect(fast: FastRedis) -> None:
    pending = asyncio.ensure_future(fast.execute("BLPOP", "suishen-ct-never", 0.2))
    await asyncio.sleep(0.01)
    await fast.close()
    with pytest.raises(BackendUnavailable):
        await pending
    assert await fast.execute("PING") == b"PONG"


# --- scripts --------------------------------------------------------------------------------
async def test_noscript_is_distinguishable_and_rate_limit_falls_back(
    private_redis: PrivateRedis,
) -> None:
    client = FastRedis.from_url(private_redis.url)
    state = RedisState(private_redis.url, prefix="fastns")
    try:
        with pytest.raises(NoScriptError):
            await client.execute("EVALSHA", "0" * 40, 0)
        await client.execute("SCRIPT", "FLUSH")
        now = 1_800_000_000_000
        assert await state.rate_limit("p", per_second=2, now_ms=now) == 0.0  # EVAL path
        assert await state.rate_limit("p", per_second=2, now_ms=now) == 0.0  # EVALSHA
        assert await state.rate_limit("p", per_second=2, now_ms=now) == pytest.approx(0.5)
        assert await client.execute("SCRIPT", "EXISTS", state._rate_sha) == [1]
    finally:
        await client.close()
        await state.close()


async def test_redis_state_uses_the_fast_client(redis_session: RedisSession) -> None:
    state = RedisState(redis_session.url, prefix=redis_session.test_prefix())
    try:
        assert state._fast is not None
        key = os.urandom(8)
        assert await state.first_use(key, ttl_seconds=30)
        assert not await state.first_use(key, ttl_seconds=30)
        assert state._fast.connected
        # A lost reply retried by the caller with the same token still answers "first"
        # (the token semantics are unchanged): the stored value is this call's token.
        stored = await state._fast.execute("GET", state._once_key(key))
        assert isinstance(stored, bytes) and len(stored) == 8
        ttl = await state._fast.execute("TTL", state._once_key(key))
        assert 0 < ttl <= 30
    finally:
        await state.close()
    assert not state._fast.connected


# --- URLs, AUTH and SELECT -------------------------------------------------------------------
def test_url_parser() -> None:
    assert parse_url("redis://127.0.0.1:6379/0") == RedisAddress("127.0.0.1", 6379, 0)
    assert parse_url("redis://localhost") == RedisAddress("localhost", 6379, 0)
    assert parse_url("redis://h:7000/") == RedisAddress("h", 7000, 0)
    assert parse_url("redis://:s%40cret@h/2") == RedisAddress("h", 6379, 2, None, "s@cret")
    assert parse_url("redis://me:pw@h:1/15") == RedisAddress("h", 1, 15, "me", "pw")
    assert parse_url("redis://:@h").password == ""
    assert "s3cret" not in repr(parse_url("redis://:s3cret@h"))
    for url in (
        "rediss://h:6380/0",
        "unix:///tmp/redis.sock",
        "redis+sentinel://h",
        "redis://h/0?socket_timeout=1",
        "redis://h/x",
        "redis://h:notaport/0",
        "redis://user@h/0",
    ):
        with pytest.raises(UnsupportedURL):
            parse_url(url)


def test_unsupported_urls_keep_redis_py() -> None:
    for url in ("rediss://127.0.0.1:6380/0", "unix:///tmp/redis.sock"):
        state = RedisState(url, prefix="nofast")  # no I/O happens
        assert state._fast is None
    assert RedisState("redis://127.0.0.1:1/0", prefix="x", fast_client=False)._fast is None


async def test_db_selection(redis_session: RedisSession, prefix: str) -> None:
    address = parse_url(redis_session.url)
    url = f"redis://{address.host}:{address.port}/1"
    client = FastRedis.from_url(url)
    check0 = aioredis.Redis(host=address.host, port=address.port, db=0)
    check1 = aioredis.Redis(host=address.host, port=address.port, db=1)
    key = f"{prefix}:db1"
    try:
        assert await client.execute("SET", key, "one") == b"OK"
        assert await check1.get(key) == b"one"
        assert await check0.get(key) is None
        await client.close()  # SELECT again on reconnect
        assert await client.execute("GET", key) == b"one"
    finally:
        await check1.delete(key)
        await client.close()
        await check0.aclose()
        await check1.aclose()


async def test_password(private_redis: PrivateRedis) -> None:
    admin = FastRedis.from_url(private_redis.url)
    good = FastRedis.from_url(f"redis://:s3cret@127.0.0.1:{private_redis.port}/2")
    bad = FastRedis.from_url(f"redis://:wrong@127.0.0.1:{private_redis.port}/0")
    try:
        assert await admin.execute("CONFIG", "SET", "requirepass", "s3cret") == b"OK"
        try:
            assert await good.execute("SET", "pw", "x") == b"OK"
            assert await good.execute("GET", "pw") == b"x"
            with pytest.raises(BackendUnavailable) as caught:
                await bad.execute("PING")
            assert "wrong" not in str(caught.value) and "s3cret" not in str(caught.value)
        finally:
            await good.execute("CONFIG", "SET", "requirepass", "")
    finally:
        for client in (admin, good, bad):
            await client.close()
