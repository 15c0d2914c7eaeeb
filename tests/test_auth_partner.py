"""Partner client credentials and access tokens: round trip, forgery, rotation, revocation.

Runs over both signature algorithms through the ``keyset`` fixture (ES256 and EdDSA key
sets created a day before ``T0``). Time is pinned with ``now=``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import string
from typing import Any

import jwt
import pytest

from suishen.app.auth import partner_tokens
from suishen.app.auth.errors import InvalidClient, InvalidPartnerToken
from suishen.app.auth.partner_tokens import (
    CLIENT_ID_PREFIX,
    PartnerClaims,
    PartnerTokens,
    format_scope,
    hash_secret,
    new_client_credentials,
    parse_basic_credentials,
    verify_secret,
)
from suishen.errors import KeyManagementError, WrongKeyEncryptionKey
from suishen.keys.algorithms import Alg
from suishen.keys.kek import KeyEncryptionKey
from suishen.keys.keyset import KeySet

T0 = 1_800_000_000  # the suite's fixed "now" (conftest.T0); key sets are a day older
CLIENT = "pc_library-central"
SCOPES = ["verify:library", "trust-bundle"]


@pytest.fixture
def tokens(keyset: KeySet, kek: KeyEncryptionKey) -> PartnerTokens:
    return PartnerTokens(keyset, kek)


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def segments(token: str) -> tuple[dict[str, Any], dict[str, Any], str]:
    header, payload, signature = token.split(".")
    return _decode(header), _decode(payload), signature


def _decode(segment: str) -> dict[str, Any]:
    padded = segment + "=" * (-len(segment) % 4)
    value: dict[str, Any] = json.loads(base64.urlsafe_b64decode(padded))
    return value


def resign(
    keyset: KeySet,
    kek: KeyEncryptionKey,
    header: dict[str, Any],
    payload: dict[str, Any],
    kid: str | None = None,
) -> str:
    """A token signed with ``keyset``'s active key, with whatever header and claims."""
    private = keyset.signer(kek).private
    headers = {**header, "kid": kid if kid is not None else header["kid"]}
    headers.pop("alg", None)
    body = json.dumps(payload).encode()
    return jwt.api_jws.encode(body, private.key, algorithm=private.alg.value, headers=headers)


def rejected(tokens: PartnerTokens, token: Any, now: int = T0) -> str:
    with pytest.raises(InvalidPartnerToken) as info:
        tokens.verify(token, now=now)
    if isinstance(token, str) and len(token) > 8:
        assert token not in info.value.detail
    return info.value.detail


# --- round trip ------------------------------------------------------------------------------
def test_issue_and_verify(tokens: PartnerTokens, keyset: KeySet) -> None:
    response = tokens.issue(CLIENT, SCOPES, now=T0)
    assert response["token_type"] == "Bearer"
    assert response["expires_in"] == 300
    assert response["scope"] == "verify:library trust-bundle"
    header, payload, _ = segments(response["access_token"])
    active = keyset.active()
    assert header == {"alg": active.alg.value, "kid": active.kid, "typ": "at+jwt"}
    assert payload["iss"] == "urn:suishen" and payload["aud"] == "urn:suishen:partners"
    assert payload["sub"] == payload["client_id"] == CLIENT
    assert payload["iat"] == T0 and payload["exp"] == T0 + 300
    assert len(payload["jti"]) >= 22

    claims = tokens.verify(response["access_token"], now=T0 + 1)
    assert claims == PartnerClaims(
        client_id=CLIENT,
        scopes=frozenset(SCOPES),
        expires_at=T0 + 300,
        issued_at=T0,
        jti=payload["jti"],
        kid=active.kid,
    )
    assert claims.has_scope("verify:library") and not claims.has_scope("verify:hospital")


def test_tokens_are_unique(tokens: PartnerTokens) -> None:
    a = tokens.issue(CLIENT, SCOPES, now=T0)["access_token"]
    b = tokens.issue(CLIENT, SCOPES, now=T0)["access_token"]
    assert a != b


