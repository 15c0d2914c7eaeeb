"""The citizen token cache (suishen.app.auth.citizen_auth): a hit never accepts what full
validation would refuse — time re-checked on every hit, a withdrawn identity-provider
key flushes it, keyed by a hash, bounded LRU. Real validators, real JWK Set files."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from suishen.app.auth.citizen import CitizenTokenValidator, JwksSource
from suishen.app.auth.citizen_auth import CitizenAuth, token_key
from suishen.app.auth.errors import InvalidCitizenToken
from tests.test_auth_citizen import AUD, ISS, NOW, claims, public_jwk, sign, write_jwks


@pytest.fixture
def keys() -> tuple[Any, Any]:
    return ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())


def _auth(path: Path, *, max_age: float = 300, **kwargs: Any) -> tuple[CitizenAuth, JwksSource]:
    source = JwksSource(str(path), max_age_seconds=max_age, min_refetch_seconds=0)
    validator = CitizenTokenValidator(issuer=ISS, audience=AUD, jwks=source, leeway=30)
    return CitizenAuth([validator], **kwargs), source


async def _refused(auth: CitizenAuth, token: str, now: int) -> None:
    with pytest.raises(InvalidCitizenToken):
        await auth.validate(token, now=now)


async def test_withdrawn_key_flushes_cached_tokens(tmp_path: Path, keys: Any) -> None:
    a, b = keys
    path = tmp_path / "jwks.json"
    write_jwks(path, public_jwk(a, "a"), public_jwk(b, "b"))
    auth, source = _auth(path, max_age=60)
    token_a = sign(a, "ES256", "a", claims(exp=NOW + 3600, sub="by-a"))
    token_b = sign(b, "ES256", "b", claims(exp=NOW + 3600, sub="by-b"))
    assert await auth.validate(token_a, now=NOW) == "by-a"
    assert await auth.validate(token_b, now=NOW) == "by-b"
    write_jwks(path, public_jwk(b, "b"))  # the provider withdraws key a
    assert await auth.validate(token_a, now=NOW + 59) == "by-a"  # the set is not stale yet
    # A full validation after max_age reloads the set: key a is gone, the cache flushed.
    fresh = sign(b, "ES256", "b", claims(exp=NOW + 3600, sub="new"))
    assert await auth.validate(fresh, now=NOW + 61) == "new"
    assert source.fetch_count == 2
    await _refused(auth, token_a, NOW + 62)
    assert await auth.validate(token_b, now=NOW + 62) == "by-b"  # b still verifies (in full)


async def test_a_load_that_only_adds_keys_keeps_the_cache(tmp_path: Path, keys: Any) -> None:
    a, b = keys
    path = tmp_path / "jwks.json"
    write_jwks(path, public_jwk(a, "a"))
    auth, source = _auth(path)
    token = sign(a, "ES256", "a", claims(exp=NOW + 3600))
    await auth.validate(token, now=NOW)
    write_jwks(path, public_jwk(a, "a"), public_jwk(b, "b"))  # rotation adds b
    assert await source.refresh(now=NOW + 1)
    assert token_key(token) in auth._cache


async def test_a_changed_key_under_the_same_kid_flushes(tmp_path: Path, keys: Any) -> None:
    a, b = keys
    path = tmp_path / "jwks.json"
    write_jwks(path, public_jwk(a, "k"))
    auth, source = _auth(path)
    token = sign(a, "ES256", "k", claims(exp=NOW + 3600))
    await auth.validate(token, now=NOW)
    write_jwks(path, public_jwk(b, "k"))
    assert await source.refresh(now=NOW + 1)
    assert not auth._cache
    await _refused(auth, token, NOW + 2)


async def test_hits_recheck_exp_without_leeway(tmp_path: Path, keys: Any) -> None:
    a, _ = keys
    path = tmp_path / "jwks.json"
    write_jwks(path, public_jwk(a, "a"))
    auth, _source = _auth(path)
    token = sign(a, "ES256", "a", claims(exp=NOW + 100))
    assert await auth.validate(token, now=NOW) == "citizen-42"
    assert await auth.validate(token, now=NOW + 99) == "citizen-42"  # a hit
    # Full validation grants 30 s of leeway past exp; the cache answered no hit past exp,
    # and the entry is gone: the next use validates in full.
    assert await auth.validate(token, now=NOW + 100) == "citizen-42"
    await _refused(auth, token, NOW + 131)


async def test_hits_end_after_cache_seconds(tmp_path: Path, keys: Any) -> None:
    """Hits never consult the JWK Set; cache_seconds bounds how long they can go on, so
    a withdrawn key is honoured at most max_age + cache_seconds."""
    a, _ = keys
    path = tmp_path / "jwks.json"
    write_jwks(path, public_jwk(a, "a"))
    auth, _source = _auth(path, max_age=40, cache_seconds=50)
    token = sign(a, "ES256", "a", claims(exp=NOW + 3600))
    await auth.validate(token, now=NOW)
    write_jwks(path, public_jwk(ec.generate_private_key(ec.SECP256R1()), "other"))
    assert await auth.validate(token, now=NOW + 49) == "citizen-42"  # a hit, set stale
    await _refused(auth, token, NOW + 50)  # in full: the set reloads without key a


async def test_a_clock_before_the_validation_validates_again(tmp_path: Path, keys: Any) -> None:
    a, _ = keys
    path = tmp_path / "jwks.json"
    write_jwks(path, public_jwk(a, "a"))
    auth, _source = _auth(path)
    token = sign(a, "ES256", "a", claims(nbf=NOW, iat=NOW, exp=NOW + 3600))
    assert await auth.validate(token, now=NOW) == "citizen-42"
    # Far before nbf (beyond the leeway): a hit would accept it; full validation refuses.
    await _refused(auth, token, NOW - 60)


async def test_only_successes_are_cached_and_no_token_is_kept(tmp_path: Path,
                                                              keys: Any) -> None:
    a, b = keys
    path = tmp_path / "jwks.json"
    write_jwks(path, public_jwk(a, "a"))
    auth, _source = _auth(path)
    forged = sign(b, "ES256", "a", claims(exp=NOW + 3600))
    await _refused(auth, forged, NOW)
    assert not auth._cache
    token = sign(a, "ES256", "a", claims(exp=NOW + 3600))
    await auth.validate(token, now=NOW)
    assert list(auth._cache) == [token_key(token)]
    assert all(token not in repr(entry) for entry in auth._cache.items())
    await _refused(auth, token[:-2] + ("AA" if token[-2:] != "AA" else "BB"), NOW + 1)


async def test_least_recently_used_is_forgotten(tmp_path: Path, keys: Any) -> None:
    a, _ = keys
    path = tmp_path / "jwks.json"
    write_jwks(path, public_jwk(a, "a"))
    auth, _source = _auth(path, cache_size=2)
    t1, t2, t3 = (sign(a, "ES256", "a", claims(exp=NOW + 3600, sub=f"s{i}")) for i in range(3))
    await auth.validate(t1, now=NOW)
    await auth.validate(t2, now=NOW)
    await auth.validate(t1, now=NOW + 1)  # t1 used again: t2 is now the oldest
    await auth.validate(t3, now=NOW + 2)
    assert set(auth._cache) == {token_key(t1), token_key(t3)}
