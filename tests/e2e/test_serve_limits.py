"""Issue 8 items 4 and 7: what ``suishen serve`` listens on and how it bounds clients."""

from __future__ import annotations

import os
import socket
import subprocess
import time
from pathlib import Path

from tests.e2e.harness import SUISHEN, Server, free_port


def _serve(tmp_path: Path, host: str, **env: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("SUISHEN_")}
    return subprocess.run(
        [str(SUISHEN), "serve", "--host", host, "--port", str(free_port())],
        env={**base, "SUISHEN_DATA_DIR": str(tmp_path), **env},
        capture_output=True, text=True, timeout=20, check=False,
    )


def test_development_posture_refuses_a_non_loopback_address(tmp_path: Path) -> None:
    done = _serve(tmp_path, "0.0.0.0")
    assert done.returncode != 0
    assert "refuses to listen on 0.0.0.0" in done.stderr
    assert "SUISHEN_ALLOW_DEV_ON_NETWORK=true" in done.stderr
    assert "Traceback" not in done.stderr


def test_development_on_the_network_needs_the_opt_in_and_warns(tmp_path: Path) -> None:
    port = free_port()  # the harness binds 127.0.0.1: start this one on 0.0.0.0 here
    base = {k: v for k, v in os.environ.items() if not k.startswith("SUISHEN_")}
    proc = subprocess.Popen(
        [str(SUISHEN), "serve", "--host", "0.0.0.0", "--port", str(port)],
        env={**base, "SUISHEN_DATA_DIR": str(tmp_path), "SUISHEN_ALLOW_DEV_ON_NETWORK": "true"},
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                    break
            except OSError:
                time.sleep(0.1)
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=20)
    assert "WARNING: development posture listening on 0.0.0.0" in out


def test_an_idle_keep_alive_connection_is_closed_after_the_timeout(tmp_path: Path) -> None:
    srv = Server(tmp_path, SUISHEN_KEEP_ALIVE_SECONDS="1").start()
    try:
        with socket.create_connection(("127.0.0.1", srv.port), timeout=5) as sock:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            answer = b""
            while b'{"status":"ok"}' not in answer:  # the whole answer (head and body)
                chunk = sock.recv(4096)
                assert chunk, answer
                answer += chunk
            assert b" 200 " in answer
            started = time.monotonic()
            assert sock.recv(4096) == b""  # the server closed the idle connection
            assert time.monotonic() - started < 4
    finally:
        srv.stop()