def test_empty_and_duplicate_scopes(tokens: PartnerTokens) -> None:
    response = tokens.issue(CLIENT, ["a", "b", "a"], now=T0)
    assert response["scope"] == "a b"
    empty = tokens.issue(CLIENT, [], now=T0)
    assert tokens.verify(empty["access_token"], now=T0).scopes == frozenset()


@pytest.mark.parametrize("scopes", ["verify:metro", ["has space"], [""], ['quo"te'], [1]])
def test_bad_scopes_are_refused(tokens: PartnerTokens, scopes: Any) -> None:
    with pytest.raises(ValueError):
        tokens.issue(CLIENT, scopes, now=T0)


@pytest.mark.parametrize("client_id", ["", "x" * 256, "a\nb", None])
def test_bad_client_ids_are_refused(tokens: PartnerTokens, client_id: Any) -> None:
    with pytest.raises(ValueError):
        tokens.issue(client_id, SCOPES, now=T0)


def test_configuration_is_checked(keyset: KeySet, kek: KeyEncryptionKey) -> None:
    for kwargs in ({"ttl": 0}, {"ttl": 3601}, {"leeway": -1}, {"issuer": ""}, {"audience": ""}):
        with pytest.raises(ValueError):
            PartnerTokens(keyset, kek, **kwargs)


def test_wrong_kek_fails_at_construction(keyset: KeySet) -> None:
    with pytest.raises(WrongKeyEncryptionKey):
        PartnerTokens(keyset, KeyEncryptionKey(os.urandom(32)))


# --- time ------------------------------------------------------------------------------------
@pytest.mark.parametrize("cache_size", [0, 16])
def test_expired(keyset: KeySet, kek: KeyEncryptionKey, cache_size: int) -> None:
    tokens = PartnerTokens(keyset, kek, cache_size=cache_size)
    token = tokens.issue(CLIENT, SCOPES, now=T0)["access_token"]
    tokens.verify(token, now=T0)  # warm the cache when there is one
    assert tokens.verify(token, now=T0 + 304).client_id == CLIENT  # 5 s leeway
    assert "expired" in rejected(tokens, token, now=T0 + 305)
    assert "expired" in rejected(tokens, token, now=T0 + 100_000)


@pytest.mark.parametrize("cache_size", [0, 16])
def test_issued_in_the_future(keyset: KeySet, kek: KeyEncryptionKey, cache_size: int) -> None:
    tokens = PartnerTokens(keyset, kek, cache_size=cache_size)
    token = tokens.issue(CLIENT, SCOPES, now=T0)["access_token"]
    tokens.verify(token, now=T0)
    assert tokens.verify(token, now=T0 - 5).client_id == CLIENT
    assert "future" in rejected(tokens, token, now=T0 - 6)


def test_partner_token_lifetime_over_the_bound_is_refused(
    tokens: PartnerTokens, keyset: KeySet, kek: KeyEncryptionKey
) -> None:
    """Issue 8 item 9: a genuine signature on a token claiming a longer lifetime than
    this service issues (``exp - iat`` > the bound) is refused, even while unexpired."""
    header, payload, _ = segments(tokens.issue(CLIENT, SCOPES, now=T0)["access_token"])
    assert payload["exp"] - payload["iat"] == tokens.ttl == tokens.max_lifetime
    at_bound = resign(keyset, kek, header, {**payload, "jti": "a"})
    assert tokens.verify(at_bound, now=T0 + 1).client_id == CLIENT
    for lifetime in (tokens.ttl + 1, 86_400, 10 * 365 * 86_400):
        long_lived = resign(keyset, kek, header, {**payload, "exp": T0 + lifetime})
        assert "lifetime" in rejected(tokens, long_lived, now=T0 + 1)
    # backdated iat with a far exp: the same lifetime check
    backdated = resign(keyset, kek, header, {**payload, "iat": T0 - 10_000})
    assert "lifetime" in rejected(tokens, backdated, now=T0 + 1)
    # a configured bound above the TTL accepts longer tokens up to it, not beyond
    lenient = PartnerTokens(keyset, kek, ttl=300, max_lifetime=600)
    assert lenient.verify(resign(keyset, kek, header, {**payload, "exp": T0 + 600}),
                          now=T0 + 1).client_id == CLIENT
    assert "lifetime" in rejected(
        lenient, resign(keyset, kek, header, {**payload, "exp": T0 + 601}), now=T0 + 1)
    assert lenient.min_overlap_seconds == 600 + lenient.leeway
    with pytest.raises(ValueError, match="max_lifetime"):
        PartnerTokens(keyset, kek, ttl=300, max_lifetime=299)


