"""Devices and offline credentials in a running service (SPEC.md §6.1, issue 9).

A citizen's device registers a batch of P-256 public keys and gets one offline
credential per key, for consecutive slots from the current one (``offline_slot_seconds``,
at most ``offline_days`` ahead); a refill continues after the device's last credential.
Each credential is signed by the active code-signing key (with that key's blinding
secret, as personal codes are) and gets a random status index, unique in its slot.

Revocation reaches every process within a second: :meth:`DeviceService.revoke` flips the
credentials' bits in storage (at a new trust version, so gates learn it on their next
sync) and publishes a ``device`` event carrying the flipped ``(slot, index)`` pairs,
which every process adds to its :class:`RevokedCredentials` — the live
:class:`~suishen.verifiers.offline.CredentialStatus` of ``POST /v1/verify``. Suspended
citizens need no entry there: the suspended set already refuses their offline codes.

The key window: a credential lives up to ``offline_days`` days, so a retired
code-signing key must keep verifying (and stay in trust bundles) until the last
credential it signed has ended; the runtime sets the code key set's rotation overlap
accordingly (see :mod:`suishen.app.runtime`).
"""

from __future__ import annotations

import base64
import binascii
import logging
import re
import secrets
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from suishen.app.clock import SYSTEM_CLOCK, Clock
from suishen.app.services.keys import KeyManager
from suishen.app.services.subjects import SubjectService
from suishen.app.storage.base import Database, Event, StateBackend, Subject
from suishen.app.storage.devices import CredentialRow, Device
from suishen.app.text import PRINTABLE_PATTERN
from suishen.errors import (
    BackendUnavailable,
    InvalidRequest,
    IssuanceError,
    KeyManagementError,
    NotFound,
    SubjectSuspended,
)
from suishen.keys import offline as koff
from suishen.keys.algorithms import PublicKey

log = logging.getLogger("suishen.devices")

MAX_NAME = 64
MAX_BATCH = 500
_ALLOCATION_ROUNDS = 16
_COORD = re.compile(r"[A-Za-z0-9_-]{43}")
_NAME = re.compile(PRINTABLE_PATTERN)
_JWK_MEMBERS = frozenset({"kty", "crv", "x", "y", "alg", "use", "kid", "key_ops", "ext"})
_PRIVATE_MEMBERS = frozenset({"d", "p", "q", "dp", "dq", "qi", "oth", "k"})


class RevokedCredentials:
    """``(slot start, status index)`` of revoked devices' credentials, in memory: what
    the verify hot path asks (:class:`~suishen.verifiers.offline.CredentialStatus`).
    The service has live state for every slot, so it never answers None."""

    def __init__(self) -> None:
        self._pairs: set[tuple[int, int]] = set()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._pairs)

    def credential_revoked(self, slot_start: int, index: int) -> bool | None:
        """True when the credential's device is revoked."""
        return (slot_start, index) in self._pairs

    def add(self, pairs: Iterable[tuple[int, int]]) -> None:
        """Mark credentials revoked."""
        with self._lock:
            self._pairs.update(pairs)

    def replace(self, pairs: Iterable[tuple[int, int]]) -> None:
        """Swap in a freshly loaded set."""
        fresh = set(pairs)
        with self._lock:
            self._pairs = fresh

    def prune(self, before: int) -> None:
        """Forget credentials whose slot started before ``before`` (ended long ago)."""
        with self._lock:
            self._pairs = {p for p in self._pairs if p[0] >= before}


@dataclass(frozen=True, slots=True)
class IssuedCredential:
    """One credential as handed to the device."""

    credential: bytes
    slot_start: int
    slot_end: int
    kid: str


@dataclass(frozen=True, slots=True)
class Enrolment:
    """A device and the credentials just issued for it."""

    device: Device
    credentials: list[IssuedCredential]


