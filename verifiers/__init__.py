"""Verification: the pure pipeline from code text to a decision with one reason, and
per-scene policies. Synchronous, no I/O; the clock, keys, revocation sets and replay
memory come in as arguments."""