def test_partner_token_issued_in_the_future_beyond_leeway_is_refused(
    tokens: PartnerTokens, keyset: KeySet, kek: KeyEncryptionKey
) -> None:
    """Issue 8 item 9: ``iat`` more than the leeway ahead of ``now`` is refused, also
    for a token whose lifetime is within the bound."""
    header, payload, _ = segments(tokens.issue(CLIENT, SCOPES, now=T0)["access_token"])
    ahead = tokens.leeway + 1
    future = resign(keyset, kek, header, {**payload, "iat": T0 + ahead,
                                          "exp": T0 + ahead + tokens.ttl})
    assert "future" in rejected(tokens, future, now=T0)
    assert tokens.verify(future, now=T0 + 1).client_id == CLIENT  # within leeway then


def test_missing_time_claims(tokens: PartnerTokens, keyset: KeySet, kek: KeyEncryptionKey) -> None:
    header, payload, _ = segments(tokens.issue(CLIENT, SCOPES, now=T0)["access_token"])
    for name in ("exp", "iat"):
        for value in (None, "1800000300", 1.8e9 + 300.5, True):
            changed = {**payload, name: value}
            if value is None:
                del changed[name]
            rejected(tokens, resign(keyset, kek, header, changed))


# --- audience, issuer, forgery -----------------------------------------------------------------
def test_wrong_audience(keyset: KeySet, kek: KeyEncryptionKey, tokens: PartnerTokens) -> None:
    other = PartnerTokens(keyset, kek, audience="urn:someone-else")
    assert "audience" in rejected(tokens, other.issue(CLIENT, SCOPES, now=T0)["access_token"])
    header, payload, _ = segments(tokens.issue(CLIENT, SCOPES, now=T0)["access_token"])
    listed = resign(keyset, kek, header, {**payload, "aud": ["urn:suishen:partners"]})
    assert "audience" in rejected(tokens, listed)


def test_wrong_issuer(keyset: KeySet, kek: KeyEncryptionKey, tokens: PartnerTokens) -> None:
    other = PartnerTokens(keyset, kek, issuer="urn:evil")
    assert "issuer" in rejected(tokens, other.issue(CLIENT, SCOPES, now=T0)["access_token"])


def test_signed_by_another_key_set(
    tokens: PartnerTokens, kek: KeyEncryptionKey, code_alg: Alg
) -> None:
    foreign_set = KeySet.create(kek, now=T0 - 100, alg=code_alg)
    foreign = PartnerTokens(foreign_set, kek)
    rejected(tokens, foreign.issue(CLIENT, SCOPES, now=T0)["access_token"])


def test_foreign_key_with_our_kid(
    tokens: PartnerTokens, keyset: KeySet, kek: KeyEncryptionKey, code_alg: Alg
) -> None:
    foreign_set = KeySet.create(kek, now=T0 - 100, alg=code_alg)
    header, payload, _ = segments(tokens.issue(CLIENT, SCOPES, now=T0)["access_token"])
    forged = resign(foreign_set, kek, header, payload, kid=keyset.active().kid)
    assert "signature" in rejected(tokens, forged)


def test_tampered(tokens: PartnerTokens, keyset: KeySet, kek: KeyEncryptionKey) -> None:
    token = tokens.issue(CLIENT, SCOPES, now=T0)["access_token"]
    h, p, s = token.split(".")
    _header, payload, _ = segments(token)
    more_scope = b64(json.dumps({**payload, "scope": "verify:hospital"}).encode())
    other_client = b64(json.dumps({**payload, "sub": "pc_x", "client_id": "pc_x"}).encode())
    later = b64(json.dumps({**payload, "exp": payload["exp"] + 86_400}).encode())
    flipped = s[:10] + ("A" if s[10] != "A" else "B") + s[11:]
    for forged in (
        f"{h}.{more_scope}.{s}",
        f"{h}.{other_client}.{s}",
        f"{h}.{later}.{s}",
        f"{h}.{p}.{flipped}",
    ):
        assert "signature" in rejected(tokens, forged)


