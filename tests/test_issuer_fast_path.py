"""The issuance shortcuts are exact: claims and COSE_Sign1 built by hand give the bytes the
generic CBOR encoder gives, and every code the issuer signs verifies with the strict
verifiers (service and SDK), both algorithms, over many inputs (differential tests)."""

from __future__ import annotations

import os

import cbor2
from hypothesis import given, settings
from hypothesis import strategies as st

from suishen.codecs import base45, cose, sc1
from suishen.keys.algorithms import P256_ORDER, Alg, PublicKey
from suishen.keys.issuer import Issuer
from suishen.keys.keyset import KeySet
from suishen.sdk import Verifier as SdkVerifier
from suishen.verifiers.memory import Verifier as ServiceVerifier
from tests.conftest import T0

UINT32 = st.integers(min_value=0, max_value=0xFFFFFFFF)


def _reference_claims(claims: sc1.PersonalClaims) -> bytes:
    return bytes(cbor2.dumps({sc1.CLAIM_SUB: claims.sub, sc1.CLAIM_EXP: claims.exp,
                              sc1.CLAIM_IAT: claims.iat, sc1.CLAIM_CTI: claims.cti,
                              sc1.CLAIM_KIND: int(claims.kind)}))


@settings(max_examples=300, deadline=None)
@given(sub=st.binary(min_size=10, max_size=10), cti=st.binary(min_size=8, max_size=8),
       iat=UINT32, ttl=UINT32, kind=st.sampled_from(list(sc1.Kind)))
def test_claims_layout_is_the_cbor_encoding(sub: bytes, cti: bytes, iat: int, ttl: int,
                                            kind: sc1.Kind) -> None:
    exp = min(iat + max(ttl, 1), 0xFFFFFFFF)
    if exp <= iat:
        return
    claims = sc1.PersonalClaims(sub=sub, iat=iat, exp=exp, cti=cti, kind=kind)
    encoded = sc1.encode_personal_claims(claims)
    assert encoded == _reference_claims(claims)
    if kind is sc1.Kind.PERSONAL:
        assert sc1.decode_claims(encoded) == claims


def test_claims_layout_edges() -> None:
    """The uint16/uint32 boundary of iat, where the hand-built layout stops applying."""
    for iat in (0, 23, 24, 0xFF, 0x100, 0xFFFF, 0x10000, 0x10001, 0xFFFFFFFE):
        claims = sc1.PersonalClaims(sub=bytes(10), iat=iat, exp=iat + 1, cti=bytes(8))
        assert sc1.encode_personal_claims(claims) == _reference_claims(claims)


_LENGTHS = st.sampled_from([0, 1, 23, 24, 25, 255, 256, 300, 65535, 65536])


@settings(max_examples=200, deadline=None)
@given(alg=st.integers(-40, 40), kid=st.binary(max_size=40),
       payload_len=_LENGTHS | st.integers(0, 80), signature=st.binary(max_size=100))
def test_sign1_layout_is_the_cbor_encoding(alg: int, kid: bytes, payload_len: int,
                                           signature: bytes) -> None:
    protected = bytes(cbor2.dumps({1: alg, 4: kid}))
    payload = os.urandom(payload_len)
    encoded = cose.encode_sign1(protected, {}, payload, signature)
    assert encoded == bytes(cbor2.dumps(cbor2.CBORTag(18, [protected, {}, payload, signature])))
    message = cose.decode_sign1(encoded)
    assert (message.protected_raw, message.unprotected, message.payload,
            message.signature) == (protected, {}, payload, signature)


def test_sign1_with_unprotected_headers_takes_the_generic_encoder() -> None:
    encoded = cose.encode_sign1(b"", {cose.HDR_KID: b"k"}, b"p", b"s")
    assert encoded == bytes(cbor2.dumps(cbor2.CBORTag(18, [b"", {4: b"k"}, b"p", b"s"])))


def test_protected_header_is_memoised_and_exact() -> None:
    for alg in (-7, -8):
        for kid in (b"\x00\x01", b"\xff\xfe"):
            first = sc1.protected_header(alg, kid)
            assert first == bytes(cbor2.dumps({1: alg, 4: kid}))
            assert sc1.protected_header(alg, kid) is first


@settings(max_examples=150, deadline=None)
@given(handle=st.binary(min_size=10, max_size=10),
       offset=st.integers(min_value=-86_000, max_value=10**8),
       ttl=st.integers(min_value=5, max_value=86_400))
def test_every_issued_code_verifies_strictly(keyset: KeySet, issuer: Issuer, kek: object,
                                             handle: bytes, offset: int, ttl: int) -> None:
    now = T0 + offset
    issued = issuer.issue_personal(handle, now=now, ttl=ttl)
    assert len(issued.text) == 178  # QR version 7-M, as the layout promises
    service = ServiceVerifier(keyset.keyring(kek))  # type: ignore[arg-type]
    decision = service.verify(issued.text, scene="library", now=now)
    assert decision.valid, decision.reason
    assert decision.subject_handle == handle
    assert decision.claims is not None and decision.claims.exp == now + ttl
    sdk = SdkVerifier.from_jwks(keyset.jwks(now=now))
    assert sdk.verify(issued.text, scene="library", now=now).valid
    # The general decoder reads the same message, and the signature is canonical.
    message = cose.decode_sign1(sc1.from_text(issued.text))
    assert message.unprotected == {} and message.kid == issuer.kid
    public: PublicKey = issuer.signer.public()  # type: ignore[attr-defined]
    assert public.verify_canonical(message.signature, message.to_be_signed())


def test_es256_signatures_are_low_s(keyset: KeySet, issuer: Issuer) -> None:
    if issuer.signer.algorithm is not Alg.ES256:
        return
    message = b"low-S " * 10
    for _ in range(200):  # about half the raw signatures are high-S before normalising
        s = int.from_bytes(issuer.signer.sign(message)[32:], "big")
        assert 0 < s <= P256_ORDER // 2


def _reference_base45(data: bytes) -> str:
    """RFC 9285 §4, written out plainly."""
    alphabet = base45.ALPHABET
    out = []
    for i in range(0, len(data) - 1, 2):
        n = data[i] * 256 + data[i + 1]
        c, rest = n % 45, n // 45
        out += [alphabet[c], alphabet[rest % 45], alphabet[rest // 45]]
    if len(data) % 2:
        out += [alphabet[data[-1] % 45], alphabet[data[-1] // 45]]
    return "".join(out)


@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=300))
def test_base45_table_is_the_rfc_encoding(data: bytes) -> None:
    assert base45.encode(data) == _reference_base45(data)
    assert base45.decode(base45.encode(data)) == data


def test_base45_edges() -> None:
    for data in (b"", b"\x00", b"\xff", b"\xff\xff", b"\x00\x00", b"AB", b"ietf!"):
        assert base45.encode(data) == _reference_base45(data)
    assert base45.encode(b"AB") == "BB8" and base45.encode(b"ietf!") == "QED8WEX0"
