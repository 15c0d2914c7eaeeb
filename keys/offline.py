"""Offline credentials and codes with keys: issue, make on the device, check signatures.

The layout is in :mod:`suishen.codecs.offline`. Three operations, all pure apart from
the randomness of ECDSA:

* :func:`sign_credential` (service side, through the signer seam): blind the
  citizen's handle for this credential, bind it to one device key for one slot, sign
  with the code-signing key and the credential AAD.
* :func:`make_code` (phone side): sign ``{iat, counter}`` with the slot's device key,
  carrying the credential in the protected header.
* :func:`check_signatures` (gate and service): both signatures, the device key taken
  from the credential's ``cnf`` and checked to be a point on P-256.

Blinding of ``sub`` in credentials
----------------------------------
``sub = handle XOR HMAC-SHA256(k_blind, "SC1-sub" || nbf[8] || 0x01 || status[4])[:10]``
(:func:`suishen.keys.blinding.blind` with ``iat = nbf`` and ``cti = 0x01 || status``).
The service allocates status indices so that ``(slot, index)`` never repeats under one
key, so the pad never repeats. The 5-byte ``cti`` input can never equal the 8-byte
``cti`` of a personal code, so a credential's pad never equals a personal code's either.
"""

from __future__ import annotations

from cryptography.hazmat.primitives.asymmetric import ec

from suishen.codecs import cose, offline, sc1
from suishen.errors import KeyManagementError
from suishen.keys.algorithms import Alg, PrivateKey, PublicKey
from suishen.keys.blinding import blind
from suishen.keys.signer import Signer, SoftwareSigner

# Device keys are P-256 (what hardware keystores make). ES256 is what devices write;
# ESP256 (RFC 9864) names the same algorithm and is accepted.
DEVICE_ALGS = frozenset({-7, -9})


def credential_nonce(status_index: int) -> bytes:
    """The ``cti`` input of the blinding pad of a credential (see the module docstring)."""
    return b"\x01" + status_index.to_bytes(4, "big")


def device_key_of(public: PublicKey) -> offline.DeviceKey:
    """The compressed form of a P-256 device public key."""
    if public.alg is not Alg.ES256:
        raise KeyManagementError("device keys are P-256")
    raw = public.raw  # 04 || x || y
    return offline.DeviceKey(x=raw[1:33], y_odd=bool(raw[64] & 1))


def device_public_key(key: offline.DeviceKey) -> PublicKey:
    """The P-256 public key a credential confirms; raises when x is not on the curve."""
    try:
        point = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), key.sec1())
    except ValueError as exc:
        raise KeyManagementError("the credential's device key is not a P-256 point") from exc
    return PublicKey(Alg.ES256, point)


def issue_credential(
    private: PrivateKey,
    kid: bytes,
    blinding: bytes,
    *,
    handle: bytes,
    nbf: int,
    exp: int,
    device: PublicKey,
    status_index: int,
) -> bytes:
    """:func:`sign_credential` with a software key (tests, benchmarks, tools)."""
    return sign_credential(
        SoftwareSigner(private, kid), blinding, handle=handle, nbf=nbf, exp=exp,
        device=device, status_index=status_index,
    )


def sign_credential(
    signer: Signer,
    blinding: bytes,
    *,
    handle: bytes,
    nbf: int,
    exp: int,
    device: PublicKey,
    status_index: int,
) -> bytes:
    """A signed credential (the untagged COSE_Sign1 bytes that go into ``kcwt``), signed
    through the same :class:`~suishen.keys.signer.Signer` seam as personal codes."""
    claims = offline.CredentialClaims(
        sub=blind(handle, blinding, iat=nbf, cti=credential_nonce(status_index)),
        nbf=nbf,
        exp=exp,
        device_key=device_key_of(device),
        status_index=status_index,
    )
    payload = offline.encode_credential_claims(claims)
    protected = offline.credential_protected(signer.algorithm.cose, signer.kid)
    signature = signer.sign(offline.credential_to_be_signed(protected, payload))
    return offline.encode_credential(protected, payload, signature)


def make_code(device: PrivateKey, credential: bytes, *, iat: int, counter: int = 0) -> str:
    """An offline code's text, signed by the slot's device key at ``iat``."""
    if device.alg is not Alg.ES256:
        raise KeyManagementError("device keys are P-256")
    protected = offline.code_protected(device.alg.cose, credential)
    payload = offline.encode_code_claims(offline.CodeClaims(iat=iat, counter=counter))
    signature = device.sign(cose.sig_structure(protected, payload))
    return sc1.to_text(cose.encode_sign1(protected, {}, payload, signature))


def parse_code(text: str) -> offline.OfflineCode:
    """Decode an offline code's text (no signature checked); :class:`CodecError` else."""
    return offline.parse_bytes(sc1.from_text(text))


def unblind_credential(credential: offline.Credential, blinding: bytes) -> bytes:
    """The citizen's handle behind a credential (service side only)."""
    claims = credential.claims
    return blind(claims.sub, blinding, iat=claims.nbf, cti=credential_nonce(claims.status_index))


def check_signatures(code: offline.OfflineCode, service_key: PublicKey) -> bool:
    """True when the service signed the credential and its device key signed the code.

    ``service_key`` is the code-signing key named by the credential's ``kid``; the
    caller has checked that its algorithm matches the credential's ``alg`` and its
    state. The device algorithm must be P-256.
    """
    if code.alg not in DEVICE_ALGS:
        return False
    credential = code.credential
    # The service signs low-S (keys.algorithms), so its signature must be the canonical
    # one; the device's may be either form (WebCrypto and phone keystores do not
    # normalise) -- replay memories name a code by its claims, not its signature bytes.
    if not service_key.verify_canonical(credential.signature, credential.to_be_signed()):
        return False
    try:
        device = device_public_key(credential.claims.device_key)
    except KeyManagementError:
        return False
    return device.verify(code.message.signature, code.to_be_signed())
