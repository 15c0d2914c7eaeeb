"""Authentication building blocks for the HTTP layer (SPEC §4).

* :mod:`.citizen` — validating citizens' OIDC-style JWTs against the identity
  provider's JWK Set (file or URL, cached, rate-limited refetch);
* :mod:`.dev_idp` — the development identity provider (development posture only);
* :mod:`.partner_tokens` — OAuth 2.0 client credentials: client secrets and the
  service's own short-lived partner access tokens, signed with a rotating key set;
* :mod:`.errors` — the typed failures, each with a detail safe to show a client.

Nothing here imports FastAPI: route handlers parse headers and call these functions,
and the one problem+json mapper in ``app/`` turns :class:`.errors.AuthError` into 401.
Time is always a parameter (``now``), so tests pin it instead of sleeping.
"""
