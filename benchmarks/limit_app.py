"""The *limit* of SPEC §7: what one Python process can do per core for a verify request.

A raw ASGI app on the same server stack as the service (uvicorn, httptools, uvloop):
``POST /v1/verify`` reads the body, decodes it with msgspec into the same request shape,
and checks ONE signature — the code's, with the public key named by its ``kid``, using
the project's own exact-layout parse (:func:`suishen.codecs.sc1.parse`) and
:meth:`suishen.keys.algorithms.PublicKey.verify`. It answers a fixed-shape msgspec JSON.
Nothing else: no authentication, no policy, no replay memory, no audit, no metrics,
no middleware. The service is compared against it (goal: >= 0.7x) and against the naive
baseline (``benchmarks/naive_app.py``).

    .venv/bin/python benchmarks/limit_app.py --port 8200 --jwks http://127.0.0.1:8000/v1/keys
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

import msgspec

from suishen.codecs import sc1
from suishen.errors import CodecError
from suishen.keys.keyring import KeyRing

sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parent))
from naive_app import _load_jwks  # the same JWK Set loading as the baseline


class VerifyIn(msgspec.Struct):
    code: str
    scene: str
    checkpoint: str | None = None
    direction: str | None = None


class VerifyOut(msgspec.Struct):
    valid: bool
    reason: str


_decode = msgspec.json.Decoder(VerifyIn).decode
_encode = msgspec.json.Encoder().encode
_HEADERS = [(b"content-type", b"application/json")]


def create_app(sources: str) -> Any:
    keys = {}
    for source in sources.replace(",", " ").split():
        for key in KeyRing.from_jwks(_load_jwks(source)):
            keys[key.kid] = key.public

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                event = await receive()
                if event["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif event["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] != "http":
            return
        body = b""
        more = True
        while more:
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)
        status, answer = 200, VerifyOut(False, "malformed")
        if scope["path"] == "/healthz":
            answer = VerifyOut(True, "ok")
        elif scope["path"] != "/v1/verify" or scope["method"] != "POST":
            status, answer = 404, VerifyOut(False, "not_found")
        else:
            try:
                request = _decode(body)
                envelope = sc1.parse(request.code)
                key = keys.get(envelope.kid)
                message_ = envelope.message
                if key is None:
                    answer = VerifyOut(False, "unknown_key")
                elif key.verify(message_.signature, message_.to_be_signed()):
                    answer = VerifyOut(True, "ok")
                else:
                    answer = VerifyOut(False, "bad_signature")
            except (msgspec.ValidationError, msgspec.DecodeError):
                status, answer = 422, VerifyOut(False, "malformed")
            except CodecError:
                answer = VerifyOut(False, "malformed")
        await send({"type": "http.response.start", "status": status, "headers": _HEADERS})
        await send({"type": "http.response.body", "body": _encode(answer)})

    return app


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8200)
    parser.add_argument("--jwks", required=True)
    args = parser.parse_args()
    import uvicorn

    uvicorn.run(create_app(args.jwks), host=args.host, port=args.port, workers=1,
                access_log=False, log_level="warning", server_header=False, lifespan="on")
    return 0


if __name__ == "__main__":
    sys.exit(main())
