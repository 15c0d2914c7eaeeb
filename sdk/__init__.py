"""The partner and gate SDK: verify SC1 codes offline from the service's public keys.

::

    from suishen.sdk import Verifier
    verifier = Verifier.from_jwks(jwks)             # GET /v1/keys, cached
    decision = verifier.verify(code, scene="metro", direction="in")
    if decision.valid: open_barrier()
    else: show(decision.reason)                      # one Reason, e.g. "replayed"

Offline, a gate cannot see citizen suspensions (the trust bundle brings them later) nor
codes used at other gates: single use here is per ``Verifier`` instance.
"""

from __future__ import annotations

from suishen.sdk.verifier import Decision, Reason, Verifier

__all__ = ["Decision", "Reason", "Verifier"]