def parse_device_keys(keys: object, *, max_keys: int) -> list[PublicKey]:
    """Strictly validate a batch of device public keys (JWK, RFC 7517/7518).

    Each MUST be an object with ``kty`` ``EC``, ``crv`` ``P-256``, ``x`` and ``y`` of
    32 bytes in unpadded base64url, a point on the curve, and no private member; ``alg``
    (if any) ``ES256``; no key may appear twice. The batch holds 1..``max_keys`` keys.
    Raises :class:`InvalidRequest` naming the offending entry (never its value).
    """
    if not isinstance(keys, list):
        raise InvalidRequest("keys must be an array of P-256 public JWKs")
    if not 1 <= len(keys) <= max_keys:
        raise InvalidRequest(f"keys must hold 1 to {max_keys} keys (one per slot in the "
                             "credential window)")
    out: list[PublicKey] = []
    seen: set[bytes] = set()
    for n, jwk in enumerate(keys):
        where = f"keys[{n}]"
        if not isinstance(jwk, dict):
            raise InvalidRequest(f"{where} is not a JWK object")
        if _PRIVATE_MEMBERS & jwk.keys():
            raise InvalidRequest(f"{where} holds a private key member: send public keys only")
        unknown = jwk.keys() - _JWK_MEMBERS
        if unknown:
            raise InvalidRequest(f"{where} has unknown members")
        if jwk.get("kty") != "EC":
            raise InvalidRequest(f"{where}: kty must be EC")
        if jwk.get("crv") != "P-256":
            raise InvalidRequest(f"{where}: crv must be P-256")
        if jwk.get("alg", "ES256") != "ES256":
            raise InvalidRequest(f"{where}: alg must be ES256")
        if jwk.get("use", "sig") != "sig":
            raise InvalidRequest(f"{where}: use must be sig")
        x, y = jwk.get("x"), jwk.get("y")
        if not (isinstance(x, str) and isinstance(y, str)
                and _COORD.fullmatch(x) and _COORD.fullmatch(y)):
            raise InvalidRequest(f"{where}: x and y must be 32 bytes in unpadded base64url")
        try:
            raw = base64.urlsafe_b64decode(x + "=") + base64.urlsafe_b64decode(y + "=")
            if len(raw) != 64 or _b64u(raw[:32]) != x or _b64u(raw[32:]) != y:
                raise InvalidRequest(f"{where}: x and y must be canonical base64url")
            public = PublicKey.from_jwk({"kty": "EC", "crv": "P-256", "x": x, "y": y})
        except (KeyManagementError, ValueError, binascii.Error):
            raise InvalidRequest(f"{where} is not a point on P-256") from None
        point = koff.device_key_of(public).sec1()
        if point in seen:
            raise InvalidRequest(f"{where} repeats a key of this batch")
        seen.add(point)
        out.append(public)
    return out


