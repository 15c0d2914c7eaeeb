"""The phone side of offline codes (SPEC.md §6.1): device keys, credentials, codes.

A :class:`Wallet` holds one P-256 key per time slot in a :class:`KeyStore` (hardware
keystores on phones; :class:`FileKeyStore` for the CLI and tests) and the credential
the service issued for each key. :meth:`Wallet.code` makes a fresh code for ``now``
locally, with no network, from the credential whose slot covers ``now``; it refuses
(:class:`NoCredential`) when none does, rather than make a code a gate will refuse.
:meth:`Wallet.needs_refill` says when the remaining coverage drops below a threshold
(default one day); :meth:`Wallet.enroll` and :meth:`Wallet.refill` talk to the service
through :class:`~suishen.sdk.client.DeviceClient`.

The counter: a code is ``(credential, iat, counter)``; two codes made within the same
second get counters 0, 1, ... (at most 255 in a second), so each is a distinct code for
a gate's replay memory. The last ``(iat, counter)`` is stored, so it survives restarts.

Directory layout (``--dir``): ``wallet.json`` (service URL, device id, credentials and
the counter; no secrets) and ``keys/<key id>.pem`` (PKCS #8 private keys, mode 0600).
Keys and credentials of ended slots are deleted on every code and refill.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from suishen.codecs import cbor, offline
from suishen.errors import CodecError, SuishenError
from suishen.keys import offline as koff
from suishen.keys.algorithms import Alg, PrivateKey
from suishen.sdk.client import DeviceClient
from suishen.sdk.files import atomic_write

WALLET_FILE = "wallet.json"
FORMAT = 1
REFILL_BELOW = 86_400
DEFAULT_BATCH = 72


class WalletError(SuishenError):
    """The wallet cannot do what was asked (not enrolled, corrupt files, ...)."""


class NoCredential(WalletError):
    """No credential covers the requested time: refill (online) first."""


class KeyStore(Protocol):
    """Where device private keys live. Hardware keystores implement this on phones."""

    def create(self) -> tuple[str, dict[str, str]]:
        """A new P-256 key: its id and its public JWK."""

    def signer(self, key_id: str) -> PrivateKey:
        """The signing key with this id."""

    def delete(self, key_id: str) -> None:
        """Forget a key (no error when already gone)."""


class FileKeyStore:
    """Private keys as PKCS #8 PEM files (mode 0600) in a directory."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)

    def create(self) -> tuple[str, dict[str, str]]:
        """See :class:`KeyStore`."""
        self.folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        key = PrivateKey.generate(Alg.ES256)
        key_id = secrets.token_hex(8)
        pem = key.key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        path = self.folder / f"{key_id}.pem"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as out:
            out.write(pem)
        return key_id, key.public().jwk_members()

    def signer(self, key_id: str) -> PrivateKey:
        """See :class:`KeyStore`."""
        if not key_id.isalnum():
            raise WalletError("bad key id")
        try:
            loaded = serialization.load_pem_private_key(
                (self.folder / f"{key_id}.pem").read_bytes(), password=None
            )
        except (OSError, ValueError) as exc:
            raise WalletError(f"device key {key_id} is missing or unreadable") from exc
        if not isinstance(loaded, ec.EllipticCurvePrivateKey):
            raise WalletError(f"device key {key_id} is not a P-256 key")
        return PrivateKey(Alg.ES256, loaded)

    def delete(self, key_id: str) -> None:
        """See :class:`KeyStore`."""
        if key_id.isalnum():
            (self.folder / f"{key_id}.pem").unlink(missing_ok=True)


@dataclass(frozen=True, slots=True)
class StoredCredential:
    """One credential and the id of its key."""

    key_id: str
    credential: bytes
    slot_start: int
    slot_end: int


