"""Venue codes (codecs/venue.py, keys/venue.py, verifiers/venue.py): the documented
layout byte by byte, the QR 5-M budget read back by zxing-cpp, the kind dispatch of
``sc1.parse_code``, and hostile input (fuzzed: never valid)."""

from __future__ import annotations

import io
import os
from dataclasses import dataclass, field

import pytest
import zxingcpp
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from suishen.codecs import base45, qr, sc1
from suishen.codecs import venue as codec
from suishen.errors import CodecError
from suishen.keys.algorithms import Alg, PrivateKey
from suishen.keys.keyring import KeyRing, KeyState, VerificationKey
from suishen.keys.signer import SoftwareSigner
from suishen.keys.venue import make_code
from suishen.verifiers.core import verify
from suishen.verifiers.policy import SCENES
from suishen.verifiers.reasons import Reason
from suishen.verifiers.venue import check_venue

FUZZ = settings(max_examples=300, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture])
QR_5M_CHARS = 122  # ISO/IEC 18004 Table 7, alphanumeric, version 5, level M


@dataclass
class Trust:
    keys: list[VerificationKey]
    revoked: set[bytes] = field(default_factory=set)

    def venue_keys(self) -> list[VerificationKey]:
        return self.keys

    def venue_revoked(self, venue_id: bytes) -> bool:
        return venue_id in self.revoked


def signer(alg: Alg) -> SoftwareSigner:
    return SoftwareSigner.from_private(PrivateKey.generate(alg))


def key_of(s: SoftwareSigner, state: KeyState = KeyState.ACTIVE) -> VerificationKey:
    return VerificationKey(s.kid, s.public(), state)


@pytest.fixture(scope="module", params=list(Alg), ids=lambda a: a.value)
def venue_signer(request: pytest.FixtureRequest) -> SoftwareSigner:
    return signer(request.param)


def test_layout_is_exactly_as_documented(venue_signer: SoftwareSigner) -> None:
    venue_id = bytes.fromhex("0123456789")
    text = make_code(venue_signer, venue_id)
    data = base45.decode(text.removeprefix("SC1:"))
    assert len(data) == codec.CODE_BYTES == 78
    alg = venue_signer.algorithm.cose
    assert data[:7] == bytes([0x84, 0x43, 0xA1, 0x01, 0x20 + (-1 - alg), 0xA0, 0x45])
    assert data[7:12] == venue_id
    assert data[12:14] == b"\x58\x40"
    parsed = codec.parse_bytes(data)
    assert parsed.venue_id_text == "0123456789" and parsed.alg == alg


def test_worst_case_fits_qr_5m_and_reads_back(venue_signer: SoftwareSigner) -> None:
    # Every code has the same length (fixed layout): the worst case is every code.
    for _ in range(20):
        text = make_code(venue_signer, os.urandom(5))
        assert len(text) == 121 <= QR_5M_CHARS
        assert qr.qr_version(text) == 5
    png = qr.render_png(text)
    (barcode,) = zxingcpp.read_barcodes(Image.open(io.BytesIO(png)),
                                        formats=zxingcpp.BarcodeFormat.QRCode)
    assert barcode.text == text
    assert barcode.ec_level == "M" and barcode.extra["Version"] == "5"


def test_parse_code_dispatches_on_the_first_byte(venue_signer: SoftwareSigner) -> None:
    text = make_code(venue_signer, b"\x00" * 5)
    assert isinstance(sc1.parse_code(text), codec.VenueCode)
    with pytest.raises(CodecError):  # the personal-only parser refuses a venue code
        sc1.parse(text)
    data = base45.decode(text[4:])
    with pytest.raises(CodecError):  # a tagged venue layout is not a venue code
        sc1.parse_code("SC1:" + base45.encode(b"\xd2" + data))


def test_check_venue_reasons(venue_signer: SoftwareSigner) -> None:
    venue_id = os.urandom(5)
    parsed = sc1.parse_code(make_code(venue_signer, venue_id))
    assert isinstance(parsed, codec.VenueCode)
    other = signer(Alg.ES256)
    assert check_venue(parsed, Trust([])).reason is Reason.UNKNOWN_KEY
    assert check_venue(parsed, Trust([key_of(other)])).reason is Reason.BAD_SIGNATURE
    ok = check_venue(parsed, Trust([key_of(other), key_of(venue_signer, KeyState.RETIRED)]))
    assert ok.reason is Reason.OK and ok.kid == venue_signer.kid.hex()
    assert check_venue(parsed, Trust([key_of(venue_signer, KeyState.PENDING)])).reason \
        is Reason.BAD_SIGNATURE
    assert check_venue(parsed, Trust([key_of(venue_signer, KeyState.REVOKED)])).reason \
        is Reason.REVOKED
    assert check_venue(parsed, Trust([key_of(venue_signer)], {venue_id})).reason \
        is Reason.REVOKED


