"""The COSE working group's published examples (github.com/cose-wg/Examples at 53c9d63),
copied into this repository with their licence (``tests/vectors/cose-wg``, see its
``SOURCE.md``) so that a fresh clone tests itself.

Every JSON file there is listed in :data:`MANIFEST` with what it is and what must
happen, and :func:`test_every_vector_file_is_covered` fails when a file is added or
removed without the manifest following: nothing is skipped silently.

For each COSE_Sign1 vector: decode with :func:`suishen.codecs.cose.decode_sign1`
(``require_tag`` according to the vector), check ``to_be_signed()`` against the vector's
``ToBeSign_hex``, and verify the signature with
:class:`suishen.keys.algorithms.PublicKey` built from the vector's JWK. Pass vectors
verify; fail vectors fail (a decoding error, a refused algorithm or a bad signature).
Our profile is strict (ES256 <=> P-256, EdDSA <=> Ed25519), so ES384, ES512 and Ed448
are refused with :class:`UnsupportedAlgorithm` even when the signature is genuine.

COSE_Sign (multi-signer, tag 98) examples are refused by ``decode_sign1``; their one
signer's signature is still checked against the algorithms module. MAC0 and Encrypt0
examples (CWT A.4-A.7) are refused by ``decode_sign1``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from suishen.codecs import cbor, cose
from suishen.errors import CodecError
from suishen.keys.algorithms import Alg, PublicKey, UnsupportedAlgorithm, b64u

COSE_WG = Path(__file__).resolve().parent / "vectors" / "cose-wg"


@dataclass(frozen=True)
class Case:
    """What a vector file is and what must happen to it."""

    kind: str  # "sign1", "sign", "other"
    expect: str  # "pass", "decode_error", "bad_signature", "unsupported_alg", "refused"
    require_tag: bool = True
    refused_by: str = ""  # for "unsupported_alg": "alg" (header), "key" (JWK) or "both"


UNSUPPORTED = "unsupported_alg"

MANIFEST: dict[str, Case] = {
    # COSE_Sign1 pass and fail cases. pass-01: protected h'a0' with alg unprotected;
    # pass-02: external AAD; pass-03: no tag 18. fail-01: tag 998; fail-02: payload
    # changed; fail-03/04: alg -999 / "unknown"; fail-06/07: protected parameter added /
    # removed after signing.
    "sign1-tests/sign-pass-01.json": Case("sign1", "pass"),
    "sign1-tests/sign-pass-02.json": Case("sign1", "pass"),
    "sign1-tests/sign-pass-03.json": Case("sign1", "pass", require_tag=False),
    "sign1-tests/sign-fail-01.json": Case("sign1", "decode_error"),
    "sign1-tests/sign-fail-02.json": Case("sign1", "bad_signature"),
    "sign1-tests/sign-fail-03.json": Case("sign1", UNSUPPORTED, refused_by="alg"),
    "sign1-tests/sign-fail-04.json": Case("sign1", UNSUPPORTED, refused_by="alg"),
    "sign1-tests/sign-fail-06.json": Case("sign1", "bad_signature"),
    "sign1-tests/sign-fail-07.json": Case("sign1", "bad_signature"),
    # Sign1 per algorithm: Ed25519 and ES256/P-256 pass; Ed448 (key refused), ES384/P-384
    # and ES512/P-521 (both refused), ES512 with a P-256 key (alg refused) do not.
    "eddsa-examples/eddsa-sig-01.json": Case("sign1", "pass"),
    "eddsa-examples/eddsa-sig-02.json": Case("sign1", UNSUPPORTED, refused_by="key"),
    "ecdsa-examples/ecdsa-sig-01.json": Case("sign1", "pass"),
    "ecdsa-examples/ecdsa-sig-02.json": Case("sign1", UNSUPPORTED, refused_by="both"),
    "ecdsa-examples/ecdsa-sig-03.json": Case("sign1", UNSUPPORTED, refused_by="both"),
    "ecdsa-examples/ecdsa-sig-04.json": Case("sign1", UNSUPPORTED, refused_by="alg"),
    # RFC 8392 A.3: a signed CWT, ES256.
    "CWT/A_3.json": Case("sign1", "pass"),
    # COSE_Sign (tag 98), one signer each, same algorithms as above.
    "eddsa-examples/eddsa-01.json": Case("sign", "pass"),
    "eddsa-examples/eddsa-02.json": Case("sign", UNSUPPORTED, refused_by="key"),
    "ecdsa-examples/ecdsa-01.json": Case("sign", "pass"),
    "ecdsa-examples/ecdsa-02.json": Case("sign", UNSUPPORTED, refused_by="both"),
    "ecdsa-examples/ecdsa-03.json": Case("sign", UNSUPPORTED, refused_by="both"),
    "ecdsa-examples/ecdsa-04.json": Case("sign", UNSUPPORTED, refused_by="alg"),
    # Not signatures: RFC 8392 A.4 (MAC0), A.5 (Encrypt0), A.6 (Encrypt0 around the A.3
    # token), A.7 (MAC0 with a float claim).
    "CWT/A_4.json": Case("other", "refused"),
    "CWT/A_5.json": Case("other", "refused"),
    "CWT/A_6.json": Case("other", "refused"),
    "CWT/A_7.json": Case("other", "refused"),
}

SIGN1 = sorted(name for name, case in MANIFEST.items() if case.kind == "sign1")
SIGN = sorted(name for name, case in MANIFEST.items() if case.kind == "sign")
OTHER = sorted(name for name, case in MANIFEST.items() if case.kind == "other")
COSE_ALGS = {"ES256": -7, "ES384": -35, "ES512": -36, "EdDSA": -8}


def load(name: str) -> dict[str, Any]:
    if not COSE_WG.is_dir():
        pytest.fail(f"COSE WG vectors not found at {COSE_WG}; these tests are never skipped")
    path = COSE_WG / name
    assert path.is_file(), f"vector file {path} is missing"
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return data


def public_jwk(key: dict[str, Any]) -> dict[str, Any]:
    """The vector's key as a public JWK (``x_hex``/``y_hex`` become base64url)."""
    jwk = {"kty": key["kty"], "crv": key["crv"]}
    for member in ("x", "y"):
        if member in key:
            jwk[member] = key[member]
        elif f"{member}_hex" in key:
            jwk[member] = b64u(bytes.fromhex(key[f"{member}_hex"]))
    return jwk


