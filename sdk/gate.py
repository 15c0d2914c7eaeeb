"""An offline gate: decides codes with a trust bundle only (SPEC.md §6.1).

::

    from suishen.sdk.gate import Gate
    gate = Gate.from_anchor_jwks(anchor_jwks)      # GET /v1/trust-anchor, provisioned
    gate.load_bundle(signed_bundle)                # GET /v1/trust-bundle (or a delta)
    decision = gate.verify(code, scene="metro", direction="in", checkpoint="L2-S12-G3")
    if decision.valid: open_barrier()

Both kinds of code are judged by the service's own pipeline
(:func:`suishen.verifiers.core.verify`, which hands offline codes to
:func:`suishen.verifiers.offline.verify_offline`) with the bundle's keys and status lists.

What the gate adds around the pure checks:

* its **clock floor**: it never judges at a time before the newest bundle's
  ``issued_at`` minus skew (the time is raised to the floor);
* **trust health**: between ``refresh_after`` and ``expires_at`` decisions are flagged
  ``degraded``; after ``expires_at`` transit scenes accept flagged and every other
  scene fails closed with ``trust_expired`` (configurable per scene);
* **single use** in its own bounded replay memory, per scene and direction;
* a **log of decisions** to upload later (``suishen gate upload``), bounded (the newest
  ``MAX_LOG`` are kept). A decision is logged as its code, time and
  :class:`GateDecision`; the JSON entry is built when the log is read (:attr:`Gate.log`),
  not on the barrier's path.

:meth:`Gate.save` / :meth:`Gate.load` keep all of it in one file (``--state``), written
atomically; the file holds no secrets (public keys, status bits, replay keys, and the
codes it decided, which are public QR contents).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from suishen.codecs import bundle as codec
from suishen.codecs import cose, sc1
from suishen.errors import CodecError, VerificationError
from suishen.keys.algorithms import PublicKey
from suishen.keys.keyring import KeyRing
from suishen.sdk.files import atomic_write
from suishen.timefmt import rfc3339
from suishen.verifiers.core import DEFAULT_SKEW, verify
from suishen.verifiers.memory import InMemoryReplay
from suishen.verifiers.offline import DEFAULT_LIFETIME
from suishen.verifiers.policy import DIRECTIONS, ScenePolicy
from suishen.verifiers.policy import scene as scene_policy
from suishen.verifiers.reasons import Reason
from suishen.verifiers.trust import Health, TrustState

STATE_FORMAT = 1
MAX_LOG = 100_000


@dataclass(frozen=True, slots=True)
class GateDecision:
    """One gate decision, as ``suishen gate verify`` prints it (one JSON line)."""

    valid: bool
    reason: str
    kind: str | None
    scene: str
    direction: str | None
    checkpoint: str | None
    verified_at: str
    degraded: bool = False
    trust: str = Health.FRESH.value
    code_expires_at: str | None = None
    clock_raised: bool = False

    def to_json(self) -> dict[str, Any]:
        """The JSON object of this decision (``None`` members left out)."""
        # Not dataclasses.asdict: it deep-copies every member (a third of a decision's
        # cost in benchmarks/offline_bench.py).
        out = {name: getattr(self, name) for name in self.__slots__}
        return {k: v for k, v in out.items() if v is not None}


def _trust(anchors: Mapping[bytes, PublicKey], options: Mapping[str, Any]) -> TrustState:
    """An empty trust state with the gate's own skew and lifetime (``options`` are the
    :class:`Gate`'s): its grace for ended slots follows them."""
    return TrustState(anchors=anchors, skew=options.get("skew", DEFAULT_SKEW),
                      lifetime=options.get("lifetime", DEFAULT_LIFETIME))


