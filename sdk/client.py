"""The SDK's online side: typed clients for partners (verify, trust bundles) and for a
citizen's device (registration and refill of offline credentials).

::

    from suishen.sdk.client import PartnerClient
    client = PartnerClient("https://code.city.example", client_id, client_secret)
    result = client.verify(code, scene="metro", checkpoint="L2-S12-G3", direction="in")
    if result.reason is Reason.OK: open_barrier()

    # online first, the offline gate when the network is gone (one call):
    result = client.verify_or_decide(gate, code, scene="metro", direction="in")

    # unified recognition: any code's kind, issuer and validity, never consuming it
    found = client.resolve(code)
    if found.kind == "enterprise" and found.valid: show(found.enterprise)

Partner tokens (OAuth 2.0 client credentials, RFC 6749 §4.4) are fetched on first use,
cached, and renewed 30 s before they expire. Every call has a timeout and retries 503
and 429 honouring ``Retry-After`` (:mod:`suishen.sdk.http`). Results carry the same
:class:`~suishen.verifiers.reasons.Reason` as the offline gate.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from suishen.sdk.http import HTTP, ServiceError
from suishen.verifiers.reasons import Reason

TOKEN_MARGIN = 30
COSE_MEDIA_TYPE = "application/cose"


@dataclass(frozen=True, slots=True)
class VerifyResult:
    """``POST /v1/verify``'s answer, typed; ``online`` tells a service answer from a
    gate's offline decision."""

    valid: bool
    reason: Reason
    verified_at: str
    kind: str | None = None
    subject: str | None = None
    attributes: dict[str, str] = field(default_factory=dict)
    code_expires_at: str | None = None
    online: bool = True
    degraded: bool = False
    raw: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_answer(cls, body: dict[str, Any]) -> VerifyResult:
        """Type a verify answer (unknown reasons from a newer service are refused)."""
        try:
            reason = Reason(body["reason"])
        except (KeyError, ValueError, TypeError) as exc:
            raise ServiceError(200, "unexpected verify answer", str(exc)) from exc
        return cls(
            valid=bool(body.get("valid")),
            reason=reason,
            verified_at=str(body.get("verified_at", "")),
            kind=body.get("kind"),
            subject=body.get("subject"),
            attributes=dict(body.get("attributes") or {}),
            code_expires_at=body.get("code_expires_at"),
            raw=body,
        )


@dataclass(frozen=True, slots=True)
class ResolveResult:
    """``POST /v1/resolve``'s answer, typed: ``kind`` and ``issuer`` are None for a code
    the service does not recognise as its own; ``enterprise`` is set for a valid
    enterprise code (the attributes this partner may see). ``raw`` keeps every member
    (kinds added later bring their own)."""

    valid: bool
    reason: Reason
    verified_at: str
    kind: str | None = None
    issuer: str | None = None
    code_expires_at: str | None = None
    enterprise: dict[str, Any] | None = None
    raw: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_answer(cls, body: dict[str, Any]) -> ResolveResult:
        """Type a resolve answer (unknown reasons from a newer service are refused)."""
        try:
            reason = Reason(body["reason"])
        except (KeyError, ValueError, TypeError) as exc:
            raise ServiceError(200, "unexpected resolve answer", str(exc)) from exc
        enterprise = body.get("enterprise")
        return cls(
            valid=bool(body.get("valid")),
            reason=reason,
            verified_at=str(body.get("verified_at", "")),
            kind=body.get("kind"),
            issuer=body.get("issuer"),
            code_expires_at=body.get("code_expires_at"),
            enterprise=dict(enterprise) if isinstance(enterprise, dict) else None,
            raw=body,
        )


