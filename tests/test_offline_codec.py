"""Offline codes (codecs/offline.py, keys/offline.py): layout, size budget, strictness,
signatures, domain separation and unlinkability across slots (issue 9 item 2)."""

from __future__ import annotations

import io
import os
from typing import Any

import pytest
import zxingcpp
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from suishen.codecs import base45, cbor, cose, offline, qr, sc1
from suishen.errors import CodecError, SuishenError
from suishen.keys import offline as koff
from suishen.keys.algorithms import Alg, PrivateKey

UINT32_MAX = 2**32 - 1
SLOT = 3600
BUDGET_CHARS = 366  # QR version 11 at level M, alphanumeric
BLINDING = bytes(range(32))


def service(alg: Alg = Alg.EDDSA) -> tuple[PrivateKey, bytes]:
    key = PrivateKey.generate(alg)
    return key, key.public().kid_bytes()


def enroll(
    handle: bytes, slot_start: int, *, alg: Alg = Alg.EDDSA, status_index: int | None = None
) -> tuple[PrivateKey, bytes, PrivateKey]:
    """(service key, credential, device key) for one slot."""
    key, kid = service(alg)
    device = PrivateKey.generate(Alg.ES256)
    index = int.from_bytes(os.urandom(4), "big") if status_index is None else status_index
    credential = koff.issue_credential(
        key,
        kid,
        BLINDING,
        handle=handle,
        nbf=slot_start,
        exp=slot_start + SLOT,
        device=device.public(),
        status_index=index,
    )
    return key, credential, device


@pytest.mark.parametrize("alg", [Alg.EDDSA, Alg.ES256])
def test_round_trip_and_both_signatures(alg: Alg) -> None:
    handle = os.urandom(10)
    key, credential, device = enroll(handle, 1_800_000_000, alg=alg, status_index=77)
    text = koff.make_code(device, credential, iat=1_800_000_100, counter=3)
    code = koff.parse_code(text)
    assert code.claims == offline.CodeClaims(iat=1_800_000_100, counter=3)
    claims = code.credential.claims
    assert (claims.nbf, claims.exp, claims.status_index) == (1_800_000_000, 1_800_003_600, 77)
    assert code.credential.kid == key.public().kid_bytes()
    assert code.credential.alg == alg.cose
    assert claims.sub != handle  # blinded
    assert koff.unblind_credential(code.credential, BLINDING) == handle
    assert koff.check_signatures(code, key.public())
    # another service key of the same algorithm does not verify it
    assert not koff.check_signatures(code, PrivateKey.generate(alg).public())


def test_credential_signature_is_domain_separated_from_personal_codes() -> None:
    """A credential signed by the code-signing key must not pass as a code: its signature
    covers the credential AAD, so it fails over the plain Sig_structure."""
    key, credential, _ = enroll(os.urandom(10), 1_800_000_000)
    protected_raw, _, payload, signature = cbor.loads(credential)
    assert key.public().verify(signature, offline.credential_to_be_signed(protected_raw, payload))
    assert not key.public().verify(signature, cose.sig_structure(protected_raw, payload))
    # Re-wrapped as a tagged COSE_Sign1 it is not a valid SC1 personal code either.
    as_code = sc1.to_text(cose.encode_sign1(protected_raw, {}, payload, signature))
    envelope = sc1.parse(as_code)
    with pytest.raises(CodecError):
        sc1.decode_claims(envelope.message.payload)


def worst_case_code(alg: Alg) -> str:
    """Every variable field at its largest encoding: uint32 times at their maximum, the
    largest status index, counter 255."""
    _, credential, device = enroll(
        b"\xff" * 10, UINT32_MAX - SLOT, alg=alg, status_index=UINT32_MAX
    )
    return koff.make_code(device, credential, iat=UINT32_MAX, counter=offline.MAX_COUNTER)


@pytest.mark.parametrize("alg", [Alg.EDDSA, Alg.ES256])
def test_worst_case_fits_qr_version_11_m(alg: Alg) -> None:
    text = worst_case_code(alg)
    assert len(sc1.from_text(text)) == 240  # the documented byte count
    assert len(text) == 364 <= BUDGET_CHARS
    assert qr.qr_version(text) == 11