@dataclass(slots=True)
class Gate:
    """Offline decisions from a trust bundle; see the module docstring."""

    trust: TrustState
    skew: int = DEFAULT_SKEW
    lifetime: int = DEFAULT_LIFETIME
    replay: InMemoryReplay = field(default_factory=InMemoryReplay)
    accept_expired_trust: frozenset[str] = frozenset({"metro", "bus", "ferry"})
    # Decisions not turned into log entries yet, and the entries (see ``log``).
    _decided: list[tuple[str, int, GateDecision]] = field(
        default_factory=list, init=False, repr=False)
    _entries: list[dict[str, Any]] = field(default_factory=list, init=False, repr=False)

    @classmethod
    def from_anchor_jwks(cls, jwks: Mapping[str, Any] | str | bytes, **options: Any) -> Gate:
        """A gate trusting the anchor keys of a JWK Set (``GET /v1/trust-anchor``)."""
        if isinstance(jwks, str | bytes):
            jwks = json.loads(jwks)
        ring = KeyRing.from_jwks(jwks)
        anchors = {key.kid: key.public for key in ring}
        return cls(_trust(anchors, options), **options)

    @classmethod
    def with_anchors(cls, anchors: Mapping[bytes, PublicKey], **options: Any) -> Gate:
        """A gate trusting these anchor keys (kid -> public key)."""
        return cls(_trust(dict(anchors), options), **options)

    def load_bundle(self, signed: bytes) -> codec.Bundle:
        """Take a signed bundle or delta (refused: unsigned, rolled back, mismatched)."""
        return self.trust.accept(signed)

    def load_chain(self, chain: Iterable[bytes]) -> codec.Bundle | None:
        """Take the messages of a bundle file in order; versions already held (or older,
        from a state file that is ahead of the file) are skipped, anything unsigned or
        mismatched is refused."""
        from suishen.verifiers.trust import BundleRollback

        for signed in chain:
            try:
                self.trust.accept(signed)
            except BundleRollback:
                continue  # the gate's own state is newer than this part of the file
        return self.trust.bundle

    # --- deciding -------------------------------------------------------------------
    def verify(
        self,
        code: object,
        *,
        scene: str,
        now: int,
        direction: str | None = None,
        checkpoint: str | None = None,
    ) -> GateDecision:
        """Decide one code presented at ``now`` (seconds since the epoch).

        Raises :class:`~suishen.errors.UnknownScene` for a scene without a policy and
        :class:`~suishen.errors.VerificationError` for a direction other than in/out.
        """
        policy = scene_policy(scene)
        if direction is not None and direction not in DIRECTIONS:
            raise VerificationError(f"direction must be one of {DIRECTIONS}, not {direction!r}")
        at = self.trust.effective_now(now)
        health = self.trust.health(at)
        degraded = health is not Health.FRESH
        fail_closed = health is Health.NONE or (
            health is Health.EXPIRED and policy.name not in self.accept_expired_trust
        )
        kind, reason, expires, replay_key = self._judge(code, policy, at, direction, checkpoint)
        if fail_closed and reason not in (Reason.MALFORMED, Reason.UNSUPPORTED_VERSION):
            # Without current trust the gate cannot judge a well-formed code either way.
            reason, replay_key = Reason.TRUST_EXPIRED, None
        if (
            replay_key is not None
            and expires is not None
            and not self.replay.first_use(replay_key, expires_at=expires + self.skew, now=at)
        ):
            reason = Reason.REPLAYED
        decision = GateDecision(
            valid=reason is Reason.OK,
            reason=reason.value,
            kind=kind,
            scene=policy.name,
            direction=direction,
            checkpoint=checkpoint,
            verified_at=rfc3339(at),
            degraded=degraded,
            trust=health.value,
            code_expires_at=None if expires is None else rfc3339(expires),
            clock_raised=at != now,
        )
        self._record(code, decision, at)
        return decision

    def _judge(
        self,
        code: object,
        policy: ScenePolicy,
        at: int,
        direction: str | None,
        checkpoint: str | None,
    ) -> tuple[str | None, Reason, int | None, bytes | None]:
        # The service's pipeline, with the bundle's keys and status lists.
        decision = verify(
            code,
            keys=self.trust.keyring,
            policy=policy,
            now=at,
            skew=self.skew,
            direction=direction,
            checkpoint=checkpoint,
            credentials=self.trust,
            venues=self.trust,
            offline_lifetime=self.lifetime,
        )
        return decision.kind, decision.reason, decision.expires_at, decision.replay_key

    def _record(self, code: object, decision: GateDecision, at: int) -> None:
        if not isinstance(code, str) or len(code) > sc1.MAX_CODE_CHARS:
            return
        if len(self._decided) + len(self._entries) >= MAX_LOG:
            # Full: keep the newest (an upload empties the log). Rare, so the entries
            # are built here once rather than kept in two forms.
            log = self.log
            del log[: len(log) - MAX_LOG + 1]
        self._decided.append((code, at, decision))

    @property
    def log(self) -> list[dict[str, Any]]:
        """The decisions not yet uploaded, oldest first, as JSON objects (``code``,
        ``decided_at`` and the :meth:`GateDecision.to_json` members); the list itself,
        which the caller may trim."""
        if self._decided:
            self._entries.extend({"code": code, "decided_at": at, **decision.to_json()}
                                 for code, at, decision in self._decided)
            self._decided.clear()
        return self._entries

    @log.setter
    def log(self, entries: list[dict[str, Any]]) -> None:
        self._decided.clear()
        self._entries = list(entries)

    def take_log(self) -> list[dict[str, Any]]:
        """The decisions not yet uploaded (the caller clears them once uploaded)."""
        return list(self.log)

    def forget_uploaded(self, count: int) -> None:
        """Drop the first ``count`` logged decisions (after a successful upload)."""
        del self.log[:count]

    # --- the state file -----------------------------------------------------------
    def save(self, path: Path) -> None:
        """Write the gate's state to ``path`` atomically (temp file + rename)."""
        snapshot = self.trust.snapshot()
        state = {
            "format": STATE_FORMAT,
            "bundle": None if snapshot is None else _b64(codec.encode(snapshot)),
            "replay": [[_b64(k), exp] for k, exp in self.replay.export()],
            "log": self.log,
        }
        atomic_write(Path(path), json.dumps(state, separators=(",", ":")).encode("utf-8"))

    def restore(self, path: Path, *, now: int) -> None:
        """Read a state file written by :meth:`save` (a missing file is a fresh gate).

        The stored bundle was verified when it arrived; it is the gate's own memory, so
        it is applied without its (discarded) anchor signature.
        """
        path = Path(path)
        if not path.exists():
            return
        try:
            state = json.loads(path.read_text(encoding="utf-8"))
            if state.get("format") != STATE_FORMAT:
                raise VerificationError(f"{path}: unknown gate state format")
            if state["bundle"] is not None:
                self.trust.apply(codec.decode(_unb64(state["bundle"])))
            self.replay.restore(((_unb64(k), int(e)) for k, e in state["replay"]), now=now)
            self.log = list(state["log"])
        except (ValueError, KeyError, TypeError, CodecError) as exc:
            raise VerificationError(f"{path}: not a gate state file ({exc})") from exc


