"""Generate the SC1 test vectors in this folder from the fixed test keys in keys.json.

    .venv/bin/python tests/vectors/make_vectors.py              # rewrite golden/ and negative/
    .venv/bin/python tests/vectors/make_vectors.py --init-keys  # (re)create keys.json first

The output is byte-for-byte reproducible from keys.json: cti values and times are fixed,
Ed25519 signatures are deterministic, and ES256 signatures here use RFC 6979
deterministic ECDSA (the service itself signs with random nonces; both verify the same).
``tests/test_vectors.py`` regenerates everything in memory and fails if the files on disk
differ, so a change to the wire format cannot slip past these files unnoticed.

Codes are assembled from the same building blocks as
:meth:`suishen.keys.issuer.Issuer.issue_personal` (claims encoder, protected header,
Sig_structure, COSE encoder, blinding); hostile codes change exactly one thing, and the
file name says which. ``--init-keys`` derives every key from a fixed label, so even it
reproduces the same keys (only the AES-GCM nonces of the sealed copies change).

THESE ARE TEST KEYS. The key-encryption key sits in keys.json next to the keys it seals.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import struct
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from suishen.codecs import cbor, cose, sc1
from suishen.keys.algorithms import (
    COSE_ED25519,
    COSE_ESP256,
    P256_ORDER,
    Alg,
    PrivateKey,
    b64u,
    b64u_decode,
    low_s,
)
from suishen.keys.blinding import blind
from suishen.keys.kek import KeyEncryptionKey
from suishen.keys.keyring import KeyState
from suishen.keys.keyset import KeyRecord, KeySet, _aad

HERE = Path(__file__).resolve().parent
KEYS_FILE = HERE / "keys.json"

# Fixed times (seconds since the epoch). T0 = 2027-01-15T08:00:00Z.
KEYS_CREATED = 1_797_408_000  # 2026-12-16T08:00:00Z, 30 days before T0
T0 = 1_800_000_000
TTL = 60
SKEW = 30
EDDSA_RETIRED_UNTIL = T0 + 3_600  # the EdDSA key was rotated out; its overlap is open at T0

HANDLE_ES256 = bytes.fromhex("5c1e0ad0000000000001")
HANDLE_EDDSA = bytes.fromhex("5c1e0ad0000000000002")
CTI = {name: hashlib.sha256(b"suishen-test-cti:" + name.encode()).digest()[:8] for name in (
    "es256", "eddsa", "eddsa-long", "variant")}



# --- keys ------------------------------------------------------------------------------
@dataclass(frozen=True)
class TestKey:
    """A fixed signing key with its blinding secret."""

    name: str
    private: PrivateKey
    blinding: bytes

    @property
    def alg(self) -> Alg:
        return self.private.alg

    @property
    def kid(self) -> bytes:
        return self.private.public().kid_bytes()

    def sign(self, message: bytes) -> bytes:
        """Deterministic signature (RFC 8032 for Ed25519, RFC 6979 for ES256, then
        normalised to low S as the issuer does)."""
        key = self.private.key
        if isinstance(key, ed25519.Ed25519PrivateKey):
            return key.sign(message)
        assert isinstance(key, ec.EllipticCurvePrivateKey)
        der = key.sign(message, ec.ECDSA(hashes.SHA256(), deterministic_signing=True))
        r, s = decode_dss_signature(der)
        return low_s(r.to_bytes(32, "big") + s.to_bytes(32, "big"))


def _derived_private(name: str, alg: Alg) -> PrivateKey:
    seed = hashlib.sha256(b"suishen-test-key:" + name.encode()).digest()
    if alg is Alg.ES256:
        scalar = int.from_bytes(seed, "big") % P256_ORDER
        assert scalar != 0
        seed = scalar.to_bytes(32, "big")
    return PrivateKey.from_raw(alg, seed)


KEY_NAMES = {  # name -> algorithm; the first two form the trusted key set
    "es256": Alg.ES256,
    "eddsa": Alg.EDDSA,
    "impostor-es256": Alg.ES256,
    "impostor-eddsa": Alg.EDDSA,
}


def init_keys() -> dict[str, Any]:
    """The content of keys.json, derived from fixed labels."""
    kek_raw = hashlib.sha256(b"suishen-test-kek").digest()
    kek = KeyEncryptionKey(kek_raw)
    keys = {
        name: TestKey(name, _derived_private(name, alg),
                      hashlib.sha256(b"suishen-test-blinding:" + name.encode()).digest())
        for name, alg in KEY_NAMES.items()
    }
    kids = [k.kid for k in keys.values()]
    assert len(set(kids)) == len(kids), "test kids collide: change a label"
    pairwise = hashlib.sha256(b"suishen-test-pairwise").digest()

    def record(key: TestKey, state: KeyState, not_after: int | None) -> KeyRecord:
        kid = key.kid.hex()
        return KeyRecord(
            kid=kid,
            alg=key.alg,
            public=key.private.public().raw,
            private_sealed=kek.seal(key.private.raw, _aad("sign", kid)),
            blinding_sealed=kek.seal(key.blinding, _aad("blind", kid)),
            state=state,
            created_at=KEYS_CREATED,
            not_before=KEYS_CREATED,
            not_after=not_after,
        )

    keyset = KeySet(
        keys=(
            record(keys["eddsa"], KeyState.RETIRED, EDDSA_RETIRED_UNTIL),
            record(keys["es256"], KeyState.ACTIVE, None),
        ),
        pairwise_sealed=kek.seal(pairwise, _aad("pairwise")),
        version=2,
    )
    keyset.check_kek(kek)
    revoked = keyset.revoke(keys["es256"].kid.hex(), now=T0 - 600)
    return {
        "warning": "TEST KEYS ONLY. Never trust these anywhere; the KEK that seals them is here.",
        "kek": b64u(kek_raw),
        "private_keys": {
            name: {
                "alg": key.alg.value,
                "kid": key.kid.hex(),
                "d": b64u(key.private.raw),
                "blinding": b64u(key.blinding),
                "trusted": name in ("es256", "eddsa"),
            }
            for name, key in keys.items()
        },
        "keyset": keyset.to_dict(),
        "jwks": {
            "default": keyset.jwks(now=T0),
            "es256_revoked": revoked.jwks(now=T0),
        },
    }


def load_keys(data: dict[str, Any]) -> dict[str, TestKey]:
    """The private keys of keys.json, by name."""
    return {
        name: TestKey(
            name,
            PrivateKey.from_raw(Alg.parse(entry["alg"]), b64u_decode(entry["d"])),
            b64u_decode(entry["blinding"]),
        )
        for name, entry in data["private_keys"].items()
    }


# --- code assembly ---------------------------------------------------------------------
def claims_map(key: TestKey, handle: bytes, *, iat: int = T0, ttl: int = TTL,
               cti: bytes | None = None, kind: int = 0) -> dict[int, Any]:
    """Personal claims in the documented order, with the subject blinded."""
    cti = CTI[key.name] if cti is None else cti
    return {
        sc1.CLAIM_SUB: blind(handle, key.blinding, iat=iat, cti=cti),
        sc1.CLAIM_EXP: iat + ttl,
        sc1.CLAIM_IAT: iat,
        sc1.CLAIM_CTI: cti,
        sc1.CLAIM_KIND: kind,
    }


def cose_bytes(
    signer: TestKey,
    claims: dict[Any, Any] | bytes,
    *,
    alg: Any = None,
    kid: bytes | None = None,
    unprotected: dict[Any, Any] | None = None,
) -> bytes:
    """A tagged COSE_Sign1 signed by ``signer`` (header values overridable)."""
    header = {cose.HDR_ALG: signer.alg.cose if alg is None else alg,
              cose.HDR_KID: signer.kid if kid is None else kid}
    protected = cbor.dumps(header)
    payload = claims if isinstance(claims, bytes) else cbor.dumps(claims)
    signature = signer.sign(cose.sig_structure(protected, payload))
    return cose.encode_sign1(protected, unprotected or {}, payload, signature)


def text(raw: bytes) -> str:
    return sc1.to_text(raw)


def _replace_signature(raw: bytes, signature: bytes) -> bytes:
    msg = cose.decode_sign1(raw)
    return cose.encode_sign1(msg.protected_raw, msg.unprotected, msg.payload, signature)


def _replace_protected(raw: bytes, protected: dict[int, Any]) -> bytes:
    msg = cose.decode_sign1(raw)
    return cose.encode_sign1(cbor.dumps(protected), msg.unprotected, msg.payload, msg.signature)


def _replace_payload(raw: bytes, payload: bytes) -> bytes:
    msg = cose.decode_sign1(raw)
    return cose.encode_sign1(msg.protected_raw, msg.unprotected, payload, msg.signature)


# --- vectors ---------------------------------------------------------------------------
def vector(description: str, code: str, expected_reason: str, *, now: int = T0 + 10,
           scene: str = "library", direction: str | None = None, jwks: str = "default",
           **extra: Any) -> dict[str, Any]:
    out: dict[str, Any] = {
        "description": description,
        "code": code,
        "now": now,
        "scene": scene,
        "direction": direction,
        "jwks": jwks,
        "expected_reason": expected_reason,
    }
    out.update(extra)
    return out


def build(data: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Every vector file, as relative path -> JSON content."""
    keys = load_keys(data)
    es, ed = keys["es256"], keys["eddsa"]
    imp_es, imp_ed = keys["impostor-es256"], keys["impostor-eddsa"]
    good_es = cose_bytes(es, claims_map(es, HANDLE_ES256))
    good_ed = cose_bytes(ed, claims_map(ed, HANDLE_EDDSA))
    good_body = text(good_es)[len(sc1.PREFIX):]
    msg_es = cose.decode_sign1(good_es)
    out: dict[str, dict[str, Any]] = {}

    def golden(name: str, key: TestKey, raw: bytes, handle: bytes, note: str = "") -> None:
        claims = sc1.decode_claims(cose.decode_sign1(raw).payload)
        out[f"golden/{name}.json"] = vector(
            f"A valid personal code signed with the {key.alg.value} test key "
            f"(kid {key.kid.hex()}){note}, presented at a library during its lifetime.",
            text(raw), "ok", alg=key.alg.value, kid=key.kid.hex(),
            subject_handle=handle.hex(), iat=claims.iat, exp=claims.exp,
            cti=claims.cti.hex(),
        )

    golden("ok_es256", es, good_es, HANDLE_ES256)
    golden("ok_eddsa", ed, good_ed, HANDLE_EDDSA)
    # RFC 9864's fully-specified identifiers: verifiers accept them beside -7/-8 (the
    # issuer keeps writing -7/-8). Same claims as the goldens above, re-signed.
    golden("ok_esp256", es, cose_bytes(es, claims_map(es, HANDLE_ES256), alg=COSE_ESP256),
           HANDLE_ES256, note=" under the RFC 9864 identifier ESP256 (-9)")
    golden("ok_ed25519", ed, cose_bytes(ed, claims_map(ed, HANDLE_EDDSA), alg=COSE_ED25519),
           HANDLE_EDDSA, note=" under the RFC 9864 identifier Ed25519 (-19)")

    def neg(name: str, description: str, code: str, reason: str, **kw: Any) -> None:
        out[f"negative/{name}.json"] = vector(description, code, reason, **kw)

    # malformed: the bytes are not an SC1 code ------------------------------------------
    neg("malformed_truncated_base45",
        "The golden ES256 code with its last two characters cut off: a base45 length of "
        "3k+1 cannot be decoded.", text(good_es)[:-2], "malformed")
    neg("malformed_truncated_cose",
        "The golden ES256 code with its last three characters (two bytes of signature) "
        "cut off: valid base45, truncated CBOR.", text(good_es)[:-3], "malformed")
    neg("malformed_trailing_bytes",
        "The golden ES256 COSE message followed by one extra byte 0x00.",
        text(good_es + b"\x00"), "malformed")
    neg("malformed_bad_cbor_indefinite_array",
        "The golden ES256 COSE message with its array written as an indefinite-length "
        "array (0x9f ... 0xff); the strict decoder takes definite lengths only.",
        text(b"\xd2\x9f" + good_es[2:] + b"\xff"), "malformed")
    neg("malformed_lowercase_base45",
        "The golden ES256 code with its base45 body in lower case: outside the alphabet.",
        sc1.PREFIX + good_body.lower(), "malformed")
    neg("malformed_untagged_cose",
        "The golden ES256 COSE message without its CBOR tag 18 (the profile requires it).",
        text(good_es[1:]), "malformed")
    neg("malformed_unprotected_header",
        "A correctly signed ES256 code that also carries an unprotected header {4: kid}; "
        "SC1 puts every header in the protected bucket.",
        text(cose.encode_sign1(msg_es.protected_raw, {cose.HDR_KID: es.kid},
                               msg_es.payload, msg_es.signature)), "malformed")
    neg("malformed_extra_protected_header",
        "A correctly signed ES256 code whose protected header also holds content type "
        "(3: 0): the protected header must hold exactly alg and kid.",
        text(_resign_protected(es, {cose.HDR_ALG: -7, cose.HDR_KID: es.kid, 3: 0},
                               msg_es.payload)), "malformed")
    claims = claims_map(es, HANDLE_ES256)
    neg("malformed_claim_exp_text",
        "Correctly signed by the trusted ES256 key, but exp (4) is a text string.",
        text(cose_bytes(es, {**claims, sc1.CLAIM_EXP: str(T0 + TTL)})), "malformed")
    neg("malformed_claim_sub_short",
        "Correctly signed by the trusted ES256 key, but sub (2) is 9 bytes, not 10.",
        text(cose_bytes(es, {**claims, sc1.CLAIM_SUB: claims[sc1.CLAIM_SUB][:9]})),
        "malformed")
    neg("malformed_claim_cti_missing",
        "Correctly signed by the trusted ES256 key, but the claims lack cti (7).",
        text(cose_bytes(es, {k: v for k, v in claims.items() if k != sc1.CLAIM_CTI})),
        "malformed")
    neg("malformed_claim_exp_float",
        "Correctly signed by the trusted ES256 key, but exp (4) is a float64: the strict "
        "CBOR subset has no floats.",
        text(cose_bytes(es, _claims_with_float_exp(claims))), "malformed")
    neg("malformed_claim_exp_before_iat",
        "Correctly signed by the trusted ES256 key, but exp is not after iat.",
        text(cose_bytes(es, {**claims, sc1.CLAIM_EXP: T0})), "malformed")

    # unsupported_version: never guessed ---------------------------------------------------
    neg("unsupported_version_sc2",
        "The golden ES256 body behind an SC2: prefix (a future format version).",
        "SC2:" + good_body, "unsupported_version")
    neg("unsupported_version_hc1",
        "The golden ES256 body behind HC1: (the EU digital COVID certificate prefix).",
        "HC1:" + good_body, "unsupported_version")
    neg("unsupported_version_no_prefix",
        "The golden ES256 base45 body with no prefix at all.", good_body,
        "unsupported_version")
    neg("unsupported_version_lowercase_prefix",
        "The golden ES256 code with its prefix in lower case (sc1:): prefixes are exact.",
        "sc1:" + good_body, "unsupported_version")
    neg("unsupported_version_offline_kind",
        "Correctly signed by the trusted ES256 key, kind (-1) = 1 (offline): this version "
        "cannot judge offline codes yet, so it says unsupported_version, not ok.",
        text(cose_bytes(es, claims_map(es, HANDLE_ES256, kind=1))), "unsupported_version",
        scene="hospital")

    # unknown_key ---------------------------------------------------------------------------
    neg("unknown_key",
        "A well-formed code signed by a key that is not in the JWK Set, under its own kid "
        f"({imp_es.kid.hex()}).",
        text(cose_bytes(imp_es, claims_map(imp_es, HANDLE_ES256, cti=CTI["variant"]))),
        "unknown_key")
    long_ed = cose_bytes(ed, claims_map(ed, HANDLE_EDDSA, ttl=86_400, cti=CTI["eddsa-long"]))
    neg("unknown_key_retired_window_closed",
        "A 24-hour EdDSA code from the retired EdDSA key, presented one second after the "
        "key's verification window (not_after + skew) closed, while the code itself "
        "has not expired yet.",
        text(long_ed), "unknown_key", now=EDDSA_RETIRED_UNTIL + SKEW + 1)

    # bad_signature -------------------------------------------------------------------------
    sig = bytearray(msg_es.signature)
    sig[-1] ^= 0x01
    neg("bad_signature_flipped_byte",
        "The golden ES256 code with the last bit of its signature flipped.",
        text(_replace_signature(good_es, bytes(sig))), "bad_signature")
    tampered = dict(claims)
    tampered[sc1.CLAIM_EXP] = T0 + 86_400
    high_s = msg_es.signature[:32] + (
        P256_ORDER - int.from_bytes(msg_es.signature[32:], "big")).to_bytes(32, "big")
    neg("bad_signature_high_s",
        "The golden ES256 code with its signature (r, s) replaced by (r, n - s): "
        "mathematically valid ECDSA, but the high-S twin of the genuine code. Refused so "
        "that one signed content has exactly one accepted byte form.",
        text(_replace_signature(good_es, high_s)), "bad_signature")
    neg("bad_signature_tampered_exp",
        "The golden ES256 code with exp moved a day later; the signature is the original.",
        text(_replace_payload(good_es, cbor.dumps(tampered))), "bad_signature")
    neg("bad_signature_alg_changed",
        "The golden ES256 code with its alg header changed to EdDSA (-8); the signature "
        "is the original.",
        text(_replace_protected(good_es, {cose.HDR_ALG: Alg.EDDSA.cose,
                                          cose.HDR_KID: es.kid})), "bad_signature")
    neg("bad_signature_alg_confusion_resigned",
        "Signed correctly by the trusted ES256 key over a header that claims EdDSA (-8): "
        "the alg must match the key's algorithm, whatever the signature says.",
        text(cose_bytes(es, claims, alg=Alg.EDDSA.cose)), "bad_signature")
    neg("bad_signature_alg_mismatch_ed25519_on_p256",
        "Signed correctly by the trusted ES256 (P-256) key over a header with alg "
        "Ed25519 (-19, RFC 9864): a fully-specified identifier still names one key type, "
        "and this key is not Ed25519.",
        text(cose_bytes(es, claims, alg=COSE_ED25519)), "bad_signature")
    neg("bad_signature_alg_mismatch_esp256_on_ed25519",
        "Signed correctly by the trusted EdDSA key over a header with alg ESP256 (-9, "
        "RFC 9864), which names P-256.",
        text(cose_bytes(ed, claims_map(ed, HANDLE_EDDSA), alg=COSE_ESP256)), "bad_signature")
    neg("bad_signature_alg_unknown",
        "Signed correctly by the trusted ES256 key over a header with alg 0 (reserved; "
        "COSE's nearest thing to 'none'): algorithms outside the closed list are refused.",
        text(cose_bytes(es, claims, alg=0)), "bad_signature")
    neg("bad_signature_alg_es512",
        "Signed by the trusted ES256 key over a header with alg ES512 (-36): the P-256 "
        "key is bound to ES256 only.",
        text(cose_bytes(es, claims, alg=-36)), "bad_signature")
    neg("bad_signature_impostor_same_kid",
        "Re-signed by another P-256 key that claims the trusted ES256 kid "
        f"({es.kid.hex()}).",
        text(cose_bytes(imp_es, claims, kid=es.kid)), "bad_signature")
    neg("bad_signature_impostor_eddsa_same_kid",
        "Re-signed by another Ed25519 key that claims the trusted EdDSA kid "
        f"({ed.kid.hex()}).",
        text(cose_bytes(imp_ed, claims_map(ed, HANDLE_EDDSA), kid=ed.kid)), "bad_signature")

    # times ---------------------------------------------------------------------------------
    neg("expired",
        "The golden ES256 code presented one second after exp + skew (30 s).",
        text(good_es), "expired", now=T0 + TTL + SKEW + 1)
    neg("not_yet_valid",
        "The golden ES256 code presented one second before iat - skew (30 s).",
        text(good_es), "not_yet_valid", now=T0 - SKEW - 1)

    # revoked -------------------------------------------------------------------------------
    neg("revoked_key",
        "The golden ES256 code, verified against a JWK Set in which its key is revoked.",
        text(good_es), "revoked", jwks="es256_revoked")

    # replayed ------------------------------------------------------------------------------
    neg("replayed",
        "The golden ES256 code entering the metro at gate G3, then again at gate G4 of "
        "another station: single use per scene and direction, across checkpoints.",
        text(good_es), "replayed", scene="metro", direction="in", checkpoint="L9-S02-G4",
        prior=[{"scene": "metro", "direction": "in", "checkpoint": "L2-S12-G3",
                "now": T0 + 5, "expected_reason": "ok"}])
    return out


