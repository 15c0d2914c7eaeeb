"""In-process replay memory and revocation set, and a synchronous :class:`Verifier`
that composes them with the pure pipeline (for gates, the SDK, the CLI and the embedded
service)."""

from __future__ import annotations

import heapq
import threading
from collections.abc import Iterable
from typing import Protocol

from suishen.errors import VerificationError
from suishen.keys.keyring import KeyRing
from suishen.verifiers.core import DEFAULT_SKEW, NO_REVOCATIONS, Decision, RevocationView, verify
from suishen.verifiers.policy import DIRECTIONS
from suishen.verifiers.policy import scene as scene_policy
from suishen.verifiers.reasons import Reason


class ReplayMemory(Protocol):
    """Remembers consumed single-use keys until the code could no longer verify."""

    def first_use(self, key: bytes, *, expires_at: int, now: int) -> bool:
        """Atomically record ``key``; True the first time, False on every later call
        while it is remembered (until ``expires_at``)."""


class InMemoryReplay:
    """A thread-safe replay memory for one process.

    Entries are forgotten after ``expires_at`` (callers pass the code's expiry plus
    skew). At most ``max_entries`` are kept: when full after dropping expired ones, new
    keys are refused (``False``, i.e. ``replayed``) — fail closed, never forget early.
    """

    def __init__(self, max_entries: int = 2_000_000) -> None:
        self._seen: dict[bytes, int] = {}
        self._expiry: list[tuple[int, bytes]] = []
        self._lock = threading.Lock()
        self._max = max_entries

    def __len__(self) -> int:
        return len(self._seen)

    def first_use(self, key: bytes, *, expires_at: int, now: int) -> bool:
        """See :class:`ReplayMemory`."""
        with self._lock:
            self._purge(now)
            if key in self._seen:
                return False
            if len(self._seen) >= self._max:
                return False
            self._seen[key] = expires_at
            heapq.heappush(self._expiry, (expires_at, key))
            return True

    def export(self) -> list[tuple[bytes, int]]:
        """Every remembered key with its expiry (for a gate's state file)."""
        with self._lock:
            return list(self._seen.items())

    def restore(self, entries: Iterable[tuple[bytes, int]], *, now: int) -> None:
        """Remember ``entries`` (from :meth:`export`) again, dropping expired ones."""
        with self._lock:
            for key, expires_at in entries:
                if expires_at >= now and key not in self._seen and len(self._seen) < self._max:
                    self._seen[key] = expires_at
                    heapq.heappush(self._expiry, (expires_at, key))

    def _purge(self, now: int) -> None:
        expiry, seen = self._expiry, self._seen
        while expiry and expiry[0][0] < now:
            _, key = heapq.heappop(expiry)
            seen.pop(key, None)


class InMemoryRevocations:
    """A set of revoked subject handles, replaced or amended as a whole."""

    def __init__(self, handles: Iterable[bytes] = ()) -> None:
        self._handles: frozenset[bytes] = frozenset(handles)

    def subject_revoked(self, handle: bytes) -> bool:
        """See :class:`RevocationView`."""
        return handle in self._handles

    def replace(self, handles: Iterable[bytes]) -> None:
        """Swap in a new set (atomic: one reference assignment)."""
        self._handles = frozenset(handles)

    def add(self, handle: bytes) -> None:
        """Revoke one more handle."""
        self._handles = self._handles | {handle}

    def discard(self, handle: bytes) -> None:
        """Lift a revocation."""
        self._handles = self._handles - {handle}


class Verifier:
    """Verification with state: keys, revocations and a replay memory.

    ``verify`` is the whole of SPEC §4 that can be judged without a network: signature,
    times, revocation, scene policy and single use in this process.
    """

    def __init__(
        self,
        keys: KeyRing,
        *,
        skew: int = DEFAULT_SKEW,
        replay: ReplayMemory | None = None,
        revocations: RevocationView = NO_REVOCATIONS,
    ) -> None:
        self.keys = keys
        self.skew = skew
        self.replay: ReplayMemory = replay if replay is not None else InMemoryReplay()
        self.revocations = revocations

    def verify(
        self,
        code: object,
        *,
        scene: str,
        now: int,
        direction: str | None = None,
        checkpoint: str | None = None,
    ) -> Decision:
        """Verify ``code`` presented in ``scene`` at ``now`` (seconds since the epoch).

        Raises :class:`suishen.errors.UnknownScene` for a scene without a policy and
        :class:`suishen.errors.VerificationError` for a direction other than ``in`` or
        ``out``; every judgement about the code itself is a :class:`Decision`.
        """
        policy = scene_policy(scene)
        if direction is not None and direction not in DIRECTIONS:
            # Each spelling would get a single-use slot of its own ("IN", "in ").
            raise VerificationError(f"direction must be one of {DIRECTIONS}, not {direction!r}")
        decision = verify(
            code,
            keys=self.keys,
            policy=policy,
            now=now,
            skew=self.skew,
            direction=direction,
            checkpoint=checkpoint,
            revocations=self.revocations,
        )
        if decision.replay_key is None or decision.expires_at is None:
            return decision
        expires_at = decision.expires_at + self.skew
        if not self.replay.first_use(decision.replay_key, expires_at=expires_at, now=now):
            return decision.rejected(Reason.REPLAYED)
        return decision