# --- bundle files ---------------------------------------------------------------------
# ``suishen bundle fetch`` keeps what it fetched as a CBOR array of the *signed* messages:
# a full bundle followed by the deltas applied to it since. A gate verifies every one of
# them with its anchor, so the file needs no protection of its own; a fetch that gets a
# full bundle replaces the chain.
MAX_CHAIN = 1000


def read_bundle_file(path: Path) -> list[bytes]:
    """The signed messages in a bundle file (not verified here)."""
    from suishen.codecs import cbor

    try:
        chain = cbor.loads(Path(path).read_bytes(), max_depth=2)
    except CodecError as exc:
        raise VerificationError(f"{path}: not a bundle file ({exc})") from exc
    if (
        not isinstance(chain, list)
        or not chain
        or len(chain) > MAX_CHAIN
        or not all(isinstance(m, bytes) for m in chain)
    ):
        raise VerificationError(f"{path}: not a bundle file (an array of signed bundles)")
    return chain


def write_bundle_file(path: Path, chain: list[bytes]) -> None:
    """Write a bundle file atomically."""
    from suishen.codecs import cbor

    atomic_write(Path(path), cbor.dumps(list(chain)))


def unverified_state(chain: list[bytes]) -> TrustState:
    """The trust a chain describes, WITHOUT checking signatures (for ``bundle inspect``
    and to learn the held version before a fetch — never for decisions)."""
    state = TrustState(anchors={})
    for signed in chain:
        try:
            payload = cose.decode_sign1(signed).payload
        except CodecError as exc:
            raise VerificationError(f"not a signed bundle: {exc}") from exc
        state.apply(codec.decode(payload))
    return state


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.b64decode(text, validate=True)


def anchors_of(keys: Iterable[PublicKey]) -> dict[bytes, PublicKey]:
    """kid -> key for anchor public keys (kid as the service derives it)."""
    return {key.kid_bytes(): key for key in keys}
