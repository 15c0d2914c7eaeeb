"""Shared fixtures: a fixed key-encryption key, fixed times and one key set per algorithm.

Time is always a parameter (``now=``); nothing here reads the clock.
"""

from __future__ import annotations

import pytest

from suishen.keys.algorithms import Alg
from suishen.keys.issuer import Issuer
from suishen.keys.kek import KeyEncryptionKey
from suishen.keys.keyset import KeySet

# 2027-01-15T08:00:00Z: codes are issued at T0; keys were created a day before.
T0 = 1_800_000_000
KEYS_CREATED = T0 - 86_400


@pytest.fixture(scope="session")
def kek() -> KeyEncryptionKey:
    """A fixed test key-encryption key."""
    return KeyEncryptionKey(bytes(range(32)))


@pytest.fixture(scope="session", params=list(Alg), ids=lambda alg: alg.value)
def code_alg(request: pytest.FixtureRequest) -> Alg:
    """Each signature algorithm in turn."""
    alg: Alg = request.param
    return alg


@pytest.fixture(scope="session")
def keyset(kek: KeyEncryptionKey, code_alg: Alg) -> KeySet:
    """A key set with one active key of ``code_alg``, created at ``KEYS_CREATED``."""
    return KeySet.create(kek, now=KEYS_CREATED, alg=code_alg)


@pytest.fixture(scope="session")
def issuer(keyset: KeySet, kek: KeyEncryptionKey) -> Issuer:
    """The signer of ``keyset``'s active key."""
    return keyset.issuer(kek)


@pytest.fixture(scope="session")
def t0() -> int:
    """The fixed issuing time of the tests' codes (keys are a day older)."""
    return T0