@dataclass(slots=True)
class PartnerClient:
    """A partner's (or gate's) client: OAuth token, verify, trust bundle sync."""

    url: str
    client_id: str
    client_secret: str
    timeout: float = 5.0
    retries: int = 3
    clock: Callable[[], float] = field(default=time.time, repr=False)
    _http: HTTP = field(init=False, repr=False)
    _token: str | None = field(default=None, init=False, repr=False)
    _token_expires: float = field(default=0.0, init=False, repr=False)

    def __post_init__(self) -> None:
        self._http = HTTP(self.url, timeout=self.timeout, retries=self.retries)

    def __repr__(self) -> str:  # never show the secret or the token
        return f"PartnerClient(url={self.url!r}, client_id={self.client_id!r})"

    # --- token ----------------------------------------------------------------------
    def token(self) -> str:
        """A valid access token (fetched or renewed when needed)."""
        if self._token is None or self.clock() >= self._token_expires - TOKEN_MARGIN:
            basic = base64.b64encode(f"{self.client_id}:{self.client_secret}".encode()).decode()
            answer = self._http.request(
                "POST",
                "/v1/oauth/token",
                form={"grant_type": "client_credentials"},
                headers={"authorization": f"Basic {basic}"},
                idempotent=True,  # asking twice for a token is harmless
            ).json()
            try:
                self._token = str(answer["access_token"])
                self._token_expires = self.clock() + int(answer["expires_in"])
            except (KeyError, TypeError, ValueError) as exc:
                raise ServiceError(200, "unexpected token answer", str(exc)) from exc
        return self._token

    def _auth(self) -> dict[str, str]:
        return {"authorization": f"Bearer {self.token()}"}

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            return self._http.request(method, path, headers=self._auth(), **kwargs)
        except ServiceError as exc:
            if exc.status != 401:
                raise
            self._token = None  # revoked or rotated under us: one fresh token, once
            return self._http.request(method, path, headers=self._auth(), **kwargs)

    # --- verify -------------------------------------------------------------------
    def verify(
        self,
        code: str,
        *,
        scene: str,
        checkpoint: str,
        direction: str | None = None,
    ) -> VerifyResult:
        """Verify a code online."""
        body: dict[str, Any] = {"code": code, "scene": scene, "checkpoint": checkpoint}
        if direction is not None:
            body["direction"] = direction
        # A verify consumes single use: retried only on 429/503 (the server refused it
        # before judging), never after a lost answer.
        answer = self._call("POST", "/v1/verify", json_body=body, idempotent=False)
        return VerifyResult.from_answer(answer.json())

    def resolve(self, code: str) -> ResolveResult:
        """``POST /v1/resolve``: the code's kind, issuer, validity and what this partner
        may see. It never consumes a code, so it is retried like any idempotent call."""
        answer = self._call("POST", "/v1/resolve", json_body={"code": code}, idempotent=True)
        return ResolveResult.from_answer(answer.json())

    def verify_or_decide(
        self,
        gate: Any,
        code: str,
        *,
        scene: str,
        checkpoint: str = "offline",
        direction: str | None = None,
        now: int | None = None,
    ) -> VerifyResult:
        """Online verification, falling back to ``gate`` (a :class:`~suishen.sdk.gate.Gate`)
        when the service cannot be reached or is unavailable."""
        try:
            return self.verify(code, scene=scene, checkpoint=checkpoint, direction=direction)
        except ServiceError as exc:
            if exc.status not in (0, 429, 502, 503, 504):
                raise
        at = int(self.clock()) if now is None else now
        decision = gate.verify(code, scene=scene, direction=direction,
                               checkpoint=checkpoint, now=at)
        return VerifyResult(
            valid=decision.valid,
            reason=Reason(decision.reason),
            verified_at=decision.verified_at,
            kind=decision.kind,
            code_expires_at=decision.code_expires_at,
            online=False,
            degraded=decision.degraded,
            raw=decision.to_json(),
        )

    # --- trust ------------------------------------------------------------------
    def trust_bundle(self, since: int | None = None) -> bytes:
        """The signed bundle (or, with ``since``, a signed delta or the full bundle)."""
        query = None if since is None else {"since": str(since)}
        answer = self._call("GET", "/v1/trust-bundle", query=query)
        return bytes(answer.body)

    def upload_gate_events(self, events: Sequence[dict[str, Any]]) -> dict[str, Any]:
        """``POST /v1/gate-events``: a batch (at most 1,000) of a gate's offline
        decisions (:meth:`suishen.sdk.gate.Gate.take_log` entries); idempotent per gate
        and code, so a retried batch is harmless. The answer:
        ``{"accepted", "duplicates", "duplicate_uses", "ignored", "errors": [{"index",
        "reason", "detail"}]}``."""
        answer = self._call("POST", "/v1/gate-events", json_body={"events": list(events)},
                            idempotent=True)
        return dict(answer.json())

    def trust_anchor(self) -> dict[str, Any]:
        """The anchor JWK Set (public; no token needed)."""
        return dict(self._http.request("GET", "/v1/trust-anchor").json())


@dataclass(slots=True)
class DeviceClient:
    """A citizen's device: register with public keys, refill credentials."""

    url: str
    token: str
    timeout: float = 10.0
    retries: int = 3
    _http: HTTP = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._http = HTTP(self.url, timeout=self.timeout, retries=self.retries)

    def __repr__(self) -> str:
        return f"DeviceClient(url={self.url!r})"

    def _headers(self) -> dict[str, str]:
        return {"authorization": f"Bearer {self.token}"}

    def register(self, name: str, keys: Sequence[dict[str, str]]) -> dict[str, Any]:
        """``POST /v1/devices``: a new device and one credential per key."""
        return dict(
            self._http.request(
                "POST", "/v1/devices", json_body={"name": name, "keys": list(keys)},
                headers=self._headers(), idempotent=False,
            ).json()
        )

    def refill(self, device_id: str, keys: Sequence[dict[str, str]]) -> dict[str, Any]:
        """``POST /v1/devices/{id}/credentials``: the next credentials."""
        return dict(
            self._http.request(
                "POST", f"/v1/devices/{device_id}/credentials", json_body={"keys": list(keys)},
                headers=self._headers(), idempotent=False,
            ).json()
        )

    def devices(self) -> list[dict[str, Any]]:
        """``GET /v1/devices``."""
        answer = self._http.request("GET", "/v1/devices", headers=self._headers()).json()
        return list(answer.get("devices", []))
