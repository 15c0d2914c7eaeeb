"""The partner, gate and phone SDK. Installs without the server stack (``pip install
suishen``: cryptography and cbor2 only).

Verify personal codes from the service's public keys::

    from suishen.sdk import Verifier
    verifier = Verifier.from_jwks(jwks)             # GET /v1/keys, cached
    decision = verifier.verify(code, scene="metro", direction="in")
    if decision.valid: open_barrier()
    else: show(decision.reason)                      # one Reason, e.g. "replayed"

Decide every kind of code offline from a trust bundle (:mod:`suishen.sdk.gate`)::

    from suishen.sdk.gate import Gate
    gate = Gate.from_anchor_jwks(anchor_jwks)       # GET /v1/trust-anchor, provisioned
    gate.load_bundle(client.trust_bundle())          # signed; deltas with since=
    decision = gate.verify(code, scene="metro", direction="in", now=now)

Online, with the offline gate as fallback (:mod:`suishen.sdk.client`)::

    from suishen.sdk.client import PartnerClient
    client = PartnerClient(url, client_id, client_secret)
    result = client.verify_or_decide(gate, code, scene="metro", direction="in")

Make offline codes on a device (:mod:`suishen.sdk.wallet`): ``Wallet(dir).enroll(...)``,
``.refill(...)``, ``.code(now)``.

A ``Verifier`` built from a JWK Set cannot see citizen suspensions or device
revocations, nor codes used at other gates: single use is per instance, and offline
codes need a gate's trust bundle (without it they are ``trust_expired``). Printed venue
codes are signed by venue keys, which only the trust bundle carries: a gate judges them
(``bad_signature``, ``revoked`` for a revoked venue, else ``scene_not_allowed``: a venue
code is not a citizen's credential); a ``Verifier`` from a JWK Set says ``unknown_key``.
"""

from __future__ import annotations

from suishen.sdk.verifier import Decision, Reason, Verifier

__all__ = ["Decision", "Reason", "Verifier"]