def check_signature(alg_header: Any, key: dict[str, Any], signature: bytes, tbs: bytes) -> bool:
    """Our verification: the header alg must be on the closed list and match the key."""
    public = PublicKey.from_jwk(public_jwk(key))  # UnsupportedAlgorithm for other curves
    alg = Alg.from_cose(alg_header)  # UnsupportedAlgorithm outside the closed list
    return alg is public.alg and public.verify(signature, tbs)


def assert_refused(
    case: Case, alg_header: Any, key: dict[str, Any], signature: bytes, tbs: bytes
) -> None:
    """The vector's algorithm or key is outside the closed list, exactly as listed."""
    with pytest.raises(UnsupportedAlgorithm):
        check_signature(alg_header, key, signature, tbs)
    refused = set()
    try:
        PublicKey.from_jwk(public_jwk(key))
    except UnsupportedAlgorithm:
        refused.add("key")
    try:
        Alg.from_cose(alg_header)
    except UnsupportedAlgorithm:
        refused.add("alg")
    assert refused == ({"alg", "key"} if case.refused_by == "both" else {case.refused_by})


# --- coverage -----------------------------------------------------------------------------
def test_vectors_folder_is_present() -> None:
    assert COSE_WG.is_dir(), f"COSE WG vectors not found at {COSE_WG}"
    assert (COSE_WG / "LICENSE").is_file(), "the vectors travel with their licence"


def test_every_vector_file_is_covered() -> None:
    assert COSE_WG.is_dir(), f"COSE WG vectors not found at {COSE_WG}"
    found = {p.relative_to(COSE_WG).as_posix() for p in COSE_WG.rglob("*.json")}
    assert found == set(MANIFEST), {
        "files without a manifest entry": sorted(found - set(MANIFEST)),
        "manifest entries without a file": sorted(set(MANIFEST) - found),
    }
    assert len(SIGN1) == 16 and len(SIGN) == 6 and len(OTHER) == 4


