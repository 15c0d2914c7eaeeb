"""API tests: the real application (embedded default: SQLite + in-process state) driven
through an ASGI client, lifespan included."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from suishen.app.main import create_app
from suishen.app.settings import Settings

ADMIN_TOKEN = "test-admin-token-0123456789abcdef0123456789"


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Settings come from the test, never from the developer's environment."""
    for name in list(os.environ):
        if name.startswith("SUISHEN_") and name != "SUISHEN_TEST_REQUIRE_BACKENDS":
            monkeypatch.delenv(name)


@dataclass
class Api:
    """A client for one running app, with helpers for the common steps."""

    client: httpx.AsyncClient
    app: Any
    settings: Settings

    @property
    def runtime(self) -> Any:
        return self.app.state.runtime

    @property
    def admin(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {ADMIN_TOKEN}"}

    async def citizen(self, sub: str) -> dict[str, str]:
        r = await self.client.post("/v1/dev/citizen-token", json={"sub": sub})
        assert r.status_code == 200, r.text
        return {"Authorization": f"Bearer {r.json()['access_token']}"}

    async def code(self, sub: str) -> str:
        r = await self.client.post("/v1/codes", headers=await self.citizen(sub))
        assert r.status_code == 201, r.text
        return str(r.json()["code"])

    async def partner(
        self, scenes: list[str], attributes: list[str] | None = None, **extra: Any
    ) -> dict[str, Any]:
        body = {"name": f"partner {scenes[0]}", "scenes": scenes,
                "attributes": attributes or [], **extra}
        r = await self.client.post("/v1/admin/partners", json=body, headers=self.admin)
        assert r.status_code == 201, r.text
        partner: dict[str, Any] = r.json()
        t = await self.client.post(
            "/v1/oauth/token",
            data={"grant_type": "client_credentials", "client_id": partner["client_id"],
                  "client_secret": partner["client_secret"]},
        )
        assert t.status_code == 200, t.text
        partner["headers"] = {"Authorization": f"Bearer {t.json()['access_token']}"}
        return partner

    async def verify(self, partner: dict[str, Any], code: str, scene: str,
                     **extra: Any) -> httpx.Response:
        return await self.client.post("/v1/verify", headers=partner["headers"],
                                      json={"code": code, "scene": scene, **extra})


def make_settings(data_dir: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {"data_dir": data_dir, "admin_token": ADMIN_TOKEN, **overrides}
    return Settings(**values)


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[Api]:
    """The embedded default in development posture, on a fresh data directory."""
    settings = make_settings(tmp_path)
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            yield Api(client, app, settings)
