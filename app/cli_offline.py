"""The offline commands of the ``suishen`` command line (SPEC.md §6.1)::

    suishen wallet enroll --url URL --token CITIZEN_TOKEN --dir DIR [--name NAME] [--count N]
    suishen wallet refill --dir DIR [--token CITIZEN_TOKEN] [--count N]
    suishen wallet code   --dir DIR [--at RFC3339] [--format text|png|svg] [--out FILE]
    suishen bundle fetch  --url URL --client-id ID --client-secret SECRET --out FILE
    suishen bundle inspect FILE
    suishen gate verify   --bundle FILE --anchor JWKS_FILE --scene SCENE [--direction in|out]
                          [--checkpoint ID] [--at RFC3339] [--state FILE] INPUT...
    suishen gate upload   --state FILE --url URL --client-id ID --client-secret SECRET

Names and options are an interface (SPEC.md §6.1; ``--count`` and ``refill --token`` are
additions). Everything here runs on the SDK-only install; reading a code from an image
needs the ``scan`` extra (zxing-cpp), writing one the ``qr`` extra.

``wallet refill`` authenticates with ``--token``, else ``SUISHEN_CITIZEN_TOKEN``, else
the token given at enrolment (kept in ``DIR/token``, mode 0600: it is the citizen's own
bearer token on the citizen's own device). ``bundle fetch`` and ``gate upload`` take the
partner's secret from ``--client-secret``, else ``SUISHEN_CLIENT_SECRET`` (an addition:
a secret in argv is visible to every local user in the process list). Exit status as
for every command: 0 success (``gate verify``: every input valid), 1 failure, 2 usage
error.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from suishen.app import cli as base
from suishen.errors import SuishenError, UnknownScene
from suishen.timefmt import parse_rfc3339, rfc3339

TOKEN_ENV = "SUISHEN_CITIZEN_TOKEN"  # noqa: S105 - a variable name, not a secret
TOKEN_FILE = "token"  # noqa: S105 - a file name
SECRET_ENV = "SUISHEN_CLIENT_SECRET"  # noqa: S105 - a variable name, not a secret
SECRET_HELP = (f"the partner's client secret (default: ${SECRET_ENV}, which keeps it out of "
               "the process list; write --client-secret=SECRET if it starts with '-')")
UPLOAD_BATCH = 1000
MAX_DELTAS = 50
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


def add_commands(groups: Any) -> None:
    """Register ``wallet``, ``bundle`` and ``gate`` on the top-level subparsers."""
    wallet = groups.add_parser("wallet", help="a device's offline credentials and codes")
    wallet_commands = wallet.add_subparsers(title="wallet commands", metavar="WALLETCOMMAND")
    wallet.set_defaults(handler=base._help_of(wallet))

    enroll = wallet_commands.add_parser(
        "enroll", help="register a device (keys generated into DIR) and store its credentials")
    enroll.add_argument("--url", required=True, help="the service, e.g. http://127.0.0.1:8000")
    enroll.add_argument("--token", required=True, help="the citizen's bearer token")
    enroll.add_argument("--dir", required=True, help="the wallet directory (created)")
    enroll.add_argument("--name", default="phone", help="the device's name (default phone)")
    enroll.add_argument("--count", type=_count, default=None,
                        help="how many slots to ask for (default: what the service gives)")
    enroll.set_defaults(handler=_wallet_enroll)

    refill = wallet_commands.add_parser("refill", help="fetch the next credentials")
    refill.add_argument("--dir", required=True)
    refill.add_argument("--token", help=f"bearer token (default: ${TOKEN_ENV}, else the "
                        "enrolment token)")
    refill.add_argument("--count", type=_count, default=None)
    refill.set_defaults(handler=_wallet_refill)

    code = wallet_commands.add_parser("code", help="make an offline code locally (no network)")
    code.add_argument("--dir", required=True)
    code.add_argument("--at", metavar="RFC3339", help="make it as at this time (default now)")
    code.add_argument("--format", choices=("text", "png", "svg"), default="text")
    code.add_argument("--out", metavar="FILE", help="write to FILE instead of stdout")
    code.set_defaults(handler=_wallet_code)

    bundle = groups.add_parser("bundle", help="trust bundles for offline gates")
    bundle_commands = bundle.add_subparsers(title="bundle commands", metavar="BUNDLECOMMAND")
    bundle.set_defaults(handler=base._help_of(bundle))
    fetch = bundle_commands.add_parser(
        "fetch", help="fetch (or update, when FILE exists) a trust bundle")
    fetch.add_argument("--url", required=True)
    fetch.add_argument("--client-id", required=True)
    fetch.add_argument("--client-secret", help=SECRET_HELP)
    fetch.add_argument("--out", required=True, metavar="FILE")
    fetch.set_defaults(handler=_bundle_fetch)
    inspect = bundle_commands.add_parser(
        "inspect", help="print version, times, keys and revocation counts (no anchor needed)")
    inspect.add_argument("file", metavar="FILE")
    inspect.set_defaults(handler=_bundle_inspect)

    gate = groups.add_parser("gate", help="decide codes offline from a trust bundle")
    gate_commands = gate.add_subparsers(title="gate commands", metavar="GATECOMMAND")
    gate.set_defaults(handler=base._help_of(gate))
    verify = gate_commands.add_parser(
        "verify", help="decide codes offline; one JSON line per INPUT",
        description="Decide each INPUT (a code's text, or a PNG/JPEG image of it) with "
        "the trust bundle only. Exit 0 when every input is valid, 1 when any is not, 2 "
        "for usage errors. --state keeps the replay memory and clock floor across runs.")
    verify.add_argument("--bundle", required=True, metavar="FILE")
    verify.add_argument("--anchor", required=True, metavar="JWKS_FILE",
                        help="the trust anchor's JWK Set (GET /v1/trust-anchor)")
    verify.add_argument("--scene", required=True)
    verify.add_argument("--direction", choices=("in", "out"))
    verify.add_argument("--checkpoint", metavar="ID")
    verify.add_argument("--at", metavar="RFC3339")
    verify.add_argument("--state", metavar="FILE")
    verify.add_argument("inputs", nargs="+", metavar="INPUT")
    verify.set_defaults(handler=_gate_verify)
    upload = gate_commands.add_parser(
        "upload", help="send the gate's offline decisions (POST /v1/gate-events)")
    upload.add_argument("--state", required=True, metavar="FILE")
    upload.add_argument("--url", required=True)
    upload.add_argument("--client-id", required=True)
    upload.add_argument("--client-secret", help=SECRET_HELP)
    upload.set_defaults(handler=_gate_upload)


def _count(text: str) -> int:
    value = base._non_negative_int(text)
    if not 1 <= value <= 500:
        raise argparse.ArgumentTypeError("must be between 1 and 500")
    return value


def _at(text: str | None) -> int:
    if text is None:
        return base._now()
    try:
        return parse_rfc3339(text)
    except ValueError as exc:
        raise base.UsageError(f"--at {text!r}: {exc}") from None


# --- wallet ---------------------------------------------------------------------------
def _wallet_enroll(args: argparse.Namespace) -> int:
    from suishen.sdk.client import DeviceClient
    from suishen.sdk.wallet import DEFAULT_BATCH, Wallet

    folder = Path(args.dir)
    wallet = Wallet(folder)
    client = DeviceClient(args.url, args.token)
    added = wallet.enroll(client, name=args.name, count=args.count or DEFAULT_BATCH)
    _save_token(folder, args.token)
    until = wallet.covered_until(base._now())
    base._print_json({"device_id": wallet.device_id, "credentials": added,
                      "covered_until": rfc3339(until)})
    return base.EXIT_OK


def _wallet_refill(args: argparse.Namespace) -> int:
    from suishen.sdk.client import DeviceClient
    from suishen.sdk.wallet import DEFAULT_BATCH, Wallet

    folder = Path(args.dir)
    wallet = Wallet(folder)
    if wallet.url is None:
        raise base.UsageError(f"{folder} is not an enrolled wallet (suishen wallet enroll)")
    token = args.token or os.environ.get(TOKEN_ENV) or _read_token(folder)
    now = base._now()
    added = wallet.refill(DeviceClient(wallet.url, token), now=now,
                          count=args.count or DEFAULT_BATCH)
    base._print_json({"device_id": wallet.device_id, "credentials": added,
                      "covered_until": rfc3339(wallet.covered_until(now))})
    return base.EXIT_OK


def _wallet_code(args: argparse.Namespace) -> int:
    from suishen.sdk.wallet import Wallet

    folder = Path(args.dir)
    if not (folder / "wallet.json").exists():
        raise base.UsageError(f"{folder} is not a wallet (suishen wallet enroll)")
    text = Wallet(folder).code(_at(args.at))
    if args.format == "text":
        if args.out is None:
            print(text)
        else:
            base._write_file(args.out, (text + "\n").encode("ascii"))
        return base.EXIT_OK
    if args.out is None and sys.stdout.isatty():
        raise base.UsageError(f"refusing to write a {args.format.upper()} image to a terminal")
    from suishen.codecs import qr

    data = qr.render_png(text) if args.format == "png" else qr.render_svg(text)
    if args.out is None:
        sys.stdout.flush()
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
    else:
        base._write_file(args.out, data)
    return base.EXIT_OK


def _save_token(folder: Path, token: str) -> None:
    path = folder / TOKEN_FILE
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(token)


def _read_token(folder: Path) -> str:
    try:
        return (folder / TOKEN_FILE).read_text(encoding="utf-8").strip()
    except OSError:
        raise base.UsageError(f"no token: pass --token or set {TOKEN_ENV}") from None


def _client_secret(args: argparse.Namespace) -> str:
    secret = args.client_secret if args.client_secret is not None else os.environ.get(SECRET_ENV)
    if not secret:
        raise base.UsageError(f"no client secret: pass --client-secret or set {SECRET_ENV}")
    return str(secret)


# --- bundles ------------------------------------------------------------------------
def _bundle_fetch(args: argparse.Namespace) -> int:
    from suishen.sdk.client import PartnerClient
    from suishen.sdk.gate import read_bundle_file, unverified_state, write_bundle_file

    out = Path(args.out)
    chain: list[bytes] = []
    since = None
    if out.exists():
        chain = read_bundle_file(out)
        held = unverified_state(chain).bundle
        # A long chain of deltas is compacted by asking for a full bundle instead.
        if held is not None and len(chain) < MAX_DELTAS:
            since = held.version
    client = PartnerClient(args.url, args.client_id, _client_secret(args))
    signed = client.trust_bundle(since=since)
    from suishen.codecs import bundle as codec
    from suishen.codecs import cose

    incoming = codec.decode(cose.decode_sign1(signed).payload)
    if incoming.is_delta:
        chain.append(signed)
    elif since is not None and incoming.version == since:
        pass  # nothing new
    else:
        chain = [signed]
    state = unverified_state(chain)  # refuses a chain that does not apply
    write_bundle_file(out, chain)
    assert state.bundle is not None
    base._print_json({"version": state.bundle.version, "delta": incoming.is_delta,
                      "bytes": len(signed), "file": str(out)})
    return base.EXIT_OK


def _bundle_inspect(args: argparse.Namespace) -> int:
    from suishen.sdk.gate import read_bundle_file, unverified_state

    state = unverified_state(read_bundle_file(Path(args.file)))
    bundle = state.bundle
    assert bundle is not None
    counts = state.revoked_count()
    base._print_json({
        "version": bundle.version,
        "issued_at": rfc3339(bundle.issued_at),
        "refresh_after": rfc3339(bundle.refresh_after),
        "expires_at": rfc3339(bundle.expires_at),
        "slot_seconds": bundle.slot_seconds,
        "keys": [
            {"kid": k.kid.hex(), "alg": k.alg, "state": k.state,
             "not_before": rfc3339(k.nbf), "not_after": None if k.exp is None else rfc3339(k.exp)}
            for k in bundle.keys
        ],
        "slots": len(counts),
        "revoked": sum(counts.values()),
        "revoked_by_slot": {rfc3339(slot): n for slot, n in counts.items()},
    })
    return base.EXIT_OK


# --- gate ---------------------------------------------------------------------------
def _gate(args: argparse.Namespace, at: int) -> Any:
    from suishen.sdk.gate import Gate, read_bundle_file

    try:
        anchor = json.loads(Path(args.anchor).read_text(encoding="utf-8"))
        gate = Gate.from_anchor_jwks(anchor, skew=base._clock_skew())
    except OSError as exc:
        raise base.UsageError(f"cannot read the anchor: {base._os_error(exc)}") from None
    except (ValueError, SuishenError) as exc:
        raise base.UsageError(f"{args.anchor} is not a usable JWK Set: {exc}") from None
    if args.state is not None:
        gate.restore(Path(args.state), now=at)
    gate.load_chain(read_bundle_file(Path(args.bundle)))
    return gate


def _gate_verify(args: argparse.Namespace) -> int:
    from suishen.verifiers.policy import scene

    try:
        scene(args.scene)
    except UnknownScene as exc:
        raise base.UsageError(str(exc)) from None
    at = _at(args.at)
    texts = [_input_text(item) for item in args.inputs]
    gate = _gate(args, at)
    all_valid = True
    for text in texts:
        decision = gate.verify(text, scene=args.scene, direction=args.direction,
                               checkpoint=args.checkpoint, now=at)
        all_valid &= decision.valid
        print(json.dumps(decision.to_json(), separators=(",", ":")), flush=True)
    if args.state is not None:
        gate.save(Path(args.state))
    return base.EXIT_OK if all_valid else base.EXIT_FAILURE


def _input_text(item: str) -> str:
    """A code's text: the argument itself, or the QR code read from an image file."""
    if item == "-":
        return sys.stdin.readline().strip()
    if not item.lower().endswith(IMAGE_SUFFIXES):
        return item
    import zxingcpp  # the `scan` extra
    from PIL import Image

    try:
        with Image.open(item) as image:
            qr_only = zxingcpp.BarcodeFormats(zxingcpp.BarcodeFormat.QRCode)
            found = zxingcpp.read_barcodes(image, formats=qr_only)
    except OSError as exc:
        raise base.UsageError(f"cannot read image {item}: {base._os_error(exc)}") from None
    if not found:
        return ""  # a code the gate cannot read is judged malformed, like bad text
    return str(found[0].text)


def _gate_upload(args: argparse.Namespace) -> int:
    from suishen.sdk.client import PartnerClient
    from suishen.sdk.gate import Gate

    state_path = Path(args.state)
    if not state_path.exists():
        raise base.UsageError(f"{state_path}: no gate state file")
    gate = Gate.with_anchors({})
    gate.restore(state_path, now=base._now())
    client = PartnerClient(args.url, args.client_id, _client_secret(args))
    totals = {"uploaded": 0, "accepted": 0, "duplicates": 0, "duplicate_uses": 0,
              "ignored": 0, "errors": 0}
    while gate.log:
        batch = gate.log[:UPLOAD_BATCH]
        answer = client.upload_gate_events(batch)
        # The service has judged every entry of the batch (an entry it refused will be
        # refused again): all of them leave the log, so nothing is re-sent forever.
        gate.forget_uploaded(len(batch))
        totals["uploaded"] += len(batch)
        for name in ("accepted", "duplicates", "duplicate_uses", "ignored"):
            totals[name] += int(answer.get(name, 0))
        totals["errors"] += len(answer.get("errors", ()))
        gate.save(state_path)  # after each batch: an interrupted upload resends nothing
    base._print_json(totals)
    return base.EXIT_OK
