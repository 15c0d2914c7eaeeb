"""The Redis key design (docs/storage.md) is Redis Cluster ready: keys that one script
or transaction touches together hash to one slot; per-code keys spread over the cluster.
Checked on real keys written to the shared Redis."""

from __future__ import annotations

import os

from redis.crc import key_slot

from suishen.app.storage.base import Event
from suishen.app.storage.redis_state import RedisState
from tests.contract.conftest import RedisSession


async def test_keys_written_follow_the_documented_design(redis_session: RedisSession) -> None:
    prefix = redis_session.test_prefix()
    state = RedisState(redis_session.url, prefix=prefix)
    try:
        await state.first_use(b"\x01\x02", ttl_seconds=30)
        # One request at 1/s: the bucket key lives the longest GCRA allows (1 s), so the
        # checks below see it even on a loaded machine (at 5/s it lived 200 ms).
        await state.rate_limit("gate-7", per_second=1, now_ms=1_800_000_000_000)
        await state.cache_set("subject:abc", b"v", ttl_seconds=30)
        await state.publish(Event("keys", {"name": "codes"}))
        raw = state._redis  # the test looks at what was really written
        written = {k.decode() async for k in raw.scan_iter(match=f"*{prefix}*", count=1000)}
        assert written == {
            f"{prefix}:once:0102",
            f"{prefix}:rl:{{gate-7}}",
            f"{prefix}:cache:subject:abc",
            f"{{{prefix}}}:feed",
            f"{{{prefix}}}:feed:meta",
        }
        # The publish script touches the stream and its meta hash: one slot.
        assert key_slot(f"{{{prefix}}}:feed".encode()) == key_slot(
            f"{{{prefix}}}:feed:meta".encode()
        )
        # Every key has a TTL except the bounded feed (XADD MAXLEN ~) and its meta hash.
        assert await raw.ttl(f"{prefix}:once:0102") > 0
        assert await raw.pttl(f"{prefix}:rl:{{gate-7}}") > 0
        assert await raw.ttl(f"{prefix}:cache:subject:abc") > 0
    finally:
        await state.close()


def test_single_use_keys_spread_over_the_cluster() -> None:
    state = RedisState("redis://127.0.0.1:1/0", prefix="suishen")  # no I/O happens
    slots = {key_slot(state._once_key(os.urandom(16)).encode()) for _ in range(2000)}
    assert len(slots) > 1500  # no hash tag: ~16384 slots available, not one hot slot
