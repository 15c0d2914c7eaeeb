"""Key-set store contract (issue 7 item 5): ONE interface, compare-and-swap with
versions, run unchanged against SQLite, PostgreSQL and the key directory of the CLI.

Each test gets ``store()``: a new handle on the same backing store each call (think:
the service and the CLI, or two processes)."""

from __future__ import annotations

import asyncio
import secrets
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from suishen.app.keydir import KeyDirectory
from suishen.keys.kek import KeyEncryptionKey
from suishen.keys.keyset import KeySet, KeySetStore
from tests.contract.conftest import PostgresKit, SQLiteKit

NOW = 1_800_000_000
KEK = KeyEncryptionKey(bytes(range(32)))
Opener = Callable[[], Awaitable[KeySetStore]]


def name() -> str:
    return "ks" + secrets.token_hex(5)  # a valid name for every backend


@pytest.fixture(params=["sqlite", "postgres", "directory"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Opener]:
    if request.param == "directory":
        async def open_directory() -> KeySetStore:
            return KeyDirectory(tmp_path / "keys").keysets

        yield open_directory
        return
    kit = SQLiteKit(tmp_path) if request.param == "sqlite" else PostgresKit(
        request.getfixturevalue("postgres_session"))

    async def open_db() -> KeySetStore:
        return (await kit.open()).keysets

    yield open_db
    await kit.aclose()


@pytest.fixture(scope="module")
def versions_of_one_set() -> list[KeySet]:
    v1 = KeySet.create(KEK, now=NOW)
    v2 = v1.rotate(KEK, now=NOW + 10, overlap_seconds=90)
    v3 = v2.revoke(v1.keys[0].kid, now=NOW + 20)
    return [v1, v2, v3]


async def test_missing_set_is_none(store: Opener) -> None:
    s = await store()
    assert await s.load(name()) is None


async def test_create_only_once(store: Opener) -> None:
    s, n = await store(), name()
    first, other = KeySet.create(KEK, now=NOW), KeySet.create(KEK, now=NOW)
    assert await s.save(n, first, expected_version=None) is True
    assert await s.save(n, other, expected_version=None) is False
    assert await (await store()).load(n) == first


async def test_compare_and_swap(store: Opener, versions_of_one_set: list[KeySet]) -> None:
    s, n = await store(), name()
    v1, v2, v3 = versions_of_one_set
    assert await s.save(n, v2, expected_version=1) is False  # nothing stored yet
    assert await s.save(n, v1, expected_version=None)
    assert await s.save(n, v3, expected_version=2) is False  # wrong version
    assert await s.save(n, v2, expected_version=1) is True
    assert await s.save(n, v2, expected_version=1) is False  # stale now
    other = await store()  # another process sees the swap and can go on from it
    assert await other.load(n) == v2
    assert await other.save(n, v3, expected_version=2) is True
    assert await s.load(n) == v3


async def test_versions_see_other_handles_writes(
    store: Opener, versions_of_one_set: list[KeySet]
) -> None:
    writer, reader = await store(), await store()
    a, b = name(), name()
    v1, v2, _ = versions_of_one_set
    assert a not in await reader.versions()
    await writer.save(a, v1, expected_version=None)
    await writer.save(b, v1, expected_version=None)
    await writer.save(b, v2, expected_version=1)
    seen = await reader.versions()
    assert (seen[a], seen[b]) == (1, 2)


async def test_concurrent_swaps_have_one_winner(store: Opener) -> None:
    handles = [await store() for _ in range(4)]
    n, v1 = name(), KeySet.create(KEK, now=NOW)
    await handles[0].save(n, v1, expected_version=None)
    candidates = [v1.rotate(KEK, now=NOW + i, overlap_seconds=90) for i in range(8)]
    results = await asyncio.gather(
        *(handles[i % 4].save(n, c, expected_version=1) for i, c in enumerate(candidates))
    )
    assert results.count(True) == 1
    assert await handles[1].load(n) == candidates[results.index(True)]


def test_directory_compare_and_swap_holds_across_threads(tmp_path: Path) -> None:
    """The directory's lock is real (flock): writers in parallel threads, each with its
    own KeyDirectory, race on one version and exactly one wins."""
    path = tmp_path / "keys"
    v1 = KeySet.create(KEK, now=NOW)
    assert KeyDirectory(path).compare_and_swap("codes", v1, None)
    candidates = [v1.rotate(KEK, now=NOW + i, overlap_seconds=90) for i in range(12)]
    results: list[bool] = []
    barrier = threading.Barrier(len(candidates))

    def race(candidate: KeySet) -> None:
        directory = KeyDirectory(path)
        barrier.wait()
        results.append(directory.compare_and_swap("codes", candidate, 1))

    threads = [threading.Thread(target=race, args=(c,)) for c in candidates]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results.count(True) == 1
    stored = KeyDirectory(path).load()
    assert stored in candidates and stored is not None and stored.version == 2
    # the codes set keeps the file of the layout before named sets; nothing else is left
    assert sorted(p.name for p in path.iterdir()) == ["keyset.json"]
