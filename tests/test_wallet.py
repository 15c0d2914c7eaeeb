"""The SDK wallet (sdk/wallet.py) against a stand-in for the service's credential
issuance, and its codes at an offline gate (issue 9 item 3)."""

from __future__ import annotations

import base64
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from suishen.codecs import bundle as codec
from suishen.keys import bundle as signing
from suishen.keys import offline as koff
from suishen.keys.algorithms import Alg, PrivateKey, PublicKey
from suishen.sdk.gate import Gate
from suishen.sdk.wallet import NoCredential, Wallet, WalletError

SLOT = 3600
T0 = 1_800_000_000
BLINDING = os.urandom(32)


def b64u(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@dataclass
class FakeService:
    """Issues one credential per key for consecutive slots, as the service does."""

    url: str = "http://service.invalid"
    key: PrivateKey = field(default_factory=lambda: PrivateKey.generate(Alg.ES256))
    next_slot: int = T0
    calls: list[str] = field(default_factory=list)
    foreign: bool = False

    def _answer(self, keys: list[dict[str, str]]) -> dict[str, Any]:
        creds = []
        for jwk in keys:
            device = PublicKey.from_jwk(jwk)
            if self.foreign:
                device = PrivateKey.generate(Alg.ES256).public()
            raw = koff.issue_credential(
                self.key, self.key.public().kid_bytes(), BLINDING, handle=b"\x09" * 10,
                nbf=self.next_slot, exp=self.next_slot + SLOT, device=device,
                status_index=int.from_bytes(os.urandom(3), "big") % (1 << 20),
            )
            creds.append({"credential": b64u(raw)})
            self.next_slot += SLOT
        return {"device_id": "dev-1", "credentials": creds}

    def register(self, name: str, keys: list[dict[str, str]]) -> dict[str, Any]:
        self.calls.append(f"register {name} {len(keys)}")
        return self._answer(keys)

    def refill(self, device_id: str, keys: list[dict[str, str]]) -> dict[str, Any]:
        self.calls.append(f"refill {device_id} {len(keys)}")
        return self._answer(keys)


def enrolled(tmp_path: Path, count: int = 4) -> tuple[Wallet, FakeService]:
    service = FakeService()
    wallet = Wallet(tmp_path / "w")
    assert wallet.enroll(service, name="my phone", count=count) == count  # type: ignore[arg-type]
    return wallet, service


def test_codes_are_made_from_the_covering_credential_with_counters(tmp_path: Path) -> None:
    wallet, _ = enrolled(tmp_path)
    first = koff.parse_code(wallet.code(T0 + 10))
    second = koff.parse_code(wallet.code(T0 + 10))
    third = koff.parse_code(wallet.code(T0 + 11))
    assert (first.claims.counter, second.claims.counter, third.claims.counter) == (0, 1, 0)
    later = koff.parse_code(wallet.code(T0 + SLOT + 5))  # the next slot's key and credential
    assert later.credential.claims.nbf == T0 + SLOT
    assert later.credential.claims.device_key != first.credential.claims.device_key


def test_no_credential_for_now_refuses(tmp_path: Path) -> None:
    wallet, _ = enrolled(tmp_path, count=2)
    with pytest.raises(NoCredential):
        wallet.code(T0 - 1)
    with pytest.raises(NoCredential):
        wallet.code(T0 + 2 * SLOT)
    with pytest.raises(NoCredential):
        Wallet(tmp_path / "empty").code(T0)


def test_a_clock_going_back_never_reuses_a_counter(tmp_path: Path) -> None:
    wallet, _ = enrolled(tmp_path)
    wallet.code(T0 + 100)
    with pytest.raises(WalletError):
        wallet.code(T0 + 99)


def test_refill_when_coverage_runs_low(tmp_path: Path) -> None:
    wallet, service = enrolled(tmp_path, count=30)
    assert not wallet.needs_refill(T0)  # 30 hours ahead
    assert wallet.covered_until(T0 + 5) == T0 + 30 * SLOT
    assert wallet.needs_refill(T0 + 10 * SLOT)  # 20 hours left < one day
    assert wallet.refill(service, now=T0 + 10 * SLOT, count=24) == 24  # type: ignore[arg-type]
    assert service.calls[-1] == "refill dev-1 24"
    assert wallet.covered_until(T0 + 10 * SLOT) == T0 + 54 * SLOT
    assert len(wallet.credentials) == 44  # the 10 ended slots were pruned


def test_ended_slots_lose_their_keys(tmp_path: Path) -> None:
    wallet, _ = enrolled(tmp_path, count=3)
    keys = tmp_path / "w" / "keys"
    assert len(list(keys.glob("*.pem"))) == 3
    for pem in keys.glob("*.pem"):
        assert stat.S_IMODE(pem.stat().st_mode) == 0o600
    wallet.code(T0 + 2 * SLOT + 1)
    assert len(list(keys.glob("*.pem"))) == 1


def test_the_wallet_survives_a_restart(tmp_path: Path) -> None:
    wallet, _ = enrolled(tmp_path)
    wallet.code(T0 + 7)
    again = Wallet(tmp_path / "w")
    assert again.device_id == "dev-1" and len(again.credentials) == 4
    assert koff.parse_code(again.code(T0 + 7)).claims.counter == 1
    text = (tmp_path / "w" / "wallet.json").read_text()
    assert "PRIVATE" not in text


def test_enrolling_twice_is_refused(tmp_path: Path) -> None:
    wallet, service = enrolled(tmp_path)
    with pytest.raises(WalletError):
        wallet.enroll(service)  # type: ignore[arg-type]


def test_a_credential_for_a_key_we_did_not_send_is_refused(tmp_path: Path) -> None:
    service = FakeService(foreign=True)
    with pytest.raises(WalletError):
        Wallet(tmp_path / "w").enroll(service, count=1)  # type: ignore[arg-type]


def test_corrupt_wallet_file_is_a_clear_error(tmp_path: Path) -> None:
    folder = tmp_path / "w"
    folder.mkdir()
    for content in ("{", '{"format": 2}', '{"format": 1}'):
        (folder / "wallet.json").write_text(content)
        with pytest.raises(WalletError):
            Wallet(folder)


def test_an_offline_gate_accepts_wallet_codes_and_refuses_their_replay(tmp_path: Path) -> None:
    wallet, service = enrolled(tmp_path, count=3)
    anchor = PrivateKey.generate(Alg.EDDSA)
    pub = service.key.public()
    keys = (codec.BundleKey(pub.kid_bytes(), pub.alg.cose, pub.raw, T0 - 60, None, "active"),)
    bundle = signing.build(
        version=1, now=T0, keys=keys, slot_seconds=SLOT,
        list_sizes=dict.fromkeys(signing.horizon_slots(T0, SLOT), 1 << 20), revoked={},
    )
    gate = Gate.with_anchors({anchor.public().kid_bytes(): anchor.public()})
    gate.load_bundle(signing.sign(anchor, anchor.public().kid_bytes(), bundle))
    code = wallet.code(T0 + 20)
    assert gate.verify(code, scene="metro", direction="in", now=T0 + 22).valid
    assert gate.verify(code, scene="metro", direction="in", now=T0 + 23).reason == "replayed"
    fresh = wallet.code(T0 + 23)
    assert gate.verify(fresh, scene="metro", direction="in", now=T0 + 24).valid