def test_client_id_claim_must_match_sub(
    tokens: PartnerTokens, keyset: KeySet, kek: KeyEncryptionKey
) -> None:
    header, payload, _ = segments(tokens.issue(CLIENT, SCOPES, now=T0)["access_token"])
    rejected(tokens, resign(keyset, kek, header, {**payload, "client_id": "pc_other"}))


def test_typ_must_be_at_jwt(tokens: PartnerTokens, keyset: KeySet, kek: KeyEncryptionKey) -> None:
    header, payload, _ = segments(tokens.issue(CLIENT, SCOPES, now=T0)["access_token"])
    for typ in ("JWT", None, "at+JWT"):
        changed = {**header, "typ": typ} if typ else {k: v for k, v in header.items() if k != "typ"}
        rejected(tokens, resign(keyset, kek, changed, payload))
    assert tokens.verify(resign(keyset, kek, header, payload), now=T0).client_id == CLIENT


def test_alg_attacks(tokens: PartnerTokens, keyset: KeySet) -> None:
    token = tokens.issue(CLIENT, SCOPES, now=T0)["access_token"]
    header, payload, _ = segments(token)
    body = b64(json.dumps(payload).encode())
    record = keyset.active()
    for alg in (
        "none",
        "None",
        "HS256",
        "RS256",
        "ES384",
        "EdDSA" if record.alg is Alg.ES256 else "ES256",
    ):
        head = b64(json.dumps({**header, "alg": alg}).encode())
        assert "algorithm" in rejected(tokens, f"{head}.{body}.")
        # HMAC keyed with the public key bytes, the classic confusion attack.
        mac = hmac.new(record.public, f"{head}.{body}".encode(), hashlib.sha256).digest()
        assert "algorithm" in rejected(tokens, f"{head}.{body}.{b64(mac)}")


