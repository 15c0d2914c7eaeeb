"""Real ``suishen serve`` processes for end-to-end tests."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[2]
SUISHEN = Path(sys.executable).parent / "suishen"
ADMIN_TOKEN = "e2e-admin-token-0123456789abcdef0123456789"
KEK = "ZmFrZS1rZWstZm9yLWUyZS10ZXN0cy0wMTIzNDU2Nzg"  # 32 bytes, base64url, tests only


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class Server:
    """One ``suishen serve`` process on its own port."""

    def __init__(self, data_dir: Path, **env: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.metrics_port = free_port()
        self.metrics_url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        self.log_path = data_dir / f"server-{self.port}.log"
        base = {k: v for k, v in os.environ.items() if not k.startswith("SUISHEN_")}
        self.env = {
            **base,
            "SUISHEN_DATA_DIR": str(data_dir),
            "SUISHEN_ADMIN_TOKEN": ADMIN_TOKEN,
            "SUISHEN_KEY_ENCRYPTION_KEY": KEK,
            "SUISHEN_LOG_LEVEL": "info",
            "SUISHEN_METRICS_PORT": str(self.metrics_port),
            **env,
        }
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 20.0) -> Server:
        log = open(self.log_path, "ab")  # noqa: SIM115 - closed with the process
        self.proc = subprocess.Popen(
            [str(SUISHEN), "serve", "--host", "127.0.0.1", "--port", str(self.port)],
            env=self.env, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited early:\n{self.log()}")
            try:
                if httpx.get(self.url + "/healthz", timeout=0.5).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"server did not start:\n{self.log()}")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20.0) -> int:
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else 0
        self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-4000:]
        except FileNotFoundError:
            return ""

    # --- API helpers ----------------------------------------------------------------
    @property
    def admin(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {ADMIN_TOKEN}"}

    def citizen(self, sub: str) -> dict[str, str]:
        r = httpx.post(self.url + "/v1/dev/citizen-token", json={"sub": sub})
        r.raise_for_status()
        return {"Authorization": f"Bearer {r.json()['access_token']}"}

    def register_partner(self, scenes: list[str], **extra: Any) -> dict[str, Any]:
        r = httpx.post(self.url + "/v1/admin/partners", headers=self.admin,
                       json={"name": f"e2e {scenes[0]}", "scenes": scenes, **extra})
        r.raise_for_status()
        partner: dict[str, Any] = r.json()
        return partner

    def partner_headers(self, partner: dict[str, Any]) -> dict[str, str]:
        r = httpx.post(self.url + "/v1/oauth/token", data={
            "grant_type": "client_credentials", "client_id": partner["client_id"],
            "client_secret": partner["client_secret"]})
        r.raise_for_status()
        return {"Authorization": f"Bearer {r.json()['access_token']}"}