# --- COSE_Sign1 ---------------------------------------------------------------------------
@pytest.mark.parametrize("name", SIGN1)
def test_sign1_vector(name: str) -> None:
    case = MANIFEST[name]
    vector = load(name)
    sign0 = vector["input"]["sign0"]
    data = bytes.fromhex(vector["output"]["cbor"])
    expected_tbs = bytes.fromhex(vector["intermediates"]["ToBeSign_hex"])
    external = bytes.fromhex(sign0.get("external", ""))
    if vector.get("fail") or case.expect == "pass":
        assert bool(vector.get("fail")) == (case.expect != "pass"), "manifest disagrees"

    if case.expect == "decode_error":
        for require_tag in (True, False):
            with pytest.raises(CodecError):
                cose.decode_sign1(data, require_tag=require_tag)
        return

    if not case.require_tag:
        with pytest.raises(CodecError):
            cose.decode_sign1(data)  # the default requires tag 18
    message = cose.decode_sign1(data, require_tag=case.require_tag)
    tbs = message.to_be_signed(external)
    # Re-encoding the decoded parts gives back the vector's bytes (tagged).
    tagged = data if case.require_tag else b"\xd2" + data
    assert (
        cose.encode_sign1(message.protected_raw, message.unprotected, message.payload,
                          message.signature)
        == tagged
    )

    if case.expect == "pass":
        assert tbs == expected_tbs
        assert message.payload == _plaintext(vector)
        assert check_signature(message.alg, sign0["key"], message.signature, tbs)
        # Any change to what is signed breaks the signature.
        assert not check_signature(message.alg, sign0["key"], message.signature, tbs + b"\x00")
        if external:
            assert not check_signature(
                message.alg, sign0["key"], message.signature, message.to_be_signed()
            )
    elif case.expect == "bad_signature":
        # The vector changed signed bytes after signing: ToBeSign no longer matches.
        assert tbs != expected_tbs
        assert message.alg == COSE_ALGS[sign0["alg"]]
        assert not check_signature(message.alg, sign0["key"], message.signature, tbs)
    else:
        assert case.expect == UNSUPPORTED
        assert_refused(case, message.alg, sign0["key"], message.signature, tbs)
        if not vector.get("fail"):
            # A genuine signature in an algorithm we refuse: ToBeSign still matches.
            assert tbs == expected_tbs


def _plaintext(vector: dict[str, Any]) -> bytes:
    inp = vector["input"]
    if "plaintext_hex" in inp:
        return bytes.fromhex(inp["plaintext_hex"])
    return str(inp["plaintext"]).encode("utf-8")


def test_sign_pass_01_signs_an_empty_protected_map_as_an_empty_string() -> None:
    # RFC 9052 §3: h'a0' in the message, h'' in the Sig_structure.
    vector = load("sign1-tests/sign-pass-01.json")
    message = cose.decode_sign1(bytes.fromhex(vector["output"]["cbor"]))
    assert message.protected_raw == b"\xa0"
    assert message.protected == {}
    assert message.alg == -7  # from the unprotected bucket
    assert message.kid == b"11"
    # array(4), "Signature1", protected h'', external_aad h'', payload
    assert message.to_be_signed() == b"\x84\x6aSignature1\x40\x40" + cbor.dumps(message.payload)


def test_es512_with_a_p256_key_is_refused_although_genuine() -> None:
    # ecdsa-sig-04 pairs ES512 with P-256. The signature is genuine ECDSA/SHA-512 over
    # P-256 (cryptography says so), but our profile binds P-256 to ES256 only.
    vector = load("ecdsa-examples/ecdsa-sig-04.json")
    key = vector["input"]["sign0"]["key"]
    message = cose.decode_sign1(bytes.fromhex(vector["output"]["cbor"]))
    public = PublicKey.from_jwk(public_jwk(key))
    assert public.alg is Alg.ES256
    assert isinstance(public.key, ec.EllipticCurvePublicKey)
    r = int.from_bytes(message.signature[:32], "big")
    s = int.from_bytes(message.signature[32:], "big")
    public.key.verify(encode_dss_signature(r, s), message.to_be_signed(), ec.ECDSA(hashes.SHA512()))
    with pytest.raises(UnsupportedAlgorithm):
        Alg.from_cose(message.alg)
    with pytest.raises(UnsupportedAlgorithm):
        PublicKey.from_jwk({**public_jwk(key), "alg": "ES512"})
    with pytest.raises(UnsupportedAlgorithm):
        PublicKey.from_jwk({**public_jwk(key), "alg": "ES384"})
    # And our ES256 verification of it fails: the hash is not SHA-256.
    assert not public.verify(message.signature, message.to_be_signed())


