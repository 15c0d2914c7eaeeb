"""Signing-key lifecycle: algorithms, key-encryption at rest, key sets with states and
validity windows, subject blinding, signers and the issuer. Pure and synchronous apart
from the store interface (async, as the databases are): storage comes in through
:class:`suishen.keys.keyset.KeySetStore` implementations that live in ``app/``."""