def test_smallest_fields_do_not_change_the_layout_much() -> None:
    _, credential, device = enroll(b"\x00" * 10, 1_800_000_000, status_index=0)
    text = koff.make_code(device, credential, iat=1_800_000_000, counter=0)
    # status index 0 is one byte instead of five, counter 0 one byte instead of two
    assert len(sc1.from_text(text)) == 240 - 4 - 1


def test_qr_of_an_offline_code_reads_back_with_zxing() -> None:
    text = worst_case_code(Alg.ES256)
    png = qr.render_png(text)
    found = zxingcpp.read_barcodes(
        Image.open(io.BytesIO(png)), formats=zxingcpp.BarcodeFormat.QRCode
    )
    assert [b.text for b in found] == [text]
    koff.parse_code(found[0].text)


def test_layout_bytes_match_the_documentation() -> None:
    key, credential, device = enroll(b"\x11" * 10, 1_800_000_000, status_index=0x01020304)
    data = sc1.from_text(koff.make_code(device, credential, iat=1_800_000_005, counter=1))
    kid = key.public().kid_bytes()
    assert data[:5] == b"\xd2\x84\x58\x9e\xa2"
    assert data[5:8] == b"\x01\x26\x0d"
    cred = data[8 : 8 + 154]
    assert cred == credential
    assert cred[:9] == b"\x84\x47\xa2\x01\x27\x04\x42" + kid[:2]
    assert cred[9:13] == b"\xa0\x58\x4c\xa5"
    assert cred[13:15] == b"\x02\x4a"
    assert cred[25:27] == b"\x04\x1a" and cred[31:33] == b"\x05\x1a"
    assert cred[37:48] == b"\x08\xa1\x01\xa4\x01\x02\x20\x01\x21\x58\x20"
    assert cred[80] == 0x22 and cred[81] in (0xF4, 0xF5)
    assert cred[82:88] == b"\x21\x1a\x01\x02\x03\x04"
    assert cred[88:90] == b"\x58\x40"
    assert data[162:165] == b"\xa0\x49\xa2"
    assert data[165:171] == b"\x06\x1a" + (1_800_000_005).to_bytes(4, "big")
    assert data[171:173] == b"\x22\x01"
    assert data[173:175] == b"\x58\x40" and len(data) == 175 + 64


# --- strict decoding -------------------------------------------------------------------
def _rebuild(credential_claims: dict[Any, Any] | None = None, **outer: Any) -> str:
    """A code whose credential claims or outer parts are replaced (signatures not valid)."""
    _, credential, _ = enroll(os.urandom(10), 1_800_000_000)
    protected_raw, unprotected, payload, signature = cbor.loads(credential)
    if credential_claims is not None:
        claims = cbor.loads(payload)
        claims.update(credential_claims)
        claims = {k: v for k, v in claims.items() if v is not _DROP}
        payload = cbor.dumps(claims)
    cred_item = outer.pop("credential", [protected_raw, unprotected, payload, signature])
    header = outer.pop("header", {1: -7, 13: cred_item})
    code_claims = outer.pop("claims", {6: 1_800_000_001, -3: 0})
    unprot = outer.pop("unprotected", {})
    data = cose.encode_sign1(cbor.dumps(header), unprot, cbor.dumps(code_claims), b"\x00" * 64)
    return sc1.to_text(data)


_DROP = object()