def test_cwt_a3_claims_decode_strictly() -> None:
    # RFC 8392 A.1 claims: iss, sub, aud, exp, nbf, iat, cti.
    message = cose.decode_sign1(bytes.fromhex(load("CWT/A_3.json")["output"]["cbor"]))
    assert message.unprotected == {}
    assert cbor.loads(message.payload) == {
        1: "coap://as.example.com",
        2: "erikw",
        3: "coap://light.example.com",
        4: 1444064944,
        5: 1443944944,
        6: 1443944944,
        7: bytes.fromhex("0b71"),
    }


# --- COSE_Sign (multi-signer) -------------------------------------------------------------
@pytest.mark.parametrize("name", SIGN)
def test_cose_sign_vector(name: str) -> None:
    case = MANIFEST[name]
    vector = load(name)
    data = bytes.fromhex(vector["output"]["cbor"])
    for require_tag in (True, False):
        with pytest.raises(CodecError):
            cose.decode_sign1(data, require_tag=require_tag)  # tag 98 is not COSE_Sign1

    item = cbor.loads(data)
    assert isinstance(item, cbor.Tag) and item.number == 98
    body_protected, _, payload, signers = item.value
    (signer,) = signers
    sign_protected, _, signature = signer
    tbs = cbor.dumps(["Signature", body_protected, sign_protected, b"", payload])
    assert tbs == bytes.fromhex(vector["intermediates"]["signers"][0]["ToBeSign_hex"])
    alg_header = cbor.loads(sign_protected)[cose.HDR_ALG]
    key = vector["input"]["sign"]["signers"][0]["key"]
    if case.expect == "pass":
        assert check_signature(alg_header, key, signature, tbs)
        assert not check_signature(alg_header, key, signature, tbs[:-1] + b"\x00")
    else:
        assert case.expect == UNSUPPORTED
        assert_refused(case, alg_header, key, signature, tbs)


# --- MAC0 and Encrypt0 --------------------------------------------------------------------
@pytest.mark.parametrize("name", OTHER)
def test_non_signature_vector_is_refused(name: str) -> None:
    vector = load(name)
    data = bytes.fromhex(vector["output"]["cbor"])
    for require_tag in (True, False):
        with pytest.raises(CodecError, match="not COSE_Sign1"):
            cose.decode_sign1(data, require_tag=require_tag)
    item = cbor.loads(data)
    assert isinstance(item, cbor.Tag) and item.number in (16, 17)  # Encrypt0, MAC0


def test_cwt_a6_wraps_the_a3_token() -> None:
    # A.6 encrypts the signed token of A.3: that inner token is covered by the A.3 test.
    inner = bytes.fromhex(load("CWT/A_6.json")["input"]["plaintext_hex"])
    assert inner == bytes.fromhex(load("CWT/A_3.json")["output"]["cbor"])


def test_cwt_a7_float_claim_is_refused_by_the_strict_decoder() -> None:
    # A.7's claims set carries iat as a float64; the strict subset has no floats.
    claims = bytes.fromhex(load("CWT/A_7.json")["input"]["plaintext_hex"])
    assert claims[2] == 0xFB
    with pytest.raises(cbor.CBORError):
        cbor.loads(claims)


def test_a_bad_signature_is_not_an_exception() -> None:
    # PublicKey.verify answers False; it does not raise cryptography's InvalidSignature.
    vector = load("sign1-tests/sign-fail-02.json")
    message = cose.decode_sign1(bytes.fromhex(vector["output"]["cbor"]))
    public = PublicKey.from_jwk(public_jwk(vector["input"]["sign0"]["key"]))
    try:
        assert public.verify(message.signature, message.to_be_signed()) is False
    except InvalidSignature:  # pragma: no cover - the failure this test is about
        pytest.fail("PublicKey.verify raised instead of returning False")