def _b64u(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def check_name(name: object) -> str:
    """A device name: printable text of 1..64 characters."""
    if not isinstance(name, str) or not 1 <= len(name) <= MAX_NAME or not _NAME.fullmatch(name):
        raise InvalidRequest(f"name must be printable text of 1 to {MAX_NAME} characters")
    if re.search("[\ud800-\udfff]", name):
        raise InvalidRequest(f"name must be printable text of 1 to {MAX_NAME} characters")
    return name


class DeviceService:
    """Registration, refill, listing and revocation of citizens' devices."""

    def __init__(
        self,
        db: Database,
        state: StateBackend,
        *,
        keys: KeyManager,
        subjects: SubjectService,
        slot_seconds: int,
        slots: int,
        list_size: int,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self._db = db
        self._state = state
        self._keys = keys
        self._subjects = subjects
        self.slot_seconds = slot_seconds
        self.slots = slots
        self.list_size = list_size
        self._clock = clock
        self.revoked = RevokedCredentials()

    @property
    def max_batch(self) -> int:
        """The largest batch of keys (the slots of the window, at most 500)."""
        return min(MAX_BATCH, self.slots)

    def _window(self, now: int) -> tuple[int, int]:
        """The current slot's start and the end of the credential window."""
        first = now - now % self.slot_seconds
        return first, first + self.slots * self.slot_seconds

    async def load_revoked(self) -> None:
        """(Re)load revoked devices' unexpired credentials (start-up, resync)."""
        now = int(self._clock())
        self.revoked.replace(
            await self._db.devices.revoked_device_credentials(after=now - self.slot_seconds)
        )

    # --- citizens ---------------------------------------------------------------------
    async def register(self, sub: str, *, name: object, keys: object) -> Enrolment:
        """A new device of citizen ``sub`` with one credential per key, for consecutive
        slots from the current one. Raises :class:`InvalidRequest` (bad name or keys),
        :class:`SubjectSuspended`, :class:`IssuanceError` (no active signing key)."""
        name = check_name(name)
        publics = parse_device_keys(keys, max_keys=self.max_batch)
        subject = await self._active_subject(sub)
        await self._refuse_known(publics)
        now = int(self._clock())
        device = Device(secrets.token_urlsafe(16), sub, name, now)
        await self._db.devices.create(device)
        first, _ = self._window(now)
        issued = await self._issue(subject, device, publics, first, now)
        stored = await self._db.devices.get(device.device_id)
        return Enrolment(stored or device, issued)

    async def refill(self, sub: str, device_id: str, *, keys: object) -> Enrolment:
        """The next credentials of a device: slots after its last credential, never
        beyond the window and never a slot it has. Keys beyond the free slots get no
        credential (the wallet deletes keys that came back unanswered)."""
        publics = parse_device_keys(keys, max_keys=self.max_batch)
        device = await self._own_device(sub, device_id)
        if device.revoked:
            raise NotFound("no such device")  # a revoked device is gone for its owner
        subject = await self._active_subject(sub)
        await self._refuse_known(publics)
        now = int(self._clock())
        first, _ = self._window(now)
        start = max(first, device.valid_until or first)
        issued = await self._issue(subject, device, publics, start, now)
        stored = await self._db.devices.get(device.device_id)
        return Enrolment(stored or device, issued)

    async def devices(self, sub: str) -> list[Device]:
        """The citizen's devices, oldest first."""
        return await self._db.devices.for_subject(sub)

    async def revoke(self, device_id: str, *, sub: str | None) -> Device:
        """Revoke a device (``sub``: only the citizen's own; None: an operator). Its
        offline codes are refused online within a second in every process and at gates
        after their next sync. Revoking twice is harmless. :class:`NotFound` else."""
        if sub is not None:
            await self._own_device(sub, device_id)
        try:
            device, pairs = await self._db.devices.revoke(device_id, now=int(self._clock()))
        except KeyError:
            raise NotFound("no such device") from None
        if pairs:
            event = Event("device", {"device_id": device_id,
                                     "revoked": [[s, i] for s, i in pairs]})
            await self.apply(event)  # this process at once, whatever the feed does
            try:
                await self._state.publish(event)
            except BackendUnavailable:
                log.warning("device revocation not announced: state backend unavailable")
        return device

    async def apply(self, event: Event) -> None:
        """Apply a ``device`` event (the pairs it revoked)."""
        try:
            pairs = [(int(s), int(i)) for s, i in event.data["revoked"]]
        except (KeyError, TypeError, ValueError):
            log.warning("ignored malformed device event")
            return
        self.revoked.add(pairs)

    async def subject_changed(self, subject: Subject) -> None:
        """After an operator's write: flip (suspension) or clear (reactivation) the bits
        of the citizen's credentials in storage, at a new trust version."""
        await self._db.devices.subject_status(
            subject.sub, suspended=subject.suspended, now=int(self._clock())
        )

    # --- internals ------------------------------------------------------------------
    async def _active_subject(self, sub: str) -> Subject:
        subject = await self._subjects.enroll(sub)
        if subject.suspended or self._subjects.revocations.subject_revoked(subject.handle):
            raise SubjectSuspended("this citizen's codes are suspended")
        return subject

    async def _own_device(self, sub: str, device_id: str) -> Device:
        device = await self._db.devices.get(device_id)
        if device is None or device.sub != sub:
            raise NotFound("no such device")
        return device

    async def _refuse_known(self, publics: Sequence[PublicKey]) -> None:
        points = [koff.device_key_of(p).sec1() for p in publics]
        known = await self._db.devices.known_keys(points)
        if known:
            first = next(n for n, p in enumerate(points) if p in known)
            raise InvalidRequest(f"keys[{first}] is already registered: use fresh keys")

    async def _issue(self, subject: Subject, device: Device, publics: Sequence[PublicKey],
                     start: int, now: int) -> list[IssuedCredential]:
        issuer = self._keys.view().issuer
        if issuer is None:
            raise IssuanceError("no active signing key; an operator must rotate keys")
        _, end = self._window(now)
        slots = list(range(start, end, self.slot_seconds))[: len(publics)]
        kid = issuer.kid.hex()
        pending = {
            slot: (public, koff.device_key_of(public).sec1())
            for slot, public in zip(slots, publics, strict=False)
        }
        placed: dict[int, int] = {}
        for _ in range(_ALLOCATION_ROUNDS):
            if not pending:
                break
            rows = [
                CredentialRow(device.device_id, slot, slot + self.slot_seconds,
                              secrets.randbelow(self.list_size), kid, point)
                for slot, (_, point) in pending.items()
            ]
            for row in await self._db.devices.add_credentials(rows):
                placed[row.slot_start] = row.status_index
                pending.pop(row.slot_start, None)
        if pending:
            # Only under a concurrent refill of the same device (or a full status list).
            raise BackendUnavailable("could not allocate credential slots; retry")
        out = []
        for slot, public in zip(slots, publics, strict=False):
            credential = koff.sign_credential(
                issuer.signer, issuer.blinding, handle=subject.handle,
                nbf=slot, exp=slot + self.slot_seconds, device=public,
                status_index=placed[slot],
            )
            out.append(IssuedCredential(credential, slot, slot + self.slot_seconds, kid))
        return out


def credential_json(issued: IssuedCredential) -> dict[str, Any]:
    """The wire form of one credential (base64url without padding)."""
    from suishen.timefmt import rfc3339

    return {
        "credential": base64.urlsafe_b64encode(issued.credential).rstrip(b"=").decode(),
        "slot_start": rfc3339(issued.slot_start),
        "slot_end": rfc3339(issued.slot_end),
        "kid": issued.kid,
    }
