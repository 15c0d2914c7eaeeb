"""Citizen authentication across every trusted identity provider, with a small cache."""

from __future__ import annotations

from collections import OrderedDict

from suishen.app.auth.citizen import CitizenTokenValidator
from suishen.app.auth.errors import InvalidCitizenToken


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
