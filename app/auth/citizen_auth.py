"""Citizen authentication across every trusted identity provider, with a small cache."""

from __future__ import annotations

from collections import OrderedDict

from suishen.app.auth.citizen import CitizenTokenValidator, JwksSource
from suishen.app.auth.dev_idp import DevIdentityProvider
from suishen.app.auth.errors import InvalidCitizenToken
from suishen.app.settings import Settings


class CitizenAuth:
    """Validates citizens' tokens against every trusted identity provider.

    Apps refresh codes every half-minute with the same access token, so a validated
    token is remembered (bounded, until its ``exp`` and at most ``cache_seconds``):
    the signature check is then a dictionary lookup. Only successes are cached, and
    ``exp`` is re-checked on every hit.
    """

    def __init__(
        self,
        validators: list[CitizenTokenValidator],
        *,
        cache_size: int = 50_000,
        cache_seconds: int = 300,
    ) -> None:
        self._validators = validators
        self._cache: OrderedDict[str, tuple[str, int]] = OrderedDict()
        self._cache_size = cache_size
        self._cache_seconds = cache_seconds

    async def validate(self, token: str, *, now: int) -> str:
        """The citizen's ``sub``; :class:`InvalidCitizenToken` when no provider vouches."""
        hit = self._cache.get(token)
        if hit is not None:
            if now < hit[1]:
                return hit[0]
            del self._cache[token]
        error: InvalidCitizenToken | None = None
        for validator in self._validators:
            try:
                claims = await validator.validate_claims(token, now=now)
            except InvalidCitizenToken as exc:
                error = exc
                continue
            sub: str = claims["sub"]
            until = min(int(claims["exp"]), now + self._cache_seconds)
            self._cache[token] = (sub, until)
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