def test_garbage(tokens: PartnerTokens) -> None:
    token = tokens.issue(CLIENT, SCOPES, now=T0)["access_token"]
    h, p, s = token.split(".")
    for bad in [
        "",
        ".",
        "..",
        "a.b.c",
        token[:-5],
        token[: len(token) // 2],
        token + ".x.y",
        f"{h}.{p}",
        f"{h}.{p}.",
        f"{h}.{p}.{s}=",
        f"{h}=.{p}.{s}",
        f"{h}.{p}!.{s}",
        f"{h}.{p}.{s[:-1]}",
        f"{b64(b'[]')}.{p}.{s}",
        f"{b64(b'{')}.{p}.{s}",
        f"{h}.{b64(b'[1]')}.{s}",
        "é" + token,
        "x" * 100_000,
        None,
        42,
        b"token",
    ]:
        rejected(tokens, bad)


def test_non_canonical_base64_is_rejected(tokens: PartnerTokens) -> None:
    token = tokens.issue(CLIENT, SCOPES, now=T0)["access_token"]
    h, p, s = token.split(".")
    # The last character of a 64-byte signature (86 chars) carries 4 unused bits.
    last = string.ascii_uppercase + string.ascii_lowercase + string.digits + "-_"
    i = last.index(s[-1])
    twin = s[:-1] + last[i + 1]
    assert base64.urlsafe_b64decode(twin + "==") == base64.urlsafe_b64decode(s + "==")
    rejected(tokens, f"{h}.{p}.{twin}")


# --- rotation and revocation -------------------------------------------------------------------
def test_rotation_overlap(tokens: PartnerTokens, keyset: KeySet, kek: KeyEncryptionKey) -> None:
    old_token = tokens.issue(CLIENT, SCOPES, now=T0)["access_token"]
    rotated = keyset.rotate(kek, now=T0 + 10, overlap_seconds=60)
    after = tokens.with_keyset(rotated)
    new_token = after.issue(CLIENT, SCOPES, now=T0 + 11)["access_token"]
    assert segments(new_token)[0]["kid"] == rotated.active().kid != keyset.active().kid
    assert after.verify(old_token, now=T0 + 20).client_id == CLIENT  # within the overlap
    assert after.verify(old_token, now=T0 + 75).client_id == CLIENT  # overlap + leeway
    assert "no longer" in rejected(after, old_token, now=T0 + 76)
    assert after.verify(new_token, now=T0 + 76).client_id == CLIENT
    rejected(tokens, new_token)  # the old instance does not know the new key


def test_min_overlap_covers_token_lifetime(
    tokens: PartnerTokens, keyset: KeySet, kek: KeyEncryptionKey
) -> None:
    old_token = tokens.issue(CLIENT, SCOPES, now=T0)["access_token"]
    rotated = keyset.rotate(kek, now=T0, overlap_seconds=tokens.min_overlap_seconds)
    after = tokens.with_keyset(rotated)
    assert after.verify(old_token, now=T0 + 304).client_id == CLIENT


def test_revoked_key(tokens: PartnerTokens, keyset: KeySet, kek: KeyEncryptionKey) -> None:
    old_kid = keyset.active().kid
    old_token = tokens.issue(CLIENT, SCOPES, now=T0)["access_token"]
    assert tokens.verify(old_token, now=T0).client_id == CLIENT  # now in the old cache
    revoked = keyset.rotate(kek, now=T0 + 1, overlap_seconds=600).revoke(old_kid, now=T0 + 2)
    after = tokens.with_keyset(revoked)
    assert "revoked" in rejected(after, old_token, now=T0 + 3)
    assert (
        after.verify(after.issue(CLIENT, SCOPES, now=T0 + 3)["access_token"], now=T0 + 3).client_id
        == CLIENT
    )


def test_revoked_active_key_leaves_verify_only(
    tokens: PartnerTokens, keyset: KeySet, kek: KeyEncryptionKey
) -> None:
    token = tokens.issue(CLIENT, SCOPES, now=T0)["access_token"]
    after = tokens.with_keyset(keyset.revoke(keyset.active().kid, now=T0 + 1))
    with pytest.raises(KeyManagementError):
        after.issue(CLIENT, SCOPES, now=T0 + 2)
    rejected(after, token, now=T0 + 2)


def test_pending_key_does_not_verify(keyset: KeySet, kek: KeyEncryptionKey, code_alg: Alg) -> None:
    grown = keyset.add_key(kek, now=T0, alg=code_alg)
    pending = grown.keys[-1]
    tokens = PartnerTokens(grown, kek)
    # Sign with the pending key by promoting a copy of the set, then verify with the original.
    promoted = grown.rotate(kek, now=T0, overlap_seconds=600)
    assert promoted.active().kid == pending.kid
    token = PartnerTokens(promoted, kek).issue(CLIENT, SCOPES, now=T0)["access_token"]
    assert "not known" in rejected(tokens, token)


def test_with_same_keyset_keeps_the_instance(tokens: PartnerTokens, keyset: KeySet) -> None:
    assert tokens.with_keyset(keyset) is tokens
    assert tokens.keyset is keyset


# --- the verification cache --------------------------------------------------------------------
def test_cache_hit_returns_the_same_claims(tokens: PartnerTokens) -> None:
    token = tokens.issue(CLIENT, SCOPES, now=T0)["access_token"]
    first = tokens.verify(token, now=T0)
    assert tokens.verify(token, now=T0 + 1) is first


def test_cache_is_bounded(keyset: KeySet, kek: KeyEncryptionKey) -> None:
    tokens = PartnerTokens(keyset, kek, cache_size=2)
    issued = [tokens.issue(CLIENT, SCOPES, now=T0)["access_token"] for _ in range(5)]
    for token in issued:
        tokens.verify(token, now=T0)
    assert len(tokens._cache) == 2
    assert list(tokens._cache) == issued[-2:]


def test_cache_entry_lifetime(keyset: KeySet, kek: KeyEncryptionKey) -> None:
    tokens = PartnerTokens(keyset, kek, cache_seconds=10)
    token = tokens.issue(CLIENT, SCOPES, now=T0)["access_token"]
    first = tokens.verify(token, now=T0)
    assert tokens.verify(token, now=T0 + 9) is first
    again = tokens.verify(token, now=T0 + 10)  # re-verified in full, then cached anew
    assert again == first and again is not first


def test_failures_are_not_cached(tokens: PartnerTokens) -> None:
    token = tokens.issue(CLIENT, SCOPES, now=T0)["access_token"]
    rejected(tokens, token, now=T0 + 1000)
    assert token not in tokens._cache


# --- client secrets ----------------------------------------------------------------------------
def test_new_client_credentials() -> None:
    client_id, secret = new_client_credentials()
    assert client_id.startswith(CLIENT_ID_PREFIX) and len(client_id) == 19
    assert len(secret) == 43 and len(base64.urlsafe_b64decode(secret + "=")) == 32
    alphabet = set(string.ascii_letters + string.digits + "-_")
    assert set(client_id[3:]) <= alphabet and set(secret) <= alphabet
    assert new_client_credentials() != new_client_credentials()


def test_a_new_client_secret_never_starts_with_a_dash(monkeypatch: pytest.MonkeyPatch) -> None:
    # A command line reads "--client-secret -abc" as an unknown option (seen in CI: 1
    # partner in 64 could not use `suishen bundle fetch`), so such a draw is drawn again.
    draws = iter(["-starts-with-a-dash" + "a" * 24, "b" * 43, "client-id-12"])
    monkeypatch.setattr(partner_tokens.secrets, "token_urlsafe", lambda n: next(draws))
    client_id, secret = new_client_credentials()
    assert secret == "b" * 43 and client_id == CLIENT_ID_PREFIX + "client-id-12"


def test_hash_and_verify_secret() -> None:
    _, secret = new_client_credentials()
    stored = hash_secret(secret)
    scheme, salt, digest = stored.split("$")
    assert scheme == "sha256" and secret not in stored
    assert len(base64.urlsafe_b64decode(salt + "==")) == 16
    assert len(base64.urlsafe_b64decode(digest + "=")) == 32
    assert verify_secret(secret, stored)
    assert not verify_secret(secret + "x", stored)
    assert not verify_secret(secret[:-1], stored)
    assert not verify_secret(new_client_credentials()[1], stored)
    assert not verify_secret("", stored)
    assert hash_secret(secret) != stored  # salted


@pytest.mark.parametrize(
    "stored",
    [
        None,
        "",
        "sha256",
        "sha256$$",
        "md5$AAAA$AAAA",
        "sha256$!!$!!",
        "sha256$AAAAAAAAAAAAAAAAAAAAAA$AAAA",
        42,
    ],
)
def test_verify_secret_with_missing_or_damaged_hash(stored: Any) -> None:
    assert verify_secret("anything", stored) is False


@pytest.mark.parametrize("secret", [None, 42, "x" * 10_000])
def test_verify_secret_with_bad_input(secret: Any) -> None:
    assert verify_secret(secret, hash_secret("s" * 43)) is False


@pytest.mark.parametrize("secret", ["", "x" * 513, None])
def test_hash_secret_refuses_bad_input(secret: Any) -> None:
    with pytest.raises(ValueError):
        hash_secret(secret)


def test_parse_basic_credentials() -> None:
    raw = base64.b64encode(b"pc_abc:s3cr%3At+x").decode()  # form-urlencoded parts
    assert parse_basic_credentials(f"Basic {raw}") == ("pc_abc", "s3cr:t x")
    assert parse_basic_credentials(f"basic  {raw}") == ("pc_abc", "s3cr:t x")


def _basic(raw: bytes) -> str:
    return "Basic " + base64.b64encode(raw).decode()


@pytest.mark.parametrize(
    "header",
    [
        "",
        "Basic",
        "Basic ",
        "Bearer abc",
        "Basic !!!",
        _basic(b"nocolon"),
        _basic(b":secret"),
        _basic(b"id:"),
        _basic(b"\xff:\xfe"),
        "Basic " + "A" * 5000,
        None,
    ],
)
def test_parse_basic_credentials_rejects(header: Any) -> None:
    with pytest.raises(InvalidClient) as info:
        parse_basic_credentials(header)
    assert info.value.oauth_error == "invalid_client"


def test_format_scope() -> None:
    assert format_scope(["b", "a", "b"]) == "b a"
    assert format_scope([]) == ""
    with pytest.raises(ValueError):
        format_scope("ab")