@pytest.mark.parametrize(
    ("label", "value"),
    [
        (8, {1: {1: 2, -1: 1, -2: b"\x01" * 32, -3: b"\x02" * 32}}),  # uncompressed y
        (8, {1: {1: 2, -1: 2, -2: b"\x01" * 32, -3: True}}),  # P-384 curve id
        (8, {1: {1: 1, -1: 1, -2: b"\x01" * 32, -3: True}}),  # kty OKP
        (8, {1: {1: 2, -1: True, -2: b"\x01" * 32, -3: True}}),  # crv as a bool
        (8, {1: {1: 2, -1: 1, -2: b"\x01" * 31, -3: True}}),  # short x
        (8, {1: {1: 2, -1: 1, -2: b"\x01" * 32, -3: True, 2: b"k"}}),  # extra key member
        (8, {3: b"kid"}),  # cnf by kid, not by key
        (2, b"\x00" * 9),  # short sub
        (4, 1_800_000_000),  # exp == nbf
        (5, "1800000000"),  # nbf as text
        (-2, -1),  # negative status index
        (-2, 2**32),  # status index beyond uint32
        (-2, _DROP),  # no status
        (-4, 1),  # unknown private claim
        (7, b"12345678"),  # a cti
    ],
)
def test_credential_claims_are_strict(label: int, value: Any) -> None:
    with pytest.raises(CodecError):
        koff.parse_code(_rebuild({label: value}))


@pytest.mark.parametrize(
    "outer",
    [
        {"unprotected": {4: b"k"}},
        {"header": {1: -7}},
        {"header": {1: -7, 4: b"kk"}},
        {"header": {1: "ES256", 13: None}},
        {"credential": b"not an array"},
        {"credential": [b"", {}, b"", b""]},
        {"claims": {6: 1_800_000_001}},
        {"claims": {6: 1_800_000_001, -3: 256}},
        {"claims": {6: 1_800_000_001, -3: -1}},
        {"claims": {6: 1_800_000_001, -3: False}},
        {"claims": {6: -5, -3: 0}},
        {"claims": {6: 1_800_000_001, -3: 0, 7: b"x"}},
    ],
)
def test_outer_structure_is_strict(outer: dict[str, Any]) -> None:
    with pytest.raises(CodecError):
        koff.parse_code(_rebuild(**outer))


def test_credential_header_is_strict() -> None:
    _, credential, _ = enroll(os.urandom(10), 1_800_000_000)
    protected_raw, _, payload, signature = cbor.loads(credential)
    for header in ({1: -8}, {1: -8, 4: b"k" * 17}, {1: -8, 4: b"kk", 3: 1}, {1: True, 4: b"kk"}):
        item = [cbor.dumps(header), {}, payload, signature]
        with pytest.raises(CodecError):
            koff.parse_code(_rebuild(credential=item))
    with pytest.raises(CodecError):
        koff.parse_code(_rebuild(credential=[protected_raw, {4: b"kk"}, payload, signature]))


def test_a_personal_code_is_not_an_offline_code() -> None:
    from suishen.keys.issuer import Issuer
    from suishen.keys.signer import SoftwareSigner

    key, kid = service()
    issuer = Issuer(SoftwareSigner(key, kid), BLINDING)
    issued = issuer.issue_personal(b"\x01" * 10, now=1_800_000_000, ttl=60)
    with pytest.raises(CodecError):
        koff.parse_code(issued.text)


# --- tampering -----------------------------------------------------------------------
def test_tampering_any_byte_fails_decoding_or_a_signature() -> None:
    key, credential, device = enroll(os.urandom(10), 1_800_000_000, alg=Alg.ES256)
    data = sc1.from_text(koff.make_code(device, credential, iat=1_800_000_001))
    for i in range(len(data)):
        mutated = bytearray(data)
        mutated[i] ^= 0x01
        text = sc1.to_text(bytes(mutated))
        try:
            code = koff.parse_code(text)
        except CodecError:
            continue
        assert not koff.check_signatures(code, key.public()), f"byte {i} flipped still verifies"


def test_a_credential_moved_to_another_device_key_fails() -> None:
    key, credential, _ = enroll(os.urandom(10), 1_800_000_000)
    thief = PrivateKey.generate(Alg.ES256)
    code = koff.parse_code(koff.make_code(thief, credential, iat=1_800_000_001))
    assert not koff.check_signatures(code, key.public())