def test_verify_answers_scene_not_allowed_for_a_venue_code(
        venue_signer: SoftwareSigner) -> None:
    text = make_code(venue_signer, os.urandom(5))
    trust = Trust([key_of(venue_signer)])
    for name, policy in SCENES.items():
        decision = verify(text, keys=KeyRing([]), policy=policy, now=1, venues=trust)
        assert decision.reason is Reason.SCENE_NOT_ALLOWED, name
        assert decision.kind == "venue" and decision.replay_key is None
    parsed = sc1.parse_code(text)
    assert isinstance(parsed, codec.VenueCode)
    revoked = Trust([key_of(venue_signer)], {parsed.venue_id})
    assert verify(text, keys=KeyRing([]), policy=SCENES["venue"], now=1,
                  venues=revoked).reason is Reason.REVOKED
    assert verify(text, keys=KeyRing([]), policy=SCENES["venue"], now=1).reason \
        is Reason.UNKNOWN_KEY


def test_one_signed_content_one_text() -> None:
    s = signer(Alg.ES256)
    text = make_code(s, b"\x01" * 5)
    parsed = sc1.parse_code(text)
    assert isinstance(parsed, codec.VenueCode)
    n = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
    r, sv = parsed.signature[:32], int.from_bytes(parsed.signature[32:], "big")
    twin = r + (n - sv).to_bytes(32, "big")
    data = base45.decode(text[4:])
    forged = "SC1:" + base45.encode(data[:14] + twin)
    twin_code = sc1.parse_code(forged)
    assert isinstance(twin_code, codec.VenueCode)
    assert check_venue(twin_code, Trust([key_of(s)])).reason is Reason.BAD_SIGNATURE


@pytest.mark.parametrize("bad", [
    b"", b"\x84", b"\x84\x43\xa1\x01\x26\xa0\x45" + bytes(5) + b"\x58\x40" + bytes(63),
    b"\x84\x43\xa1\x01\x26\xa0\x45" + bytes(5) + b"\x58\x40" + bytes(65),
    b"\x84\x43\xa1\x01\x26\xa0\x44" + bytes(4) + b"\x58\x40" + bytes(64),
    b"\x84\x43\xa1\x01\x26\xa1\x04\x40\x45" + bytes(5) + b"\x58\x40" + bytes(64),
    b"\x84\x43\xa1\x01\x06\xa0\x45" + bytes(5) + b"\x58\x40" + bytes(64),  # alg +6
    b"\x84\x43\xa1\x04\x26\xa0\x45" + bytes(5) + b"\x58\x40" + bytes(64),  # label 4
    b"\x85\x43\xa1\x01\x26\xa0\x45" + bytes(5) + b"\x58\x40" + bytes(64) + b"\x00",
])
def test_hostile_layouts_are_codec_errors(bad: bytes) -> None:
    with pytest.raises(CodecError):
        codec.parse_bytes(bad)
    text = "SC1:" + base45.encode(bad)
    decision = verify(text, keys=KeyRing([]),
                      policy=SCENES["venue"], now=1)
    assert decision.reason is Reason.MALFORMED


@pytest.mark.parametrize("text", ["", "0123456789A", "012345678", "0123456789ab", 5, None,
                                  "０１２３４５６７８９"])
def test_venue_id_text_is_strict(text: object) -> None:
    with pytest.raises(CodecError):
        codec.venue_id_from_text(text)


@FUZZ
@given(data=st.data())
def test_mutated_codes_never_verify(data: st.DataObject) -> None:
    s = _FUZZ_SIGNER
    genuine = base45.decode(_FUZZ_TEXT[4:])
    raw = bytearray(genuine)
    n = data.draw(st.integers(1, 4))
    for _ in range(n):
        i = data.draw(st.integers(0, len(raw) - 1))
        raw[i] ^= data.draw(st.integers(1, 255))
    cut = data.draw(st.integers(0, len(raw)))
    mutated = bytes(raw[:cut]) + data.draw(st.binary(max_size=3))
    if mutated == genuine:
        return
    decision = verify("SC1:" + base45.encode(mutated), keys=KeyRing([]),
                      policy=SCENES["venue"], now=1, venues=Trust([key_of(s)]))
    assert decision.reason is not Reason.OK
    try:
        parsed = codec.parse_bytes(mutated)
    except CodecError:
        return
    assert check_venue(parsed, Trust([key_of(s)])).reason is not Reason.OK


_FUZZ_SIGNER = signer(Alg.EDDSA)
_FUZZ_TEXT = make_code(_FUZZ_SIGNER, b"\x42" * 5)