class Wallet:
    """A device's keys and credentials; see the module docstring."""

    def __init__(self, folder: Path, *, keystore: KeyStore | None = None) -> None:
        self.folder = Path(folder)
        self.keystore = keystore or FileKeyStore(self.folder / "keys")
        self.url: str | None = None
        self.device_id: str | None = None
        self.name: str | None = None
        self.credentials: list[StoredCredential] = []
        self.last: tuple[int, int] = (0, -1)
        if (self.folder / WALLET_FILE).exists():
            self._load()

    # --- online ----------------------------------------------------------------------
    def enroll(
        self, client: DeviceClient, *, name: str = "phone", count: int = DEFAULT_BATCH
    ) -> int:
        """Register this wallet as a device with ``count`` fresh keys; returns how many
        credentials came back."""
        if self.device_id is not None:
            raise WalletError(f"already enrolled as device {self.device_id}")
        keys = [self.keystore.create() for _ in range(count)]
        answer = client.register(name, [jwk for _, jwk in keys])
        self.url, self.device_id, self.name = client.url, str(answer["device_id"]), name
        added = self._take(keys, answer)
        self.save()
        return added

    def refill(self, client: DeviceClient, *, now: int, count: int = DEFAULT_BATCH) -> int:
        """Fetch the next credentials with ``count`` fresh keys."""
        if self.device_id is None:
            raise WalletError("not enrolled: run `suishen wallet enroll` first")
        self.prune(now)
        keys = [self.keystore.create() for _ in range(count)]
        answer = client.refill(self.device_id, [jwk for _, jwk in keys])
        added = self._take(keys, answer)
        self.save()
        return added

    def _take(self, keys: Sequence[tuple[str, dict[str, str]]], answer: dict[str, Any]) -> int:
        """Match the answer's credentials to our keys (by the key each confirms)."""
        by_x = {jwk["x"]: key_id for key_id, jwk in keys}
        used: set[str] = set()
        for entry in answer.get("credentials", []):
            try:
                raw = _unb64u(str(entry["credential"]))
            except (KeyError, TypeError, ValueError) as exc:
                raise WalletError("the service's answer has no credential") from exc
            claims = _credential_claims(raw)
            x = base64.urlsafe_b64encode(claims.device_key.x).rstrip(b"=").decode()
            key_id = by_x.get(x)
            if key_id is None:
                raise WalletError("the service returned a credential for a key we did not send")
            used.add(key_id)
            self.credentials.append(StoredCredential(key_id, raw, claims.nbf, claims.exp))
        for key_id, _ in keys:  # keys the service gave no credential for
            if key_id not in used:
                self.keystore.delete(key_id)
        self.credentials.sort(key=lambda c: c.slot_start)
        return len(used)

    # --- offline ---------------------------------------------------------------------
    def code(self, now: int) -> str:
        """A fresh offline code for ``now`` (no network)."""
        credential = self.covering(now)
        if credential is None:
            raise NoCredential(
                "no offline credential covers this time: refill the wallet while online"
            )
        last_iat, last_counter = self.last
        if now < last_iat:
            # The clock went back: never reuse an (iat, counter) pair already spent.
            raise WalletError("device clock is behind the last code made; check the clock")
        counter = last_counter + 1 if now == last_iat else 0
        if counter > offline.MAX_COUNTER:
            raise WalletError("too many codes in one second")
        text = koff.make_code(
            self.keystore.signer(credential.key_id), credential.credential, iat=now, counter=counter
        )
        self.last = (now, counter)
        self.prune(now)
        self.save()
        return text

    def covering(self, now: int) -> StoredCredential | None:
        """The credential whose slot covers ``now``."""
        for credential in self.credentials:
            if credential.slot_start <= now < credential.slot_end:
                return credential
        return None

    def covered_until(self, now: int) -> int:
        """Until when consecutive credentials cover time from ``now`` (``now`` if none)."""
        until = now
        for credential in self.credentials:
            if credential.slot_start <= until < credential.slot_end:
                until = credential.slot_end
        return until

    def needs_refill(self, now: int, *, below: int = REFILL_BELOW) -> bool:
        """True when less than ``below`` seconds ahead are covered."""
        return self.covered_until(now) - now < below

    def prune(self, now: int) -> None:
        """Delete the keys and credentials of slots that ended."""
        keep = []
        for credential in self.credentials:
            if credential.slot_end <= now:
                self.keystore.delete(credential.key_id)
            else:
                keep.append(credential)
        self.credentials = keep

    # --- files -----------------------------------------------------------------------
    def save(self) -> None:
        """Write ``wallet.json`` atomically."""
        self.folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        state = {
            "format": FORMAT,
            "url": self.url,
            "device_id": self.device_id,
            "name": self.name,
            "last": list(self.last),
            "credentials": [
                {
                    "key_id": c.key_id,
                    "credential": _b64u(c.credential),
                    "slot_start": c.slot_start,
                    "slot_end": c.slot_end,
                }
                for c in self.credentials
            ],
        }
        atomic_write(self.folder / WALLET_FILE, json.dumps(state, indent=1).encode("utf-8"))

    def _load(self) -> None:
        path = self.folder / WALLET_FILE
        try:
            state = json.loads(path.read_text(encoding="utf-8"))
            if state.get("format") != FORMAT:
                raise WalletError(f"{path}: unknown wallet format")
            self.url, self.device_id, self.name = state["url"], state["device_id"], state["name"]
            self.last = (int(state["last"][0]), int(state["last"][1]))
            self.credentials = [
                StoredCredential(
                    str(c["key_id"]), _unb64u(c["credential"]), int(c["slot_start"]),
                    int(c["slot_end"]),
                )
                for c in state["credentials"]
            ]
        except (OSError, ValueError, KeyError, TypeError, IndexError) as exc:
            raise WalletError(f"{path}: not a wallet file ({exc})") from exc


def _credential_claims(raw: bytes) -> offline.CredentialClaims:
    try:
        item = cbor.loads(raw)
        if not isinstance(item, list) or len(item) != 4 or not isinstance(item[2], bytes):
            raise CodecError("not a COSE_Sign1")
        return offline.decode_credential_claims(item[2])
    except CodecError as exc:
        raise WalletError(f"the service's credential is malformed: {exc}") from exc


def _b64u(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64u(text: str) -> bytes:
    if not isinstance(text, str):
        raise ValueError("base64url value must be text")
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


__all__ = [
    "FileKeyStore",
    "KeyStore",
    "NoCredential",
    "StoredCredential",
    "Wallet",
    "WalletError",
]
