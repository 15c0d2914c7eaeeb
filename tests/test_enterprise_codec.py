"""Enterprise codes (issue 11 item 3, SPEC.md §6.3): the personal layout with kind 2 and
the blinded agency handle as ``sub`` — the QR budget (7-M, like a personal code) and
unlinkability (codes of one enterprise share no identifying bytes)."""

from __future__ import annotations

import os

import pytest

from suishen.codecs import cbor, cose, qr, sc1
from suishen.errors import CodecError
from suishen.keys.algorithms import Alg, PrivateKey
from suishen.keys.blinding import unblind
from suishen.keys.issuer import Issuer
from suishen.keys.signer import SoftwareSigner
from tests.test_offline_codec import field_links, raw_links

UINT32_MAX = 2**32 - 1
T0 = 1_800_000_000


def issuer_for(alg: Alg) -> Issuer:
    return Issuer(SoftwareSigner.from_private(PrivateKey.generate(alg)), os.urandom(32))


@pytest.mark.parametrize("alg", [Alg.ES256, Alg.EDDSA])
def test_worst_case_enterprise_code_fits_qr_7_m(alg: Alg) -> None:
    issuer = issuer_for(alg)
    for cti in (os.urandom(8), b"\xff" * 8):
        issued = issuer.issue_personal(b"\xff" * 10, now=UINT32_MAX - 60, ttl=60, cti=cti,
                                       kind=sc1.Kind.ENTERPRISE)
        assert issued.kind == "enterprise"
        assert len(issued.text) == 178 and qr.qr_version(issued.text, "M") == 7
        raw = sc1.from_text(issued.text)
        assert len(raw) == 116 and raw[-68:-66] == b"\x20\x02"  # claims end: kind 2


def test_enterprise_claims_decode_strictly() -> None:
    issuer = issuer_for(Alg.ES256)
    agency = os.urandom(10)
    issued = issuer.issue_personal(agency, now=T0, ttl=60, kind=sc1.Kind.ENTERPRISE)
    envelope = sc1.parse(issued.text)
    claims = sc1.decode_claims(envelope.message.payload)
    assert claims.kind is sc1.Kind.ENTERPRISE
    assert unblind(claims.sub, issuer.blinding, iat=claims.iat, cti=claims.cti) == agency
    # the general path agrees and is as strict as for personal codes
    general = cbor.loads(envelope.message.payload)
    assert sc1._decode_claims_general(envelope.message.payload) == claims
    with pytest.raises(CodecError, match="enterprise code claims"):
        sc1.decode_claims(cbor.dumps({**general, sc1.CLAIM_NBF: T0}))
    with pytest.raises(CodecError):
        sc1.decode_claims(cbor.dumps({**general, sc1.CLAIM_SUB: b"\x00" * 9}))
    with pytest.raises(ValueError, match="personal and enterprise"):
        issuer.issue_personal(agency, now=T0, ttl=60, kind=sc1.Kind.OFFLINE)


def codes_of(issuer: Issuer, agency: bytes, n: int, *, clear_sub: bool = False) -> list[bytes]:
    """``n`` enterprise codes of one agency, issued at the same times as everyone's."""
    out = []
    for k in range(n):
        now = T0 + 60 * k
        if not clear_sub:
            text = issuer.issue_personal(agency, now=now, ttl=60, kind=sc1.Kind.ENTERPRISE).text
            out.append(sc1.from_text(text))
            continue
        # the flaw the check must catch: the agency handle itself instead of blinded
        claims = sc1.PersonalClaims(agency, now, now + 60, os.urandom(8), sc1.Kind.ENTERPRISE)
        payload = sc1.encode_personal_claims(claims)
        protected = sc1.protected_header(issuer.signer.algorithm.cose, issuer.kid)
        signature = issuer.signer.sign(cose.sig_structure(protected, payload))
        out.append(cose.encode_sign1(protected, {}, payload, signature))
    return out


def links(mine: list[bytes], others: list[list[bytes]]) -> list[tuple[int, int, str]]:
    found = []
    for i in range(len(mine)):
        for j in range(i + 1, len(mine)):
            if raw_links(mine[i], mine[j], [o[k] for o in others for k in (i, j)]):
                found.append((i, j, "raw"))
            if field_links(mine[i], mine[j], [o[i] for o in others]):
                found.append((i, j, "fields"))
    return found


def test_codes_of_one_enterprise_share_no_identifying_bytes() -> None:
    issuer = issuer_for(Alg.ES256)
    mine = codes_of(issuer, b"\xaa" * 10, 6)
    others = [codes_of(issuer, b"\xbb" * 10, 6), codes_of(issuer, b"\xaa" * 9 + b"\xab", 6)]
    assert links(mine, others) == []


def test_the_check_catches_an_unblinded_agency() -> None:
    issuer = issuer_for(Alg.ES256)
    mine = codes_of(issuer, b"\xaa" * 10, 3, clear_sub=True)
    others = [codes_of(issuer, b"\xbb" * 10, 3, clear_sub=True)]
    # (the stable 10-byte sub is caught per field; the raw 32-byte windows need the same
    # times too, and these codes were issued a minute apart)
    assert {kind for _, _, kind in links(mine, others)} == {"fields"}
