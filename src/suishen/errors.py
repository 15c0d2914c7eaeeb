"""One root exception for the project, with a family per layer.

Domain errors carry no HTTP status: ``suishen.app.problems`` is the one place that maps
them to RFC 9457 problem details. Parsers raise these typed errors and never swallow.
"""

from __future__ import annotations


class SuishenError(Exception):
    """Root of every error this project raises on purpose."""


# --- codecs -------------------------------------------------------------------------
class CodecError(SuishenError):
    """Input that is not a well-formed encoding (base45, CBOR, COSE, the SC1 profile)."""


class UnsupportedVersion(CodecError):
    """A code whose prefix or format version this software does not know."""


# --- keys ---------------------------------------------------------------------------
class KeyManagementError(SuishenError):
    """Key-set operations that cannot be carried out (no active key, unknown kid, ...)."""


class WrongKeyEncryptionKey(KeyManagementError):
    """An encrypted private key did not decrypt: the key-encryption key is wrong."""


class InvalidKeyEncryptionKey(KeyManagementError):
    """The configured key-encryption key is not 32 bytes of base64url."""


# --- verification and issuance -----------------------------------------------------
class VerificationError(SuishenError):
    """A verification request that cannot be judged (as opposed to a rejected code)."""


class UnknownScene(VerificationError):
    """The scene named in a request has no policy."""


class SceneNotAllowed(VerificationError):
    """The partner is not registered for the scene it asks to verify in."""


class ScopeNotAllowed(SceneNotAllowed):
    """The partner's access token does not carry the scope ``verify:<scene>``."""


class IssuanceError(SuishenError):
    """A code cannot be issued (suspended citizen, no signing key, ...)."""


class SubjectSuspended(IssuanceError):
    """The citizen is suspended: no new code."""


class NotAnAgent(IssuanceError):
    """The citizen is not an authorised agent of the enterprise (or there is no such
    enterprise): no enterprise code."""


class EnterpriseSuspended(IssuanceError):
    """The enterprise is suspended: no enterprise code."""


# --- configuration and storage -------------------------------------------------------
class ConfigError(SuishenError):
    """Settings that are missing or contradict each other."""


class StorageError(SuishenError):
    """A storage backend failed."""


class BackendUnavailable(StorageError):
    """A storage backend cannot be reached right now; retry later."""


# --- requests -------------------------------------------------------------------------
class RequestError(SuishenError):
    """A request the service refuses for its form or its volume, before any judgement.
    ``detail`` is safe to show to the caller (it never echoes the request's values)."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class InvalidRequest(RequestError):
    """The request body or its parameters do not fit the documented schema."""


class UnsupportedMediaType(RequestError):
    """The body is not in the media type the operation takes."""


class BodyTooLarge(RequestError):
    """The body is larger than the configured limit."""


class NotFound(RequestError):
    """The resource the request names does not exist."""


class RateLimited(RequestError):
    """Too many requests from one caller; it may try again after ``retry_after`` seconds
    (a whole number, at least 1)."""

    def __init__(self, detail: str, *, retry_after: int) -> None:
        super().__init__(detail)
        self.retry_after = max(1, retry_after)


def describe(exc: BaseException) -> str:
    """A short description of an error for logs and for a backend-unavailable message:
    the exception's class and the first line of its text. Drivers (asyncpg, redis-py)
    never put passwords in their messages, and callers never pass a DSN or URL here."""
    text = str(exc).strip()
    first = text.splitlines()[0] if text else ""
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__
