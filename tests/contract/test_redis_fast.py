"""The lean pipelined RESP2 client of the hot path (:mod:`suishen.app.storage.redis_fast`),
against real servers: the shared Redis (keys under the session prefix), the private
stoppable Redis, a private Redis speaking TLS only, and a server that never answers."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis
import uvloop

from suishen.app.storage.redis_fast import (
    _INCOMPLETE,
    FastRedis,
    NoScriptError,
    ProtocolError,
    RedisAddress,
    ReplyError,
    UnsupportedURL,
    encode,
    new_reader,
    parse_url,
)
from suishen.app.storage.redis_state import RedisState
from suishen.errors import BackendUnavailable, ConfigError
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


def test_reader_incomplete_input_error_values_and_protocol_errors() -> None:
    """The hiredis reader as configured: every prefix of a reply is incomplete (never a
    wrong value), error replies are values (NOSCRIPT distinguishable), and what is not
    RESP raises ProtocolError."""
    reply = b"*4\r\n$3\r\nabc\r\n:-7\r\n*2\r\n$-1\r\n+OK\r\n-ERR x\r\n"
    for cut in range(len(reply)):
        reader = new_reader()
        reader.feed(reply[:cut])
        assert reader.gets() is _INCOMPLETE
    reader = new_reader()
    for byte in range(len(reply)):  # fed one byte at a time
        reader.feed(reply[byte : byte + 1])
    reader.feed(b"+next\r\n*-1\r\n-NOSCRIPT No matching script\r\n")
    value = reader.gets()
    assert value[:3] == [b"abc", -7, [None, b"OK"]] and isinstance(value[3], ReplyError)
    assert reader.gets() == b"next"
    assert reader.gets() is None
    assert isinstance(reader.gets(), NoScriptError)
    assert reader.gets() is _INCOMPLETE
    for bad in (b"?what\r\n", b"$x\r\n", b":1.5\r\n", b"$-2\r\n"):
        reader = new_reader()
        reader.feed(bad)
        with pytest.raises(ProtocolError):
            reader.gets()
    # A bulk string longer than announced: its tail is read as the next reply and refused.
    reader = new_reader()
    reader.feed(b"$3\r\nabcd\r\n")
    assert reader.gets() == b"abc"
    with pytest.raises(ProtocolError):
        reader.gets()
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
    answers = [b"+OK\r\n", b"?not resp\r\n", b"+OK\r\n"]
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
    # The server-side timeout is long so that close() always comes first, however slow
    # the machine (0.2 s made this race under load).
    pending = asyncio.ensure_future(fast.execute("BLPOP", "suishen-ct-never", 10))
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
    assert parse_url("rediss://h:6380/1") == RedisAddress("h", 6380, 1, tls=True)
    assert parse_url("rediss://h?ssl_ca_certs=/etc/ca.pem") == RedisAddress(
        "h", tls=True, ca_file="/etc/ca.pem")
    assert parse_url("rediss://h/0?ssl_cert_reqs=none").verify is False
    assert parse_url("rediss://h/0?ssl_cert_reqs=REQUIRED").verify is True
    for url in (
        "unix:///tmp/redis.sock",
        "redis+sentinel://h",
        "redis://h/0?socket_timeout=1",
        "redis://h/0?ssl_ca_certs=/etc/ca.pem",  # TLS options without TLS
        "rediss://h/0?ssl_cert_reqs=optional",
        "rediss://h/0?ssl_ca_certs=a&ssl_ca_certs=b",
        "rediss://h/0?ssl_certfile=c.pem",
        "redis://h/x",
        "redis://h:notaport/0",
        "redis://user@h/0",
    ):
        with pytest.raises(UnsupportedURL):
            parse_url(url)


def test_unsupported_urls_keep_redis_py_loudly(caplog: pytest.LogCaptureFixture) -> None:
    for url in ("unix:///tmp/redis.sock", "redis://127.0.0.1:6379/0?socket_keepalive=true"):
        caplog.clear()
        with caplog.at_level("WARNING", logger="suishen.app.storage.redis_state"):
            state = RedisState(url, prefix="nofast")  # no I/O happens
        assert state._fast is None and state.hot_path_client == "redis-py"
        warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
        assert len(warnings) == 1 and "use redis-py" in warnings[0]
        assert "suishen_redis_hot_path_client" in warnings[0]
        assert "/tmp/redis.sock" not in warnings[0]  # the URL is never logged
    assert RedisState("rediss://127.0.0.1:6380/0", prefix="tls").hot_path_client == "fast"
    chosen = RedisState("redis://127.0.0.1:1/0", prefix="x", fast_client=False)
    assert chosen._fast is None and chosen.hot_path_client == "redis-py"


def test_a_missing_ca_file_is_a_configuration_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="ssl_ca_certs"):
        RedisState(f"rediss://127.0.0.1:6380/0?ssl_ca_certs={tmp_path}/none.pem", prefix="x")


async def test_the_factory_exports_the_hot_path_client_metric(
    redis_session: RedisSession, tmp_path: Path,
) -> None:
    from prometheus_client import generate_latest

    from suishen.app.observability import Metrics
    from suishen.app.settings import Settings
    from suishen.app.storage.factory import open_state

    for url, client in ((redis_session.url, "fast"),
                        (redis_session.url + "?socket_keepalive=true", "redis-py")):
        metrics = Metrics()
        settings = Settings(redis_url=url, redis_prefix=redis_session.test_prefix(),
                            data_dir=tmp_path)
        state = open_state(settings, metrics=metrics)
        try:
            text = generate_latest(metrics.registry).decode()
            other = "redis-py" if client == "fast" else "fast"
            assert f'suishen_redis_hot_path_client{{client="{client}"}} 1.0' in text
            assert f'suishen_redis_hot_path_client{{client="{other}"}} 0.0' in text
            assert await state.first_use(os.urandom(8), ttl_seconds=5)
        finally:
            await state.close()


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


# --- TLS (rediss://) -----------------------------------------------------------------------
def _tls_files(folder: Path) -> tuple[Path, Path, Path]:
    """A throw-away CA and a server certificate for 127.0.0.1, as PEM files."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.UTC)

    def cert(subject: str, key: ec.EllipticCurvePrivateKey, issuer: str,
             signer: ec.EllipticCurvePrivateKey, *, ca: bool) -> x509.Certificate:
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
            .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)]))
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(hours=1))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        )
        if not ca:
            builder = builder.add_extension(
                x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                critical=False)
        return builder.sign(signer, hashes.SHA256())

    ca_key, server_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(
        ec.SECP256R1())
    ca_cert = cert("suishen test CA", ca_key, "suishen test CA", ca_key, ca=True)
    server_cert = cert("127.0.0.1", server_key, "suishen test CA", ca_key, ca=False)
    pem = serialization.Encoding.PEM
    paths = folder / "ca.pem", folder / "server.pem", folder / "server.key"
    paths[0].write_bytes(ca_cert.public_bytes(pem))
    paths[1].write_bytes(server_cert.public_bytes(pem))
    paths[2].write_bytes(server_key.private_bytes(
        pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    return paths


@pytest.fixture
def tls_redis(tmp_path: Path) -> Iterator[tuple[int, Path]]:
    """A private redis-server that speaks TLS only (no plain port): (port, CA file)."""
    ca, certificate, key = _tls_files(tmp_path)
    port = free_port()
    proc = subprocess.Popen(
        [shutil.which("redis-server") or "redis-server", "--port", "0", "--tls-port", str(port),
         "--bind", "127.0.0.1", "--tls-cert-file", str(certificate), "--tls-key-file", str(key),
         "--tls-ca-cert-file", str(ca), "--tls-auth-clients", "no", "--save", "",
         "--appendonly", "no", "--protected-mode", "no"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
                break
            assert proc.poll() is None, "redis-server with TLS did not start"
            assert time.monotonic() < deadline, "redis-server with TLS did not listen"
            time.sleep(0.02)
        yield port, ca
    finally:
        proc.terminate()
        proc.wait(timeout=10)


async def test_rediss_fast_client_and_redis_state(tls_redis: tuple[int, Path]) -> None:
    port, ca = tls_redis
    url = f"rediss://127.0.0.1:{port}/0?ssl_ca_certs={ca}"
    client = FastRedis.from_url(url)
    state = RedisState(url, prefix="tls")
    try:
        assert await client.execute("PING") == b"PONG"
        assert state.hot_path_client == "fast"
        key = os.urandom(8)
        assert await state.first_use(key, ttl_seconds=30)  # fast client, over TLS
        assert not await state.first_use(key, ttl_seconds=30)
        assert await state.rate_limit("p", per_second=5, now_ms=1_800_000_000_000) == 0.0
        await state.ping()  # redis-py, the same URL, over TLS
        await state.cache_set("c", b"v", ttl_seconds=5)
        assert await state.cache_get("c") == b"v"
    finally:
        await client.close()
        await state.close()


async def test_rediss_refuses_a_server_it_cannot_verify(tls_redis: tuple[int, Path]) -> None:
    port, _ = tls_redis
    strict = FastRedis.from_url(f"rediss://127.0.0.1:{port}/0")  # system CAs: unknown CA
    plain = FastRedis.from_url(f"redis://127.0.0.1:{port}/0")  # no TLS at all
    lax = FastRedis.from_url(f"rediss://127.0.0.1:{port}/0?ssl_cert_reqs=none")
    try:
        with pytest.raises(BackendUnavailable, match=r"(?i)certificate"):
            await strict.execute("PING")
        with pytest.raises(BackendUnavailable):
            await plain.execute("PING")
        assert await lax.execute("PING") == b"PONG"
    finally:
        for client in (strict, plain, lax):
            await client.close()


# --- single use in one round trip ------------------------------------------------------------
async def _command_calls(client: FastRedis, command: str) -> int:
    info = (await client.execute("INFO", "commandstats")).decode()
    for line in info.splitlines():
        if line.startswith(f"cmdstat_{command}:"):
            return int(line.split("calls=")[1].split(",")[0])
    return 0


@pytest.mark.parametrize("fast_client", [True, False])
async def test_first_use_is_one_round_trip_new_or_refused(
    private_redis: PrivateRedis, fast_client: bool,
) -> None:
    admin = FastRedis.from_url(private_redis.url)
    state = RedisState(private_redis.url, prefix="once", fast_client=fast_client)
    try:
        await admin.execute("CONFIG", "RESETSTAT")
        key = os.urandom(8)
        assert await state.first_use(key, ttl_seconds=30)
        assert not await state.first_use(key, ttl_seconds=30)
        assert not await state.first_use(key, ttl_seconds=30)
        assert await _command_calls(admin, "set") == 3
        assert await _command_calls(admin, "get") == 0  # SET ... NX GET: no second trip
        # A retry of a call whose reply was lost finds its own token: still "first".
        stored = await admin.execute("GET", state._once_key(key))
        assert isinstance(stored, bytes) and len(stored) == 8
        assert 0 < await admin.execute("TTL", state._once_key(key)) <= 30
    finally:
        await admin.close()
        await state.close()


async def test_first_use_on_a_redis_older_than_7_falls_back_with_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Redis 6 refuses NX with GET ("ERR syntax error"). No such server here, so a small
    RESP server plays one: SET ... NX GET is a syntax error, SET NX answers nil (the key
    exists) and GET returns somebody else's token."""
    import hiredis

    seen: list[list[bytes]] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        parser = hiredis.Reader()
        while data := await reader.read(65536):
            parser.feed(data)
            while (command := parser.gets()) is not False:
                seen.append(command)
                words = [part.upper() for part in command]
                if words[0] == b"SET" and b"GET" in words:
                    writer.write(b"-ERR syntax error\r\n")
                elif words[0] == b"SET":
                    writer.write(b"$-1\r\n")
                else:
                    writer.write(b"$8\r\nsomebody\r\n")
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    state = RedisState(f"redis://127.0.0.1:{port}/0", prefix="old")
    try:
        with caplog.at_level("WARNING", logger="suishen.app.storage.redis_state"):
            assert not await state.first_use(b"k1", ttl_seconds=30)
            assert not await state.first_use(b"k2", ttl_seconds=30)
        assert [c[0] for c in seen] == [b"SET", b"SET", b"GET", b"SET", b"GET"]
        warnings = [r.getMessage() for r in caplog.records if "SET NX GET" in r.getMessage()]
        assert len(warnings) == 1  # once, not per call
    finally:
        await state.close()
        server.close()
        await server.wait_closed()
