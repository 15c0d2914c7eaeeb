"""Citizen authentication across every trusted identity provider, with a cache.

Apps refresh codes every half-minute with the same access token, so a token that passed
full validation is remembered and its next uses cost a hash and a dictionary lookup
instead of a signature check (issue 13: the check was a fifth of issuance). Why that
accepts nothing full validation would refuse:

* **Only successes are cached**, keyed by SHA-256 of the token: a hit means the very
  same token (collision resistance) already passed every check — signature, ``alg``,
  ``iss``, ``aud``, ``exp``/``nbf``/``iat``, ``sub`` — and the cache holds no bearer
  token that a memory dump or a debugger could replay.
* **Time is re-checked on every hit**, against the caller's ``now``: an entry answers
  only from the moment it was validated (``nbf`` and ``iat`` held then, and they are
  lower bounds) until ``exp`` — without the clock-skew leeway full validation grants,
  so a hit is never more lenient — and at most ``cache_seconds`` (300). A ``now``
  before the validation (a clock that went backwards) validates again in full.
* **A withdrawn identity-provider key flushes the cache**: when a load of a provider's
  JWK Set drops or changes a key the set held, every cached token is forgotten
  (:meth:`JwksSource.on_withdrawal`), so tokens that key signed fail from then on.
  Because hits never consult the JWK Set, the set is refreshed only by full validations;
  ``cache_seconds`` bounds how long any entry can go without one, so a withdrawn key is
  honoured at most the source's ``max_age_seconds`` plus ``cache_seconds``.
* **Bounded**: at most ``cache_size`` entries, least recently used forgotten first.

Suspension is not the token's business: issuance checks the citizen's status on every
code (``SubjectService.handle_for_code``).
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict

from suishen.app.auth.citizen import CitizenTokenValidator, JwksSource
from suishen.app.auth.dev_idp import DevIdentityProvider
from suishen.app.auth.errors import InvalidCitizenToken
from suishen.app.settings import Settings


def token_key(token: str) -> bytes:
    """The cache key of a token: its SHA-256 (the token itself is never kept)."""
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()


class CitizenAuth:
    """Validates citizens' tokens against every trusted identity provider, remembering
    the tokens that passed (see the module docstring for why that is safe)."""

    def __init__(
        self,
        validators: list[CitizenTokenValidator],
        *,
        cache_size: int = 50_000,
        cache_seconds: int = 300,
    ) -> None:
        self._validators = validators
        # token_key -> (sub, validated at, answer until)
        self._cache: OrderedDict[bytes, tuple[str, int, int]] = OrderedDict()
        self._cache_size = cache_size
        self._cache_seconds = cache_seconds
        for validator in validators:
            validator.jwks.on_withdrawal(self.flush)

    def flush(self) -> None:
        """Forget every cached token."""
        self._cache.clear()

    async def validate(self, token: str, *, now: int) -> str:
        """The citizen's ``sub``; :class:`InvalidCitizenToken` when no provider vouches."""
        key = token_key(token)
        hit = self._cache.get(key)
        if hit is not None:
            if hit[1] <= now < hit[2]:  # validated at <= now < answer until
                self._cache.move_to_end(key)
                return hit[0]
            del self._cache[key]
        error: InvalidCitizenToken | None = None
        for validator in self._validators:
            try:
                claims = await validator.validate_claims(token, now=now)
            except InvalidCitizenToken as exc:
                error = exc
                continue
            sub: str = claims["sub"]
            until = min(int(claims["exp"]), now + self._cache_seconds)
            self._cache[key] = (sub, now, until)
            if len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
            return sub
        raise error or InvalidCitizenToken("no identity provider is configured")


def citizen_auth_for(settings: Settings, dev_idp: DevIdentityProvider | None) -> CitizenAuth:
    """The citizen authentication ``settings`` describe: the city identity provider
    when configured, and the development one when given."""
    validators = []
    if settings.idp_configured:
        assert settings.idp_issuer and settings.idp_audience and settings.idp_jwks
        validators.append(
            CitizenTokenValidator(
                issuer=settings.idp_issuer,
                audience=settings.idp_audience,
                jwks=JwksSource(settings.idp_jwks),
                leeway=settings.clock_skew_seconds,
            )
        )
    if dev_idp is not None:
        validators.append(dev_idp.validator(leeway=settings.clock_skew_seconds))
    return CitizenAuth(validators)
