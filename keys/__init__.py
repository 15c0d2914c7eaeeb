"""Signing-key lifecycle: algorithms, key-encryption at rest, key sets with states and
validity windows, subject blinding and the issuer. Pure and synchronous: storage comes in
through :class:`suishen.keys.keyset.KeyStore` implementations that live in ``app/``."""