def _resign_protected(signer: TestKey, header: dict[int, Any], payload: bytes) -> bytes:
    protected = cbor.dumps(header)
    signature = signer.sign(cose.sig_structure(protected, payload))
    return cose.encode_sign1(protected, {}, payload, signature)


def _claims_with_float_exp(claims: dict[int, Any]) -> bytes:
    """The claims map with exp encoded as a float64 (cbor2 would pick an int)."""
    parts = [b"\xa5"]
    for label, value in claims.items():
        parts.append(cbor.dumps(label))
        if label == sc1.CLAIM_EXP:
            parts.append(b"\xfb" + struct.pack(">d", float(value)))
        else:
            parts.append(cbor.dumps(value))
    return b"".join(parts)


def dump(content: dict[str, Any]) -> str:
    """The exact text of a vector file."""
    return json.dumps(content, indent=2, sort_keys=False, ensure_ascii=True) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--init-keys", action="store_true",
                        help="(re)create keys.json from the fixed labels first")
    args = parser.parse_args(argv)
    if args.init_keys or not KEYS_FILE.exists():
        KEYS_FILE.write_text(dump(init_keys()), encoding="utf-8")
        print(f"wrote {KEYS_FILE.relative_to(HERE.parent.parent)}")
    data = json.loads(KEYS_FILE.read_text(encoding="utf-8"))
    files = build(data)
    for sub in ("golden", "negative"):
        folder = HERE / sub
        folder.mkdir(exist_ok=True)
        for stale in folder.glob("*.json"):
            if f"{sub}/{stale.name}" not in files:
                stale.unlink()
    for rel, content in sorted(files.items()):
        (HERE / rel).write_text(dump(content), encoding="utf-8")
    print(f"wrote {len(files)} vectors under {HERE.relative_to(HERE.parent.parent)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