def test_device_key_off_the_curve_is_refused() -> None:
    # x = 5 has no y on P-256 (5^3 - 15 + b is not a square mod p); found by trial.
    for x in range(1, 50):
        key = offline.DeviceKey(x=x.to_bytes(32, "big"), y_odd=False)
        try:
            koff.device_public_key(key)
        except SuishenError:
            break
    else:  # pragma: no cover - about half of all x are off the curve
        pytest.fail("no off-curve x found")


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(st.data())
def test_fuzzed_codes_never_crash_and_never_verify(data: st.DataObject) -> None:
    key = _FUZZ_BASE[0]
    raw = bytearray(_FUZZ_BYTES)
    for _ in range(data.draw(st.integers(1, 4))):
        op = data.draw(st.sampled_from(["flip", "cut", "insert"]))
        pos = data.draw(st.integers(0, len(raw) - 1))
        if op == "flip":
            raw[pos] ^= data.draw(st.integers(1, 255))
        elif op == "cut":
            del raw[pos : pos + data.draw(st.integers(1, 8))]
        else:
            raw[pos:pos] = data.draw(st.binary(min_size=1, max_size=8))
        if not raw:
            return
    try:
        code = koff.parse_code(sc1.to_text(bytes(raw)))
    except CodecError:
        return
    if bytes(raw) != _FUZZ_BYTES:
        assert not koff.check_signatures(code, key.public())


_FUZZ_BASE = enroll(b"\x05" * 10, 1_800_000_000, alg=Alg.ES256)
_FUZZ_BYTES = sc1.from_text(koff.make_code(_FUZZ_BASE[2], _FUZZ_BASE[1], iat=1_800_000_001))


@given(st.text(max_size=400))
def test_arbitrary_text_is_a_typed_error(text: str) -> None:
    try:
        koff.parse_code(text)
    except SuishenError:
        pass
    else:  # pragma: no cover - astronomically unlikely to be a well-formed code
        raise AssertionError("random text decoded as an offline code")


def test_base45_garbage_after_prefix_is_a_typed_error() -> None:
    with pytest.raises(SuishenError):
        koff.parse_code("SC1:" + base45.encode(b"\xd2\x84" + os.urandom(30)))


# --- unlinkability ---------------------------------------------------------------------
# Two views of "shares no identifying byte sequence", one layout-agnostic, one per field:
#
# * raw: no 32-byte sequence common to two codes of one citizen that the other citizens'
#   codes of the same slots lack. The longest run of bytes that is the same for everyone
#   is the 24-byte head (tag, headers, the service's kid, the claim labels up to ``sub``),
#   so any 32-byte window holds at least eight random bytes and a chance match is 2^-64:
#   the check cannot flake, and a stable key, handle, hash or signature fails it (a
#   stable 10-byte ``sub`` completes the 24-byte head to a shared window of 32).
# * fields: every leaf of the decoded code (nested credential included) whose value
#   differs between citizens in the same slot is a per-citizen value; no such value of
#   one slot may reappear in another slot of the same citizen. This catches the short
#   ones (a 4-byte status index reused across slots). Booleans (the y sign bit) carry one
#   bit, which half of all citizens share anyway, and are not identifiers.
RAW_GRAM = 32


def grams(data: bytes, n: int = RAW_GRAM) -> set[bytes]:
    return {data[i : i + n] for i in range(len(data) - n + 1)}


def raw_links(a_i: bytes, a_j: bytes, others: list[bytes]) -> set[bytes]:
    common = grams(a_i) & grams(a_j)
    for other in others:
        common -= grams(other)
    return common


def leaves(data: bytes) -> dict[tuple[Any, ...], Any]:
    """Every leaf of a code's CBOR; protected headers and payloads (CBOR inside byte
    strings) are decoded too, the credential in ``kcwt`` included."""
    out: dict[tuple[Any, ...], Any] = {}

    def walk(path: tuple[Any, ...], item: Any) -> None:
        if isinstance(item, cbor.Tag):
            walk((*path, "tag"), item.value)
        elif isinstance(item, list):  # a COSE_Sign1: [protected, unprotected, payload, sig]
            for k, v in enumerate(item):
                if k in (0, 2) and isinstance(v, bytes) and v:
                    walk((*path, k, "cbor"), cbor.loads(v))
                else:
                    walk((*path, k), v)
        elif isinstance(item, dict):
            for k, v in item.items():
                walk((*path, k), v)
        else:
            out[path] = item

    walk((), cbor.loads(data))
    return out


