"""``suishen keys ...`` without ``--dir``: the key set of the service that the SUISHEN_
settings describe (here the embedded default's SQLite file in SUISHEN_DATA_DIR, sealed
with the development KEK the service itself would generate there). The same commands
against PostgreSQL and a running server: tests/e2e/test_cli_rotation.py."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

import pytest

from suishen.app.cli import main
from suishen.app.devsecrets import resolve_kek
from suishen.app.services.keys import CODES, TOKENS
from suishen.app.settings import Settings
from suishen.app.storage.sqlite import SQLiteDatabase
from suishen.keys.kek import KeyEncryptionKey
from suishen.keys.keyset import KeySet


@pytest.fixture(autouse=True)
def service_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name in list(os.environ):
        if name.startswith("SUISHEN_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("SUISHEN_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.chdir(tmp_path)  # nothing may land in the working directory
    return tmp_path / "data"


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    capsys.readouterr()
    status = main(list(args))
    out, err = capsys.readouterr()
    return status, out, err


def stored(data_dir: Path, name: str) -> KeySet | None:
    async def load() -> KeySet | None:
        db = await SQLiteDatabase.open(data_dir / "suishen.db")
        try:
            return await db.keysets.load(name)
        finally:
            await db.close()

    return asyncio.run(load())


def test_init_list_rotate_revoke_on_the_service_database(
    service_env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status, out, err = run(capsys, "keys", "init")
    assert status == 0, err
    assert str(service_env / "suishen.db") in out
    kek = resolve_kek(Settings())  # the development KEK the service would use
    codes = stored(service_env, CODES)
    assert codes is not None and codes.has_secrets
    codes.check_kek(kek)
    assert sorted(p.name for p in Path.cwd().iterdir()) == ["data"]

    status, _, err = run(capsys, "keys", "init")
    assert status == 1 and "already exists" in err

    assert run(capsys, "keys", "rotate", "--alg", "EdDSA")[0] == 0
    status, out, _ = run(capsys, "keys", "list", "--json")
    listed = json.loads(out)
    assert listed["version"] == 2
    assert [(k["alg"], k["status"]) for k in listed["keys"]] == [
        ("ES256", "retired"), ("EdDSA", "active")]
    first = listed["keys"][0]["kid"]
    assert run(capsys, "keys", "revoke", first)[0] == 0
    after = stored(service_env, CODES)
    assert after is not None and after.version == 3
    assert after.get(first).state.value == "revoked"
    status, out, _ = run(capsys, "keys", "jwks")
    assert "private_sealed" not in out and "d" not in json.loads(out)["keys"][0]


def test_the_tokens_key_set_has_no_secrets(
    service_env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(capsys, "keys", "init", "--key-set", "tokens")[0] == 0
    assert run(capsys, "keys", "rotate", "--key-set", "tokens")[0] == 0
    tokens = stored(service_env, TOKENS)
    assert tokens is not None and tokens.version == 2
    assert not tokens.has_secrets
    assert all(record.blinding_sealed == "" for record in tokens.keys)
    assert stored(service_env, CODES) is None  # only the set that was named


def test_missing_service_key_set_says_how_to_create_it(
    capsys: pytest.CaptureFixture[str]
) -> None:
    status, _, err = run(capsys, "keys", "list")
    assert status == 1
    assert err.count("\n") == 1 and "keys init" in err and "start the service" in err


def test_wrong_kek_for_the_service_key_set_is_one_line(
    service_env: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert run(capsys, "keys", "init")[0] == 0
    monkeypatch.setenv("SUISHEN_KEY_ENCRYPTION_KEY", KeyEncryptionKey.generate_text())
    status, _, err = run(capsys, "keys", "rotate")
    assert status == 1
    assert err.count("\n") == 1 and "wrong key-encryption key" in err
    assert "SUISHEN_KEY_ENCRYPTION_KEY" in err
    codes = stored(service_env, CODES)
    assert codes is not None and codes.version == 1  # nothing written


def test_bad_settings_are_one_line(capsys: pytest.CaptureFixture[str],
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SUISHEN_DATABASE_URL", "mysql://nope")
    status, _, err = run(capsys, "keys", "list")
    assert status == 1 and err.startswith("suishen: error:") and err.count("\n") == 1


async def test_cli_announces_changes_on_the_redis_change_feed(
    service_env: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """With SUISHEN_REDIS_URL set, a CLI change is also published as a ``keys`` event,
    which every running process applies at once (the poll is the fallback)."""
    from suishen.app.storage.base import Event
    from suishen.app.storage.redis_state import RedisState
    from tests.contract.conftest import REDIS_URL

    prefix = f"cli-test-{os.urandom(4).hex()}"
    monkeypatch.setenv("SUISHEN_REDIS_URL", REDIS_URL)
    monkeypatch.setenv("SUISHEN_REDIS_PREFIX", prefix)
    listener = RedisState.from_url(REDIS_URL, prefix=prefix)
    received: list[Event] = []

    async def handler(event: Event) -> None:
        received.append(event)

    listener.subscribe(handler)
    await listener.start()
    try:
        status = await asyncio.to_thread(main, ["keys", "init"])
        assert status == 0
        status = await asyncio.to_thread(main, ["keys", "rotate"])
        assert status == 0
        for _ in range(100):
            keys_events = [e for e in received if e.kind == "keys"]
            if len(keys_events) >= 2:
                break
            await asyncio.sleep(0.02)
        assert [e.data for e in received if e.kind == "keys"] == [
            {"name": "codes", "version": 1}, {"name": "codes", "version": 2}]
    finally:
        await listener.close()
