"""Fuzzing the verification pipeline with hypothesis: whatever the input, ``verify()``
returns a decision (it never raises) and never says ``ok`` — except for the one valid,
unmutated code."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from suishen.codecs import base45, sc1
from suishen.codecs.base45 import ALPHABET
from suishen.keys.issuer import Issuer
from suishen.keys.kek import KeyEncryptionKey
from suishen.keys.keyring import KeyRing
from suishen.keys.keyset import KeySet
from suishen.verifiers.core import Decision, verify
from suishen.verifiers.memory import Verifier
from suishen.verifiers.policy import scene
from suishen.verifiers.reasons import Reason

FUZZ = settings(max_examples=300, deadline=None,
                suppress_health_check=[HealthCheck.too_slow])
HANDLE = bytes.fromhex("00112233445566778899")


@pytest.fixture(scope="module")
def ring(keyset: KeySet, kek: KeyEncryptionKey) -> KeyRing:
    return keyset.keyring(kek)


@pytest.fixture(scope="module")
def code(issuer: Issuer, t0: int) -> str:
    return issuer.issue_personal(HANDLE, now=t0, ttl=60).text


def judge(text: object, ring: KeyRing, t0: int) -> Decision:
    decision = verify(text, keys=ring, policy=scene("library"), now=t0 + 1)
    assert isinstance(decision.reason, Reason)
    return decision


def test_the_unmutated_code_is_ok(code: str, ring: KeyRing, t0: int) -> None:
    assert judge(code, ring, t0).reason is Reason.OK


@FUZZ
@given(text=st.text(max_size=300))
def test_random_text(text: str, ring: KeyRing, t0: int) -> None:
    assert judge(text, ring, t0).reason is not Reason.OK


@FUZZ
@given(text=st.text(alphabet=ALPHABET, max_size=300))
def test_random_alphanumeric_text_behind_the_prefix(text: str, ring: KeyRing, t0: int) -> None:
    assert judge(sc1.PREFIX + text, ring, t0).reason is not Reason.OK


@FUZZ
@given(raw=st.binary(max_size=200))
def test_random_bytes_base45_encoded(raw: bytes, ring: KeyRing, t0: int) -> None:
    assert judge(sc1.to_text(raw), ring, t0).reason is not Reason.OK


@FUZZ
@given(raw=st.binary(max_size=200))
def test_random_bytes_behind_a_cose_sign1_head(raw: bytes, ring: KeyRing, t0: int) -> None:
    # Tag 18 + array(4) + a protected header of the right shape reach deeper parsers.
    text = sc1.to_text(b"\xd2\x84\x47\xa2\x01\x26\x04\x42" + raw)
    assert judge(text, ring, t0).reason is not Reason.OK


@FUZZ
@given(data=st.data())
def test_single_character_mutations(data: st.DataObject, code: str, ring: KeyRing,
                                    t0: int) -> None:
    index = data.draw(st.integers(0, len(code) - 1), label="index")
    char = data.draw(st.one_of(st.sampled_from(ALPHABET), st.characters()), label="char")
    mutated = code[:index] + char + code[index + 1 :]
    if mutated == code:
        assert judge(mutated, ring, t0).reason is Reason.OK
        return
    assert judge(mutated, ring, t0).reason is not Reason.OK


@FUZZ
@given(data=st.data())
def test_single_byte_mutations(data: st.DataObject, code: str, ring: KeyRing, t0: int) -> None:
    raw = sc1.from_text(code)
    index = data.draw(st.integers(0, len(raw) - 1), label="index")
    value = data.draw(st.integers(0, 255).filter(lambda v: v != raw[index]), label="value")
    mutated = raw[:index] + bytes([value]) + raw[index + 1 :]
    assert judge(sc1.to_text(mutated), ring, t0).reason is not Reason.OK


@FUZZ
@given(data=st.data())
def test_insertions_and_deletions(data: st.DataObject, code: str, ring: KeyRing,
                                  t0: int) -> None:
    raw = sc1.from_text(code)
    index = data.draw(st.integers(0, len(raw)), label="index")
    if data.draw(st.booleans(), label="insert"):
        mutated = raw[:index] + data.draw(st.binary(min_size=1, max_size=4)) + raw[index:]
    else:
        mutated = raw[:index] + raw[index + 1 :]
    if mutated != raw:
        assert judge(sc1.to_text(mutated), ring, t0).reason is not Reason.OK


def test_every_truncation(code: str, ring: KeyRing, t0: int) -> None:
    for cut in range(len(code)):
        assert judge(code[:cut], ring, t0).reason is not Reason.OK
    raw = sc1.from_text(code)
    for cut in range(len(raw)):
        assert judge(sc1.to_text(raw[:cut]), ring, t0).reason is not Reason.OK
    assert base45.decode(code[len(sc1.PREFIX):]) == raw


@pytest.mark.parametrize("value", [None, 0, 1.5, b"SC1:", bytearray(b"SC1:"), ["SC1:"], {}])
def test_non_text_inputs(value: object, ring: KeyRing, t0: int) -> None:
    assert judge(value, ring, t0).reason is Reason.MALFORMED


@FUZZ
@given(text=st.text(max_size=200), name=st.sampled_from(["metro", "venue", "hospital"]),
       direction=st.sampled_from([None, "in", "out"]))
def test_stateful_verifier_never_raises(text: str, name: str, direction: str | None,
                                        ring: KeyRing, t0: int) -> None:
    decision = Verifier(ring).verify(sc1.PREFIX + text, scene=name, direction=direction,
                                     now=t0 + 1)
    assert decision.reason is not Reason.OK
