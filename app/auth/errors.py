"""Authentication failures.

Every failure carries a short ``detail`` that is safe to send to the client: it names
what was wrong in general terms and never echoes the token, the secret or claim values
(a token in an error body ends up in logs and support tickets). ``oauth_error`` is the
RFC 6749 / RFC 6750 error code the HTTP layer puts into the problem body and the
``WWW-Authenticate`` header; the HTTP status itself is chosen in ``app/`` alone.
"""

from __future__ import annotations

from typing import ClassVar

from suishen.errors import SuishenError

__all__ = [
    "AuthError",
    "InvalidAdminToken",
    "InvalidCitizenToken",
    "InvalidClient",
    "InvalidPartnerToken",
    "InvalidSubject",
    "MissingBearerToken",
]


class AuthError(SuishenError):
    """A request that could not be authenticated."""

    default_detail: ClassVar[str] = "authentication failed"
    oauth_error: ClassVar[str] = "invalid_token"

    def __init__(self, detail: str | None = None) -> None:
        self.detail = detail or self.default_detail
        super().__init__(self.detail)


class MissingBearerToken(AuthError):
    """No usable ``Authorization: Bearer`` header (absent, another scheme, empty, or
    longer than any token we accept)."""

    default_detail = "a bearer token is required"


class InvalidAdminToken(AuthError):
    """A bearer token that is not the operators' admin token."""

    default_detail = "invalid admin token"


class InvalidCitizenToken(AuthError):
    """A citizen bearer token that is missing, malformed, forged, expired or not ours."""

    default_detail = "invalid citizen token"


class InvalidPartnerToken(AuthError):
    """A partner access token that is malformed, forged, expired or signed by a key
    that no longer verifies."""

    default_detail = "invalid partner token"


class InvalidClient(AuthError):
    """Client authentication failed (RFC 6749 §5.2 ``invalid_client``): unknown client,
    wrong secret or unusable credentials. The detail never says which of them."""

    default_detail = "client authentication failed"
    oauth_error = "invalid_client"


class InvalidSubject(SuishenError, ValueError):
    """A subject identifier the development identity provider refuses to put in a token
    (empty, too long, or with control characters). A bad request, not an auth failure."""
