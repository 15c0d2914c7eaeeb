"""Scene policies: small, pure, composable rules applied after the cryptographic check.

A scene is a :class:`ScenePolicy`: a rule (usually an :class:`AllOf` of smaller rules)
plus whether a code is single use there. Adding a scene is adding an entry to
:data:`SCENES`, not editing the verifier. Single use is a *key*, not a lookup: the policy
says which replay key a presentation consumes (scene + direction + kid + cti) and the
caller's replay memory decides whether it was seen — that part is stateful and lives
outside the pure core.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from suishen.errors import UnknownScene
from suishen.verifiers.reasons import Reason

DIRECTIONS = ("in", "out")


@dataclass(frozen=True, slots=True)
class Presentation:
    """What a rule may look at: the code's kind and where it is being presented."""

    kind: str
    scene: str
    direction: str | None = None
    checkpoint: str | None = None


class Rule(Protocol):
    """A policy rule: None to pass, or the reason to reject."""

    def check(self, presentation: Presentation) -> Reason | None:
        """Judge a presentation."""


@dataclass(frozen=True, slots=True)
class AcceptKinds:
    """Only these code kinds are accepted."""

    kinds: frozenset[str]

    def check(self, presentation: Presentation) -> Reason | None:
        """Reject other kinds as ``scene_not_allowed``."""
        return None if presentation.kind in self.kinds else Reason.SCENE_NOT_ALLOWED


@dataclass(frozen=True, slots=True)
class AnyKind:
    """Every kind of code is accepted: for judging a code's validity outside any scene
    (``POST /v1/resolve``), never a scene of its own."""

    def check(self, presentation: Presentation) -> Reason | None:
        """Accept."""
        return None


@dataclass(frozen=True, slots=True)
class AllOf:
    """Every rule must pass; the first failure wins. An empty list is refused: "no
    rules" must never mean "valid"."""

    rules: tuple[Rule, ...]

    def __post_init__(self) -> None:
        if not self.rules:
            raise ValueError("AllOf needs at least one rule")

    def check(self, presentation: Presentation) -> Reason | None:
        """Run the rules in order."""
        for rule in self.rules:
            reason = rule.check(presentation)
            if reason is not None:
                return reason
        return None


@dataclass(frozen=True, slots=True)
class ScenePolicy:
    """A scene: its rule, and whether a code is consumed on first acceptance.

    ``transit`` scenes take a direction (``in``/``out``); a missing one counts as ``in``.
    (What a partner sees of a citizen is its registration ∩ the citizen's attributes:
    that is the service's business, not the scene's.)
    """

    name: str
    rule: Rule
    single_use: bool
    transit: bool = False

    def check(self, presentation: Presentation) -> Reason | None:
        """Apply the scene's rule."""
        return self.rule.check(presentation)

    def direction_of(self, direction: str | None) -> str:
        """The direction a presentation counts under ("" outside transit)."""
        if not self.transit:
            return ""
        return direction or "in"

    def replay_key(self, kid: bytes, cti: bytes, direction: str | None) -> bytes | None:
        """The key a single-use presentation consumes, or None for re-scannable scenes.

        Once per scene and direction, across all checkpoints (SPEC §4).
        """
        if not self.single_use:
            return None
        return f"{self.name}:{self.direction_of(direction)}:".encode() + kid + cti


_PERSONAL_OR_OFFLINE = AcceptKinds(frozenset({"personal", "offline"}))
_PERSONAL_ONLY = AcceptKinds(frozenset({"personal"}))  # medical identity: server-signed only
# Government service windows (SPEC.md §6.3): enterprise codes are shown there, and
# citizens do their own business there too. Re-scannable: a window may scan twice.
_GOVERNMENT = AcceptKinds(frozenset({"personal", "offline", "enterprise"}))

SCENES: dict[str, ScenePolicy] = {
    "metro": ScenePolicy("metro", AllOf((_PERSONAL_OR_OFFLINE,)), single_use=True, transit=True),
    "bus": ScenePolicy("bus", AllOf((_PERSONAL_OR_OFFLINE,)), single_use=True, transit=True),
    "ferry": ScenePolicy("ferry", AllOf((_PERSONAL_OR_OFFLINE,)), single_use=True, transit=True),
    "venue": ScenePolicy("venue", AllOf((_PERSONAL_OR_OFFLINE,)), single_use=True),
    "hospital": ScenePolicy("hospital", AllOf((_PERSONAL_ONLY,)), single_use=False),
    "pharmacy": ScenePolicy("pharmacy", AllOf((_PERSONAL_ONLY,)), single_use=False),
    "library": ScenePolicy("library", AllOf((_PERSONAL_OR_OFFLINE,)), single_use=False),
    "government": ScenePolicy("government", AllOf((_GOVERNMENT,)), single_use=False),
}

# Unified recognition (POST /v1/resolve, SPEC.md §6.3): a code's validity, whatever its
# kind, never consumed (not single use) and in no scene a partner can register for (it is
# not in SCENES). Decisions are audited under the scene name "resolve".
RESOLVE = ScenePolicy("resolve", AllOf((AnyKind(),)), single_use=False)

ATTRIBUTES = frozenset({"name", "medical_insurance_id", "reader_id", "transit_account"})


def scene(name: str) -> ScenePolicy:
    """The policy of a scene; :class:`UnknownScene` for a name with none."""
    try:
        return SCENES[name]
    except (KeyError, TypeError):
        raise UnknownScene(f"unknown scene {name!r}") from None