def field_links(a_i: bytes, a_j: bytes, others_i: list[bytes]) -> set[Any]:
    mine_i, mine_j = leaves(a_i), leaves(a_j)
    theirs = [leaves(o) for o in others_i]
    personal = {
        v
        for path, v in mine_i.items()
        if not isinstance(v, bool) and any(t.get(path) != v for t in theirs)
    }
    return personal & {v for v in mine_j.values() if not isinstance(v, bool)}


def citizen_codes(
    handle: bytes,
    starts: list[int],
    key: PrivateKey,
    kid: bytes,
    *,
    device: PrivateKey | None = None,
    status_index: int | None = None,
    clear_sub: bool = False,
) -> list[bytes]:
    out = []
    for start in starts:
        slot_device = device or PrivateKey.generate(Alg.ES256)
        index = status_index or int.from_bytes(os.urandom(4), "big")
        credential = koff.issue_credential(
            key,
            kid,
            BLINDING,
            handle=handle,
            nbf=start,
            exp=start + SLOT,
            device=slot_device.public(),
            status_index=index,
        )
        if clear_sub:  # the flaw: the handle itself instead of its blinded form
            claims = offline.CredentialClaims(
                handle, start, start + SLOT, koff.device_key_of(slot_device.public()), index
            )
            protected = offline.credential_protected(key.alg.cose, kid)
            payload = offline.encode_credential_claims(claims)
            signature = key.sign(offline.credential_to_be_signed(protected, payload))
            credential = offline.encode_credential(protected, payload, signature)
        out.append(sc1.from_text(koff.make_code(slot_device, credential, iat=start + 7)))
    return out


def linked_pairs(alice: list[bytes], others: list[list[bytes]]) -> list[tuple[int, int, str]]:
    found = []
    for i in range(len(alice)):
        for j in range(i + 1, len(alice)):
            raw = raw_links(alice[i], alice[j], [o[k] for o in others for k in (i, j)])
            fields = field_links(alice[i], alice[j], [o[i] for o in others])
            if raw:
                found.append((i, j, "raw"))
            if fields:
                found.append((i, j, "fields"))
    return found


STARTS = [1_800_000_000 + k * SLOT for k in range(12)]


def test_codes_of_one_citizen_in_different_slots_share_no_identifying_bytes() -> None:
    key, kid = service(Alg.ES256)
    alice = citizen_codes(b"\xaa" * 10, STARTS, key, kid)
    others = [
        citizen_codes(b"\xbb" * 10, STARTS, key, kid),
        citizen_codes(b"\xaa" * 9 + b"\xab", STARTS, key, kid),
    ]
    assert linked_pairs(alice, others) == []


@pytest.mark.parametrize("flaw", ["device_key", "status_index", "clear_sub"])
def test_the_unlinkability_checks_catch_a_stable_value(flaw: str) -> None:
    """The checks above can fail: a wallet that keeps one device key for every slot (as
    the ride codes SPEC.md §6.1 criticises do), a service that reuses a credential's
    status index across slots, or one that writes the handle unblinded, is caught."""
    key, kid = service(Alg.ES256)
    starts = STARTS[:3]
    stable: dict[str, Any] = {
        "device_key": {"device": PrivateKey.generate(Alg.ES256)},
        "status_index": {"status_index": 0x5EED5EED},
        "clear_sub": {"clear_sub": True},
    }[flaw]
    alice = citizen_codes(b"\xaa" * 10, starts, key, kid, **stable)
    others = [citizen_codes(b"\xbb" * 10, starts, key, kid, clear_sub=flaw == "clear_sub")]
    kinds = {kind for _, _, kind in linked_pairs(alice, others)}
    assert kinds == ({"fields"} if flaw == "status_index" else {"raw", "fields"})
