"""Encryption of private keys and secrets at rest with a key-encryption key (KEK).

The KEK is 32 random bytes, given as base64url (padding optional) in
``SUISHEN_KEY_ENCRYPTION_KEY``. Each secret is sealed with AES-256-GCM under a fresh
96-bit random nonce; the associated data binds the blob to what it is (for example
``b"sign:" + kid``) so that blobs cannot be swapped between records. Sealed form::

    "v1." + base64url(nonce[12] || ciphertext || tag[16])

A blob that does not open means the KEK is wrong (or the blob was altered):
:class:`WrongKeyEncryptionKey`, never the plaintext and never a crash.
"""

from __future__ import annotations

import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from suishen.errors import InvalidKeyEncryptionKey, WrongKeyEncryptionKey
from suishen.keys.algorithms import b64u, b64u_decode

_VERSION = "v1."
_NONCE = 12


class KeyEncryptionKey:
    """A 256-bit AES-GCM key that seals and opens secrets at rest."""

    __slots__ = ("_aead", "_key")

    def __init__(self, key: bytes) -> None:
        if len(key) != 32:
            raise InvalidKeyEncryptionKey("the key-encryption key must be 32 bytes")
        self._aead = AESGCM(key)
        self._key = key

    @classmethod
    def from_text(cls, text: str) -> KeyEncryptionKey:
        """Parse base64url text (padding optional)."""
        try:
            raw = b64u_decode(text.strip())
        except (ValueError, TypeError):
            raise InvalidKeyEncryptionKey("the key-encryption key is not base64url") from None
        if len(raw) != 32:
            raise InvalidKeyEncryptionKey(
                f"the key-encryption key must be 32 bytes of base64url, got {len(raw)} bytes"
            )
        return cls(raw)

    @staticmethod
    def generate_text() -> str:
        """A new random KEK as base64url text."""
        return b64u(os.urandom(32))

    def __repr__(self) -> str:  # never show key material
        return "KeyEncryptionKey(<secret>)"

    def derive(self, label: bytes, length: int = 32) -> bytes:
        """A sub-key for one purpose (HKDF-SHA256 with ``label`` as info). Used for
        development conveniences that several processes must agree on."""
        return HKDF(algorithm=hashes.SHA256(), length=length, salt=None, info=label).derive(
            self._key
        )

    def seal(self, secret: bytes, aad: bytes) -> str:
        """Encrypt ``secret`` bound to ``aad``."""
        nonce = os.urandom(_NONCE)
        return _VERSION + b64u(nonce + self._aead.encrypt(nonce, secret, aad))

    def open(self, blob: str, aad: bytes) -> bytes:
        """Decrypt a sealed blob; :class:`WrongKeyEncryptionKey` when it does not open."""
        if not isinstance(blob, str) or not blob.startswith(_VERSION):
            raise WrongKeyEncryptionKey("sealed secret has an unknown format")
        try:
            raw = b64u_decode(blob[len(_VERSION) :])
        except ValueError:
            raise WrongKeyEncryptionKey("sealed secret is not base64url") from None
        if len(raw) < _NONCE + 16:
            raise WrongKeyEncryptionKey("sealed secret is truncated")
        try:
            return self._aead.decrypt(raw[:_NONCE], raw[_NONCE:], aad)
        except InvalidTag:
            raise WrongKeyEncryptionKey(
                "a private key did not decrypt: wrong key-encryption key"
            ) from None
