"""Enterprises and their agencies: the types and the repository interface (SPEC.md §6.3,
issue 11). Implementations: :mod:`.sqlite_enterprises`, :mod:`.postgres_enterprises`;
the contract suite in ``tests/contract/test_enterprises.py`` runs against both.

* An **enterprise** is stored as the operator put it: ``name``, ``uscc`` (validated by
  :mod:`suishen.codecs.uscc` before it gets here), ``status`` and ``attributes`` (a JSON
  object of strings and lists of strings).
* An **agency** is one (enterprise, agent) pair: a random 10-byte handle that the
  enterprise's codes carry (blinded per code, exactly like a citizen's handle), and the
  agent's own subject handle (for the pairwise subject, the attributes and the audit).
  It is created when the agent is added and deleted when the agent is removed; an
  agent who stays keeps their agency (and their unexpired codes keep verifying).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

ENTERPRISE_STATUSES = ("active", "suspended")

AttributeValue = str | list[str]


@dataclass(frozen=True, slots=True)
class Agency:
    """One agent of an enterprise: the agency handle codes carry, and who the agent is."""

    handle: bytes
    agent_sub: str
    agent_handle: bytes


@dataclass(frozen=True, slots=True)
class Enterprise:
    """An enterprise as stored, with its agencies in the order of ``agents``."""

    enterprise_id: str
    name: str
    uscc: str
    status: str
    attributes: Mapping[str, AttributeValue]
    agencies: tuple[Agency, ...] = field(default=())
    created_at: int = 0
    updated_at: int = 0

    @property
    def agents(self) -> list[str]:
        """The agents' subs."""
        return [a.agent_sub for a in self.agencies]

    @property
    def suspended(self) -> bool:
        """True when the enterprise's codes must be refused."""
        return self.status == "suspended"


class EnterpriseRepository(Protocol):
    """Enterprises and agencies."""

    async def put(
        self,
        enterprise_id: str,
        *,
        name: str,
        uscc: str,
        status: str,
        attributes: Mapping[str, AttributeValue],
        agents: Sequence[Agency],
        now: int,
    ) -> Enterprise:
        """Create or replace the enterprise and make its agencies exactly ``agents``
        (all in one transaction): an agent already present keeps the agency handle it
        has (the handle given for it is ignored), a new agent gets the given one, an
        agent left out loses theirs. Raises :class:`~suishen.errors.StorageError` when a
        new agency handle is already taken (the caller retries with fresh ones)."""

    async def get(self, enterprise_id: str) -> Enterprise | None:
        """The enterprise with its agencies."""

    async def all(self) -> list[Enterprise]:
        """Every enterprise with its agencies (loaded into memory at start-up and on
        resync: the verify path never reads the database)."""


def enterprise_from_rows(row: Sequence[Any], agencies: Sequence[Sequence[Any]]) -> Enterprise:
    """An enterprise from its row (``enterprise_id, name, uscc, status, attributes
    (JSON text), created_at, updated_at``) and its agencies' rows (``enterprise_id,
    handle, agent_sub, agent_handle``): the one decoder of both SQL backends."""
    attributes = row[4]
    return Enterprise(
        enterprise_id=row[0], name=row[1], uscc=row[2], status=row[3],
        attributes=json.loads(attributes) if isinstance(attributes, str) else attributes,
        agencies=tuple(Agency(bytes(a[1]), a[2], bytes(a[3])) for a in agencies),
        created_at=int(row[5]), updated_at=int(row[6]),
    )
