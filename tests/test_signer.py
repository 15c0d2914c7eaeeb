"""The signer seam and the key sets behind it (issue 7 item 5): code issuance and
partner tokens sign only through a :class:`~suishen.keys.signer.Signer`, so another
signer (KMS, HSM) needs no change to either; token key sets hold no blinding or
pairwise secrets; the KeyManager picks up a change made by another writer (the CLI)
from the store's versions."""

from __future__ import annotations

import os
from pathlib import Path

import jwt
import pytest

from suishen.app.auth.partner_tokens import PartnerTokens, sign_jwt
from suishen.app.keydir import KeyDirectory
from suishen.app.services.keys import CODES, TOKENS, KeyManager, create_keyset
from suishen.app.storage.memory import MemoryState
from suishen.app.storage.sqlite import SQLiteDatabase
from suishen.errors import KeyManagementError
from suishen.keys.algorithms import Alg, PrivateKey
from suishen.keys.issuer import Issuer
from suishen.keys.kek import KeyEncryptionKey
from suishen.keys.keyring import KeyRing, KeyState, VerificationKey
from suishen.keys.keyset import KeySet
from suishen.keys.signer import Signer, SoftwareSigner
from suishen.verifiers.core import verify
from suishen.verifiers.policy import scene
from suishen.verifiers.reasons import Reason

NOW = 1_800_000_000
KEK = KeyEncryptionKey(bytes(range(32)))


class OutOfProcessSigner:
    """Stands for a KMS/HSM signer: it holds its key elsewhere (here: privately) and
    is reachable only through the Signer protocol. Counts what it was asked to sign."""

    def __init__(self, alg: Alg) -> None:
        self.__key = PrivateKey.generate(alg)
        self.requests: list[bytes] = []

    @property
    def algorithm(self) -> Alg:
        return self.__key.alg

    @property
    def kid(self) -> bytes:
        return self.__key.public().kid_bytes()

    def public_jwk(self) -> dict[str, str]:
        return {**self.__key.public().jwk_members(), "alg": self.algorithm.value}

    def ring(self) -> KeyRing:
        return KeyRing([VerificationKey(self.kid, self.__key.public(), KeyState.ACTIVE)])

    def sign(self, message: bytes) -> bytes:
        self.requests.append(message)
        return self.__key.sign(message)


@pytest.mark.parametrize("alg", list(Alg))
def test_code_issuance_signs_through_any_signer(alg: Alg) -> None:
    signer = OutOfProcessSigner(alg)
    typed: Signer = signer  # the protocol is all issuance needs
    issued = Issuer(typed, os.urandom(32)).issue_personal(os.urandom(10), now=NOW, ttl=60)
    assert len(signer.requests) == 1
    assert issued.kid == signer.kid.hex()
    decision = verify(issued.text, keys=signer.ring(), policy=scene("library"), now=NOW)
    assert decision.reason is Reason.OK


@pytest.mark.parametrize("alg", list(Alg))
def test_partner_tokens_sign_through_the_same_seam(alg: Alg) -> None:
    signer = OutOfProcessSigner(alg)
    token = sign_jwt(signer, {"sub": "gate-1", "exp": NOW + 60}, typ="at+jwt")
    assert len(signer.requests) == 1
    header = jwt.get_unverified_header(token)
    assert header == {"alg": alg.value, "kid": signer.kid.hex(), "typ": "at+jwt"}
    key = jwt.PyJWK(signer.public_jwk(), alg.value)
    claims = jwt.decode(token, key.key, algorithms=[alg.value],
                        options={"verify_exp": False})
    assert claims == {"sub": "gate-1", "exp": NOW + 60}


def test_partner_tokens_issue_with_the_software_signer_and_verify() -> None:
    tokens = PartnerTokens(create_keyset(TOKENS, KEK, now=NOW, alg=Alg.ES256), KEK)
    answer = tokens.issue("gate-1", ["verify:metro"], now=NOW)
    assert tokens.verify(answer["access_token"], now=NOW + 1).client_id == "gate-1"


def test_software_signer_hides_its_key() -> None:
    signer = SoftwareSigner.from_private(PrivateKey.generate(Alg.ES256))
    assert "private" not in repr(signer).lower().replace("softwaresigner", "")
    assert signer.kid == signer.public().kid_bytes()


def test_token_key_sets_carry_no_blinding_or_pairwise_secrets() -> None:
    tokens = create_keyset(TOKENS, KEK, now=NOW, alg=Alg.EDDSA)
    rotated = tokens.rotate(KEK, now=NOW + 10, overlap_seconds=300)
    for keyset in (tokens, rotated, KeySet.from_dict(rotated.to_dict())):
        assert not keyset.has_secrets and keyset.pairwise_sealed == ""
        assert all(record.blinding_sealed == "" for record in keyset.keys)
        keyset.check_kek(KEK)
        assert all(key.blinding is None for key in keyset.keyring(KEK))
        with pytest.raises(KeyManagementError):
            keyset.pairwise_secret(KEK)
        with pytest.raises(KeyManagementError):
            keyset.issuer(KEK)  # a token key cannot issue codes
        assert keyset.signer(KEK).sign(b"m")
    codes = create_keyset(CODES, KEK, now=NOW, alg=Alg.ES256)
    assert codes.has_secrets and codes.keys[0].blinding_sealed
    assert len(codes.pairwise_secret(KEK)) == 32


async def test_key_manager_polls_versions_written_by_another_writer(tmp_path: Path) -> None:
    """The service and the CLI share one store; the KeyManager notices a rotation made
    behind its back from the store's versions (what its once-a-second poll does)."""
    db = await SQLiteDatabase.open(tmp_path / "db.sqlite3")
    await db.migrate()
    try:
        manager = KeyManager(db.keysets, MemoryState(), KEK, alg=Alg.ES256,
                             overlap_seconds={CODES: 90, TOKENS: 305}, clock=lambda: NOW)
        await manager.load_or_create()
        assert not manager.view(TOKENS).keyset.has_secrets
        assert await manager.check_versions() == []
        before = manager.view(CODES)
        # another process (the CLI) rotates through its own handle on the same file
        other = await SQLiteDatabase.open(tmp_path / "db.sqlite3")
        stored = await other.keysets.load(CODES)
        assert stored is not None
        rotated = stored.rotate(KEK, now=NOW + 5, overlap_seconds=90)
        assert await other.keysets.save(CODES, rotated, expected_version=stored.version)
        await other.close()
        assert await manager.check_versions() == [CODES]
        after = manager.view(CODES)
        assert after.keyset == rotated
        assert after.issuer is not None and before.issuer is not None
        assert after.issuer.kid != before.issuer.kid
    finally:
        await db.close()


async def test_key_manager_runs_on_the_key_directory_too(tmp_path: Path) -> None:
    store = KeyDirectory(tmp_path / "keys").keysets
    manager = KeyManager(store, MemoryState(), KEK, alg=Alg.EDDSA,
                         overlap_seconds={CODES: 90, TOKENS: 305}, clock=lambda: NOW)
    await manager.load_or_create()
    await manager.rotate(CODES)
    assert (await store.versions())[CODES] == manager.view(CODES).keyset.version == 2
    assert sorted(p.name for p in (tmp_path / "keys").iterdir()) == [
        "keyset-tokens.json", "keyset.json"]
