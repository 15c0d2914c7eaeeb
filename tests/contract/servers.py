"""Private Redis and PostgreSQL servers that tests may stop and start (fault injection).

The shared servers on 5432/6379 must never be stopped by a test: other tests (and
other people) use them. These helpers start throw-away servers on free ports instead:

* :class:`PrivateRedis` — ``redis-server --port N --save "" --appendonly no`` as a child
  process; :meth:`~PrivateRedis.stop` loses every key, like a crash of a Redis without
  persistence.
* :class:`PrivatePostgres` — ``initdb`` into a temporary directory and ``pg_ctl``; data
  survives :meth:`~PrivatePostgres.stop` / :meth:`~PrivatePostgres.start`. ``initdb``
  refuses to run as root, so as root every command runs as the ``postgres`` OS user
  (``runuser``) and the directory is handed to that user.
* :class:`SilentServer` — accepts TCP connections and never answers: a hung or
  black-holed server, for "calls must not hang" tests.

Fixtures (import them into a ``conftest.py`` to use them elsewhere, e.g.
``from tests.contract.servers import private_redis, private_postgres``):

``private_redis`` / ``private_postgres``
    a running private server (one per test session, created on first use); the fixture
    restarts it after the test if the test left it stopped.
``silent_server``
    a :class:`SilentServer` (function scope).

Everything is plain synchronous code: from an async test, call ``stop``/``start``
through ``asyncio.to_thread`` so that background tasks keep running meanwhile.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

__all__ = [
    "PrivatePostgres",
    "PrivateRedis",
    "SilentServer",
    "free_port",
    "private_postgres",
    "private_postgres_server",
    "private_redis",
    "private_redis_server",
    "silent_server",
]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _wait_port(port: int, *, up: bool, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                is_up = True
        except OSError:
            is_up = False
        if is_up == up:
            return
        time.sleep(0.02)
    raise RuntimeError(f"port {port} did not go {'up' if up else 'down'} in {timeout} s")


# --- Redis ---------------------------------------------------------------------------
class PrivateRedis:
    """A ``redis-server`` child process on a free port, without persistence."""

    def __init__(self, port: int | None = None) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not installed (apt-get install redis-server)")
        self.binary = binary
        self.port = port or free_port()
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """``redis://127.0.0.1:<port>/0``."""
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def running(self) -> bool:
        """True while the process runs."""
        return self._proc is not None and self._proc.poll() is None

    def start(self) -> None:
        """Start the server (empty: nothing persists) and wait until it answers PING."""
        if self.running:
            return
        self._proc = subprocess.Popen(
            [
                self.binary, "--port", str(self.port), "--bind", "127.0.0.1",
                "--save", "", "--appendonly", "no", "--daemonize", "no",
                "--protected-mode", "no",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self._ping():
                return
            if self._proc.poll() is not None:
                raise RuntimeError(f"redis-server exited with {self._proc.returncode}")
            time.sleep(0.02)
        raise RuntimeError("private redis-server did not answer PING within 10 s")

    def _ping(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def stop(self) -> None:
        """Stop the server (SIGTERM; every key is lost) and wait until the port is closed."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)
        _wait_port(self.port, up=False, timeout=5)

    def kill(self) -> None:
        """Crash the server (SIGKILL)."""
        proc, self._proc = self._proc, None
        if proc is not None:
            proc.kill()
            proc.wait(timeout=5)

    def restart(self) -> None:
        """Stop then start (an empty server on the same port)."""
        self.stop()
        self.start()


# --- PostgreSQL ---------------------------------------------------------------------
def _pg_bindir() -> Path:
    found = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"),
        key=lambda p: int(Path(p).parts[-3]) if Path(p).parts[-3].isdigit() else 0,
    )
    if not found:
        env = os.environ.get("PG_BINDIR")
        if env and (Path(env) / "initdb").exists():
            return Path(env)
        which = shutil.which("initdb")
        if which is None:
            raise RuntimeError(
                "PostgreSQL server binaries not found (/usr/lib/postgresql/*/bin or "
                "PG_BINDIR); install postgresql"
            )
        return Path(which).parent
    return Path(found[-1]).parent


class PrivatePostgres:
    """A throw-away PostgreSQL cluster (``initdb`` + ``pg_ctl``) on a free port."""

    def __init__(self, port: int | None = None) -> None:
        self.bindir = _pg_bindir()
        self.port = port or free_port()
        self.datadir = Path(tempfile.mkdtemp(prefix="suishen-pg-"))
        self._as_root = os.geteuid() == 0
        self._initialised = False

    @property
    def dsn(self) -> str:
        """A DSN for the ``postgres`` database as the ``postgres`` user (trust auth)."""
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *args: str, timeout: float = 60) -> None:
        cmd = list(args)
        if self._as_root:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        result = subprocess.run(
            cmd, capture_output=True, timeout=timeout, check=False
        )
        if result.returncode != 0:
            raise RuntimeError(
                f"{Path(args[0]).name} failed ({result.returncode}): "
                f"{result.stderr.decode(errors='replace')[-2000:]}"
            )

    def init(self) -> None:
        """``initdb`` (once)."""
        if self._initialised:
            return
        if self._as_root:
            shutil.chown(self.datadir, "postgres", "postgres")
        self._run(
            str(self.bindir / "initdb"), "-D", str(self.datadir / "data"), "-U", "postgres",
            "--auth=trust", "--no-sync", "-E", "UTF8", "--locale=C",
        )
        self._initialised = True

    @property
    def running(self) -> bool:
        """True when the postmaster pid file exists (``pg_ctl`` manages it)."""
        return (self.datadir / "data" / "postmaster.pid").exists()

    def start(self) -> None:
        """``pg_ctl start -w``: returns once the server accepts connections."""
        self.init()
        if self.running:
            return
        options = (
            f"-p {self.port} -k {self.datadir} -c listen_addresses=127.0.0.1 "
            "-c fsync=off -c synchronous_commit=off -c full_page_writes=off "
            "-c max_connections=50 -c shared_buffers=16MB"
        )
        self._run(
            str(self.bindir / "pg_ctl"), "-D", str(self.datadir / "data"), "-o", options,
            "-l", str(self.datadir / "server.log"), "-w", "-t", "30", "start",
        )
        _wait_port(self.port, up=True, timeout=10)

    def stop(self, mode: str = "fast") -> None:
        """``pg_ctl stop -m fast`` (connections are cut) and wait until the port closes."""
        if not self.running:
            return
        self._run(
            str(self.bindir / "pg_ctl"), "-D", str(self.datadir / "data"), "-m", mode,
            "-w", "-t", "30", "stop",
        )
        _wait_port(self.port, up=False, timeout=10)

    def destroy(self) -> None:
        """Stop (immediately) and delete the cluster."""
        with contextlib.suppress(RuntimeError, subprocess.SubprocessError):
            self.stop(mode="immediate")
        shutil.rmtree(self.datadir, ignore_errors=True)


# --- a server that never answers ---------------------------------------------------------
class SilentServer:
    """Accepts TCP connections on a free port and never sends a byte."""

    def __init__(self) -> None:
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(64)
        self._sock.settimeout(0.1)
        self.port: int = self._sock.getsockname()[1]
        self._conns: list[socket.socket] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except OSError:
                continue
            self._conns.append(conn)  # hold it open, read nothing, say nothing

    def close(self) -> None:
        """Stop accepting and drop every connection."""
        self._stop.set()
        self._thread.join(timeout=2)
        for conn in self._conns:
            conn.close()
        self._sock.close()


# --- fixtures ------------------------------------------------------------------------------
def _fail_setup(what: str, exc: BaseException) -> None:
    pytest.fail(
        f"could not start a private {what} for fault-injection tests: {exc}",
        pytrace=False,
    )


@pytest.fixture(scope="session")
def private_redis_server() -> Iterator[PrivateRedis]:
    """One private Redis for the session (see :class:`PrivateRedis`)."""
    try:
        server = PrivateRedis()
        server.start()
    except (OSError, RuntimeError) as exc:
        _fail_setup("redis-server", exc)
        raise
    yield server
    server.stop()


@pytest.fixture
def private_redis(private_redis_server: PrivateRedis) -> Iterator[PrivateRedis]:
    """The session's private Redis, running; restarted afterwards if a test left it down."""
    private_redis_server.start()
    yield private_redis_server
    if not private_redis_server.running:
        private_redis_server.start()


@pytest.fixture(scope="session")
def private_postgres_server() -> Iterator[PrivatePostgres]:
    """One private PostgreSQL cluster for the session (see :class:`PrivatePostgres`)."""
    try:
        server = PrivatePostgres()
        server.start()
    except (OSError, RuntimeError, subprocess.SubprocessError) as exc:
        _fail_setup("PostgreSQL cluster", exc)
        raise
    yield server
    server.destroy()


@pytest.fixture
def private_postgres(private_postgres_server: PrivatePostgres) -> Iterator[PrivatePostgres]:
    """The session's private PostgreSQL, running; restarted afterwards if left down."""
    private_postgres_server.start()
    yield private_postgres_server
    if not private_postgres_server.running:
        private_postgres_server.start()


@pytest.fixture
def silent_server() -> Iterator[SilentServer]:
    """A TCP server that accepts and never answers."""
    server = SilentServer()
    yield server
    server.close()
