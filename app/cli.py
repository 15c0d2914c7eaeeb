"""The ``suishen`` command line.

::

    suishen keys init    [--dir DIR] [--key-set codes|tokens] [--alg EdDSA|ES256]
    suishen keys list    [--dir DIR] [--key-set codes|tokens] [--json]
    suishen keys rotate  [--dir DIR] [--key-set codes|tokens] [--alg EdDSA|ES256]
                         [--overlap SECONDS]
    suishen keys revoke  KID [--dir DIR] [--key-set codes|tokens]
    suishen keys jwks    [--dir DIR] [--key-set codes|tokens]
    suishen codes issue  --dir DIR --sub HANDLE_HEX [--ttl SECONDS] [--format text|png|svg]
                         [--out FILE]
    suishen codes verify --jwks FILE [--scene SCENE] [--at RFC3339] [--direction in|out] CODE
    suishen codes inspect CODE [--dir DIR]

Command names and options are a public interface (scripts and the README use them).
Exit status: 0 success (for ``codes verify``: the code is valid), 1 failure (a code that
is not valid, a wrong key-encryption key, a missing key directory, ...), 2 usage error,
130 interrupted. Every error is one line on stderr, ``suishen: error: ...``; never a
traceback.

Adding a command is adding one ``_add_*`` function that builds its subparser and
registers its handler with ``set_defaults(handler=...)``; a handler takes the parsed
arguments and returns the exit status. Only the standard library and the pure core are
imported at start: the QR renderer is imported by ``codes issue`` when it needs it, and
the service (FastAPI, uvicorn, database drivers) only by the service commands. So the
key and code commands run on the SDK-only install (``pip install suishen``); a command
that needs an extra that is not installed (``serve`` without ``suishen[server]``, a PNG
without ``suishen[qr]``) exits 1 naming the ``pip install`` that provides it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, NoReturn

from suishen import __version__
from suishen.app.keydir import KEK_ENV, KekSource, KeyDirectory, KeyDirectoryError
from suishen.codecs import cbor, sc1
from suishen.errors import (
    CodecError,
    KeyManagementError,
    SuishenError,
    UnknownScene,
    WrongKeyEncryptionKey,
)
from suishen.keys.algorithms import Alg, UnsupportedAlgorithm
from suishen.keys.blinding import unblind
from suishen.keys.issuer import MAX_TTL, MIN_TTL
from suishen.keys.keyring import KeyState
from suishen.keys.keyset import DEFAULT_ALG, KeySet, KeySetStore
from suishen.timefmt import parse_rfc3339, rfc3339
from suishen.verifiers.policy import SCENES

PROG = "suishen"
DEFAULT_SCENE = "library"
DEFAULT_CODE_TTL = 60
DEFAULT_CLOCK_SKEW = 30
MAX_CLOCK_SKEW = 600
TTL_ENV = "SUISHEN_CODE_TTL_SECONDS"
SKEW_ENV = "SUISHEN_CLOCK_SKEW_SECONDS"

EXIT_OK, EXIT_FAILURE, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130

Handler = Callable[[argparse.Namespace], int]

# Claim labels shown by name in `codes inspect` (RFC 8392 and the SC1 private labels).
_CLAIM_NAMES = {
    sc1.CLAIM_SUB: "sub",
    sc1.CLAIM_EXP: "exp",
    sc1.CLAIM_NBF: "nbf",
    sc1.CLAIM_IAT: "iat",
    sc1.CLAIM_CTI: "cti",
    sc1.CLAIM_CNF: "cnf",
    sc1.CLAIM_KIND: "kind",
}
_TIME_CLAIMS = frozenset({sc1.CLAIM_EXP, sc1.CLAIM_NBF, sc1.CLAIM_IAT})


class UsageError(Exception):
    """The command line asks for something that cannot be done as asked (exit 2)."""


class _Parser(argparse.ArgumentParser):
    """argparse with the one-line error format of every other error."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{PROG}: error: {message} (see '{self.prog} --help')\n")


# --- entry point ----------------------------------------------------------------------
def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; returns the exit status (the console script exits with it)."""
    parser = build_parser()
    try:
        try:
            args = parser.parse_args(argv)
        except SystemExit as exc:  # --help, or a usage error already reported
            return exc.code if isinstance(exc.code, int) else EXIT_USAGE
        handler: Handler | None = getattr(args, "handler", None)
        if handler is None:
            parser.print_help(sys.stderr)
            return EXIT_USAGE
        return handler(args)
    except ModuleNotFoundError as exc:
        extra = _extra_providing(exc.name)
        if extra is None:
            raise
        # The base install is the SDK alone (SPEC.md section 2): say what to install
        # rather than show an import traceback.
        return _fail(f"this command needs the '{extra}' extra, which is not installed "
                     f"(no module named {exc.name!r}): pip install 'suishen[{extra}]'",
                     EXIT_FAILURE)
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # The reader went away (`suishen keys jwks | head`): stop quietly.
        _silence_stdout()
        return EXIT_FAILURE
    except UsageError as exc:
        return _fail(str(exc), EXIT_USAGE)
    except (SuishenError, ValueError) as exc:
        return _fail(str(exc) or type(exc).__name__, EXIT_FAILURE)
    except OSError as exc:
        return _fail(_os_error(exc), EXIT_FAILURE)


# Top-level modules that only an extra installs (pyproject.toml), and that extra.
_EXTRA_OF_MODULE = {
    **dict.fromkeys(("qrcode", "PIL"), "qr"),
    "zxingcpp": "scan",
    **dict.fromkeys(("fastapi", "starlette", "uvicorn", "jwt", "redis", "hiredis", "asyncpg",
                     "msgspec", "aiosqlite", "pydantic", "pydantic_core",
                     "pydantic_settings", "prometheus_client", "httpx"), "server"),
}


def _extra_providing(module: str | None) -> str | None:
    """The extra that installs ``module`` (a dotted name), or None if none does."""
    return _EXTRA_OF_MODULE.get((module or "").partition(".")[0])


def build_parser() -> argparse.ArgumentParser:
    """The whole command tree (one ``_add_*`` function per command)."""
    parser = _Parser(
        prog=PROG,
        description="Suishen city code service: key sets, codes, and the service itself.",
    )
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    groups = parser.add_subparsers(title="commands", metavar="COMMAND")

    keys = groups.add_parser("keys", description=_KEYS_HELP,
                             help="manage a signing-key set (a directory, or the service's)")
    keys_commands = keys.add_subparsers(title="key commands", metavar="KEYCOMMAND")
    keys.set_defaults(handler=_help_of(keys))
    _add_keys_init(keys_commands)
    _add_keys_list(keys_commands)
    _add_keys_rotate(keys_commands)
    _add_keys_revoke(keys_commands)
    _add_keys_jwks(keys_commands)

    codes = groups.add_parser("codes", help="issue, verify and inspect codes")
    codes_commands = codes.add_subparsers(title="code commands", metavar="CODECOMMAND")
    codes.set_defaults(handler=_help_of(codes))
    _add_codes_issue(codes_commands)
    _add_codes_verify(codes_commands)
    _add_codes_inspect(codes_commands)

    from suishen.app import cli_offline  # wallet, bundle, gate (SPEC.md section 6.1)

    cli_offline.add_commands(groups)

    # --- service commands ------------------------------------------------------------
    # Their handlers import suishen.app.server inside the function: FastAPI, uvicorn
    # and the database drivers are slow to import and the key and code commands must
    # not pay.
    _add_serve(groups)
    _add_migrate(groups)
    return parser


def _add_serve(groups: Any) -> None:
    parser = groups.add_parser(
        "serve", help="run the HTTP service (embedded default without configuration)",
        description="Run the service under uvicorn. With no SUISHEN_ variables set this is "
        "the embedded default: SQLite and keys under ./var, development posture. "
        "SUISHEN_ENV=production refuses to start without its settings.")
    parser.add_argument("--host", help="listen address (default: SUISHEN_HOST, 127.0.0.1)")
    parser.add_argument("--port", type=_port, help="listen port (default: SUISHEN_PORT, 8000)")
    parser.add_argument("--workers", type=_workers,
                        help="worker processes, 1 to 64 (default: SUISHEN_WORKERS, 1)")
    parser.set_defaults(handler=_serve)


def _port(text: str) -> int:
    value = _non_negative_int(text)
    if not 1 <= value <= 65535:
        raise argparse.ArgumentTypeError("must be between 1 and 65535")
    return value


def _workers(text: str) -> int:
    value = _non_negative_int(text)
    if not 1 <= value <= 64:
        raise argparse.ArgumentTypeError("must be between 1 and 64")
    return value


def _serve(args: argparse.Namespace) -> int:
    from suishen.app.server import serve

    serve(host=args.host, port=args.port, workers=args.workers)
    return EXIT_OK


def _add_migrate(groups: Any) -> None:
    parser = groups.add_parser(
        "migrate", help="apply pending database migrations (idempotent)",
        description="Apply pending schema migrations to SUISHEN_DATABASE_URL (or the "
        "embedded SQLite file). Safe to run while other processes start.")
    parser.set_defaults(handler=_migrate)


def _migrate(args: argparse.Namespace) -> int:
    from suishen.app.server import migrate

    applied = migrate()
    print("applied: " + ", ".join(applied) if applied else "the schema is up to date")
    return EXIT_OK


_KEYS_HELP = f"""\
Where the key set lives: with --dir DIR, in DIR/keyset.json (DIR/keyset-tokens.json
for --key-set tokens; mode 0600; private keys sealed), the key-encryption key from
{KEK_ENV}, or when that is unset DIR/kek (generated by `keys init`, development
only). Without --dir, the key set of the service that the SUISHEN_ settings describe:
SUISHEN_DATABASE_URL (PostgreSQL), or the SQLite file in SUISHEN_DATA_DIR, sealed with
the service's KEK ({KEK_ENV}, or the development KEK in SUISHEN_DATA_DIR). A running
service picks a change up within a second (it polls the key-set versions; with
SUISHEN_REDIS_URL set the command also announces the change on the change feed)."""

KEY_SETS = ("codes", "tokens")
PARTNER_TOKEN_TTL_ENV = "SUISHEN_PARTNER_TOKEN_TTL_SECONDS"  # noqa: S105 - a variable name
DEFAULT_PARTNER_TOKEN_TTL = 300
PARTNER_TOKEN_LEEWAY = 5


def _help_of(parser: argparse.ArgumentParser) -> Handler:
    def show_help(args: argparse.Namespace) -> int:
        parser.print_help(sys.stderr)
        return EXIT_USAGE

    return show_help


# --- keys -----------------------------------------------------------------------------
def _add_dir(parser: argparse.ArgumentParser, *, required: bool = True) -> None:
    parser.add_argument("--dir", required=required, metavar="DIR",
                        help="the key directory (DIR/keyset.json, DIR/kek)")


def _add_key_target(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dir", metavar="DIR",
                        help="a key directory (DIR/keyset.json, DIR/kek); without it, the "
                        "key set of the service the SUISHEN_ settings describe")
    parser.add_argument("--key-set", choices=KEY_SETS, default="codes", dest="key_set",
                        help="which key set: codes (signs codes; default) or tokens "
                        "(signs partner access tokens)")


def _add_alg(parser: argparse.ArgumentParser, help_text: str) -> None:
    parser.add_argument("--alg", choices=[alg.value for alg in Alg], help=help_text)


@dataclass
class _KeyTarget:
    """One key set in one store, whichever store the command line names."""

    store: KeySetStore
    name: str
    where: str  # for messages; never a DSN (it may carry a password)
    kek: Callable[[], KekSource]
    kek_for_init: Callable[[], KekSource]
    overlap: Callable[[], int]
    init_hint: str
    announce: Callable[[int], Awaitable[None]]
    close: Callable[[], Awaitable[None]]
    rotate_hint: str

    async def require(self) -> KeySet:
        keyset = await self.store.load(self.name)
        if keyset is None:
            raise KeyDirectoryError(f"no {self.name} key set in {self.where} "
                                    f"(create one with: {self.init_hint})")
        return keyset

    def check_kek(self, keyset: KeySet, source: KekSource) -> None:
        try:
            keyset.check_kek(source.kek)
        except WrongKeyEncryptionKey:
            raise WrongKeyEncryptionKey(
                f"wrong key-encryption key: the key from {source.origin} does not open "
                f"the {self.name} key set in {self.where}"
            ) from None

    async def change(self, keyset: KeySet, updated: KeySet) -> None:
        """Compare-and-swap ``updated`` over ``keyset``; a concurrent change is an error
        (nothing is overwritten: run the command again)."""
        if not await self.store.save(self.name, updated, expected_version=keyset.version):
            raise KeyManagementError(f"the {self.name} key set in {self.where} was changed "
                                     "by someone else meanwhile; nothing written, try again")
        await self.announce(updated.version)


def _directory_target(args: argparse.Namespace) -> _KeyTarget:
    directory = KeyDirectory(args.dir)
    name = args.key_set
    flag = "" if name == "codes" else f" --key-set {name}"

    async def no_announce(version: int) -> None:
        return None

    async def nothing_to_close() -> None:
        return None

    def overlap() -> int:
        if name == "codes":
            return _code_ttl() + _clock_skew()
        ttl = _env_int(PARTNER_TOKEN_TTL_ENV, DEFAULT_PARTNER_TOKEN_TTL, 30, MAX_TTL)
        return ttl + PARTNER_TOKEN_LEEWAY

    if not directory.path.exists():
        where = f"key directory {directory.path} (it does not exist)"
    else:
        where = f"key directory {directory.path}"
    return _KeyTarget(
        store=directory.keysets, name=name, where=where,
        kek=directory.kek, kek_for_init=directory.kek_for_init, overlap=overlap,
        init_hint=f"suishen keys init --dir {directory.path}{flag}",
        announce=no_announce, close=nothing_to_close,
        rotate_hint=f"suishen keys rotate --dir {directory.path}{flag}",
    )


async def _service_target(args: argparse.Namespace) -> _KeyTarget:
    # The service's own stack, imported only here: `--dir` commands never load it.
    from suishen.app.devsecrets import resolve_kek
    from suishen.app.services.keys import default_overlaps
    from suishen.app.settings import Settings
    from suishen.app.storage.base import Event
    from suishen.app.storage.factory import open_database, open_state

    settings = Settings()
    name = args.key_set
    flag = "" if name == "codes" else f" --key-set {name}"
    url = settings.database_url.get_secret_value() if settings.database_url else ""
    if url.startswith(("postgresql://", "postgres://")):
        where = "the service's PostgreSQL database (SUISHEN_DATABASE_URL)"
    elif url:
        where = f"the service's SQLite database {url.removeprefix('sqlite:///')}"
    else:
        where = f"the service's SQLite database {settings.sqlite_path}"
    db = await open_database(settings)
    try:
        await db.migrate()  # a first `keys init` may come before the first start
    except BaseException:
        await db.close()
        raise

    def kek() -> KekSource:
        origin = KEK_ENV if settings.key_encryption_key is not None else str(
            settings.data_dir / "kek")
        return KekSource(resolve_kek(settings), origin)

    async def announce(version: int) -> None:
        if settings.redis_url is None:
            return  # the service's once-a-second poll of the store picks it up
        state = open_state(settings)
        try:
            await state.publish(Event("keys", {"name": name, "version": version}))
        except SuishenError as exc:
            print(f"{PROG}: warning: change not announced on the change feed ({exc}); "
                  "running services pick it up from their poll within a second",
                  file=sys.stderr)
        finally:
            await state.close()

    return _KeyTarget(
        store=db.keysets, name=name, where=where, kek=kek, kek_for_init=kek,
        overlap=lambda: default_overlaps(settings)[name],
        init_hint=f"suishen keys init{flag}, or start the service once",
        announce=announce, close=db.close,
        rotate_hint=f"suishen keys rotate{flag}",
    )


def _keys_command(run: Callable[[_KeyTarget, argparse.Namespace], Awaitable[int]]) -> Handler:
    """A handler running ``run`` on the key set the command line names."""

    def handler(args: argparse.Namespace) -> int:
        async def main() -> int:
            target = (
                _directory_target(args) if args.dir is not None else await _service_target(args)
            )
            try:
                return await run(target, args)
            finally:
                await target.close()

        return asyncio.run(main())

    return handler


def _add_keys_init(commands: Any) -> None:
    parser = commands.add_parser(
        "init", help="create a key set with one active key",
        description="Create a key set with one active signing key. Refuses to "
        "overwrite an existing key set.")
    _add_key_target(parser)
    _add_alg(parser, f"signature algorithm (default {DEFAULT_ALG.value}: on this "
             "project's machines P-256 signed and verified faster than Ed25519 with "
             "`cryptography`; see benchmarks/core_bench.py)")
    parser.set_defaults(handler=_keys_command(_keys_init))


async def _keys_init(target: _KeyTarget, args: argparse.Namespace) -> int:
    if await target.store.load(target.name) is not None:
        raise KeyDirectoryError(f"a {target.name} key set already exists in {target.where}; "
                                f"refusing to overwrite it (rotate with: {target.rotate_hint})")
    source = target.kek_for_init()
    if source.generated:
        _warn_development_kek(source.origin)
    keyset = KeySet.create(source.kek, now=_now(), alg=_alg(args.alg) or DEFAULT_ALG,
                           with_secrets=target.name == "codes")
    if not await target.store.save(target.name, keyset, expected_version=None):
        raise KeyDirectoryError(f"a {target.name} key set already exists in {target.where}; "
                                "refusing to overwrite it")
    await target.announce(keyset.version)
    active = keyset.active()
    print(f"created {target.name} key set in {target.where}: active key {active.kid} "
          f"({active.alg.value})")
    return EXIT_OK


def _warn_development_kek(path: str) -> None:
    bar = "!" * 78
    print(
        f"{bar}\n"
        f"{PROG}: WARNING: {KEK_ENV} is not set.\n"
        f"{PROG}: WARNING: generated a DEVELOPMENT key-encryption key in {path}.\n"
        f"{PROG}: WARNING: it sits next to the keys it protects: FOR DEVELOPMENT ONLY.\n"
        f"{PROG}: WARNING: in production set {KEK_ENV} (32 random bytes,\n"
        f"{PROG}: WARNING: base64url) from a secret store, never a file in the key directory.\n"
        f"{bar}",
        file=sys.stderr,
    )


def _add_keys_list(commands: Any) -> None:
    parser = commands.add_parser(
        "list", help="list keys: kid, algorithm, status and validity",
        description="List the keys of the set. Status is pending, active, retired, "
        "revoked, or expired (retired and past its verification window).")
    _add_key_target(parser)
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.set_defaults(handler=_keys_command(_keys_list))


async def _keys_list(target: _KeyTarget, args: argparse.Namespace) -> int:
    keyset = await target.require()
    now = _now()
    rows = [
        {
            "kid": record.kid,
            "alg": record.alg.value,
            "status": record.status_at(now),
            "created_at": rfc3339(record.created_at),
            "not_before": _opt_time(record.not_before),
            "not_after": _opt_time(record.not_after),
            "revoked_at": _opt_time(record.revoked_at),
        }
        for record in keyset.keys
    ]
    if args.json:
        _print_json({"version": keyset.version, "keys": rows})
        return EXIT_OK
    columns = ("kid", "alg", "status", "not_before", "not_after")
    table = [[c.upper() for c in columns]] + [[row[c] or "-" for c in columns] for row in rows]
    widths = [max(len(line[i]) for line in table) for i in range(len(columns))]
    for line in table:
        print("  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True))
              .rstrip())
    return EXIT_OK


def _add_keys_rotate(commands: Any) -> None:
    parser = commands.add_parser(
        "rotate", help="make a new key active; the old one keeps verifying for the overlap",
        description="Make a new key active (the oldest pending key, or a new one) and "
        "retire the current one, which keeps verifying for --overlap seconds.")
    _add_key_target(parser)
    _add_alg(parser, "algorithm of the new key (default: that of the current active key)")
    parser.add_argument(
        "--overlap", type=_non_negative_int, metavar="SECONDS",
        help=f"how long the retired key keeps verifying (default: the longest code "
        f"lifetime plus clock skew, {TTL_ENV} + {SKEW_ENV}, "
        f"{DEFAULT_CODE_TTL} + {DEFAULT_CLOCK_SKEW} = "
        f"{DEFAULT_CODE_TTL + DEFAULT_CLOCK_SKEW} s when unset; for --key-set tokens "
        f"{PARTNER_TOKEN_TTL_ENV} + {PARTNER_TOKEN_LEEWAY} s)")
    parser.set_defaults(handler=_keys_command(_keys_rotate))


async def _keys_rotate(target: _KeyTarget, args: argparse.Namespace) -> int:
    keyset = await target.require()
    source = target.kek()
    target.check_kek(keyset, source)  # never add a key sealed under another KEK
    overlap = args.overlap if args.overlap is not None else target.overlap()
    alg = _alg(args.alg)
    now = _now()
    had_active = any(record.state is KeyState.ACTIVE for record in keyset.keys)
    rotated = keyset.rotate(source.kek, now=now, overlap_seconds=overlap, alg=alg)
    if had_active:
        note = f"the previous key verifies until {rfc3339(now + overlap)}"
    else:
        note = "there was no active key to retire"
    await target.change(keyset, rotated)
    new = rotated.active()
    print(f"active key {new.kid} ({new.alg.value}); {note}")
    return EXIT_OK


def _add_keys_revoke(commands: Any) -> None:
    parser = commands.add_parser(
        "revoke", help="revoke a key: codes it signed never verify again",
        description="Revoke a key. It stays listed (so that gates learn of it) and never "
        "verifies again. Needs no key-encryption key, so that a key can be revoked in an "
        "emergency even when the KEK is not at hand.")
    parser.add_argument("kid", metavar="KID", help="the key id (hex), as `keys list` shows")
    _add_key_target(parser)
    parser.set_defaults(handler=_keys_command(_keys_revoke))


async def _keys_revoke(target: _KeyTarget, args: argparse.Namespace) -> int:
    keyset = await target.require()
    kid = args.kid.strip().lower()
    record = keyset.get(kid)
    if record.state is KeyState.REVOKED:
        print(f"key {kid} was already revoked")
        return EXIT_OK
    await target.change(keyset, keyset.revoke(kid, now=_now()))
    print(f"revoked key {kid}")
    if record.state is KeyState.ACTIVE:
        print(f"{PROG}: warning: {kid} was the active key: nothing can be signed with "
              f"this key set until `{target.rotate_hint}`", file=sys.stderr)
    return EXIT_OK


def _add_keys_jwks(commands: Any) -> None:
    parser = commands.add_parser(
        "jwks", help="print the public JWK Set (what GET /v1/keys serves)",
        description="Print the public keys as a JWK Set (RFC 7517) with kid, alg, use, "
        "status and validity; expired keys are left out.")
    _add_key_target(parser)
    parser.set_defaults(handler=_keys_command(_keys_jwks))


async def _keys_jwks(target: _KeyTarget, args: argparse.Namespace) -> int:
    _print_json((await target.require()).jwks(now=_now()))
    return EXIT_OK


# --- codes ----------------------------------------------------------------------------
def _add_codes_issue(commands: Any) -> None:
    parser = commands.add_parser(
        "issue", help="sign a personal code with the active key",
        description="Sign a personal code for the citizen with subject handle "
        "HANDLE_HEX. Text goes to stdout unless --out; an image goes to --out, or to "
        "stdout when stdout is not a terminal.")
    _add_dir(parser)
    parser.add_argument("--sub", required=True, metavar="HANDLE_HEX",
                        help=f"the citizen's subject handle: {sc1.HANDLE_BYTES} bytes as "
                        f"{2 * sc1.HANDLE_BYTES} hex characters")
    parser.add_argument("--ttl", type=int, metavar="SECONDS",
                        help=f"lifetime, {MIN_TTL}..{MAX_TTL} (default {TTL_ENV}, "
                        f"else {DEFAULT_CODE_TTL})")
    parser.add_argument("--format", choices=("text", "png", "svg"), default="text",
                        help="the code text (default) or a QR image")
    parser.add_argument("--out", metavar="FILE", help="write to FILE instead of stdout")
    parser.set_defaults(handler=_codes_issue)


def _codes_issue(args: argparse.Namespace) -> int:
    handle = _handle(args.sub)
    ttl = args.ttl if args.ttl is not None else _code_ttl()
    if not MIN_TTL <= ttl <= MAX_TTL:
        raise UsageError(f"--ttl must be between {MIN_TTL} and {MAX_TTL} seconds")
    image = args.format != "text"
    if image and args.out is None and sys.stdout.isatty():
        raise UsageError(f"refusing to write a {args.format.upper()} image to a terminal: "
                         "use --out FILE or redirect stdout")
    directory = KeyDirectory(args.dir)
    keyset = directory.require()
    source = directory.kek()
    directory.check_kek(keyset, source)
    code = keyset.issuer(source.kek).issue_personal(handle, now=_now(), ttl=ttl)
    if not image:
        if args.out is None:
            print(code.text)
        else:
            _write_file(args.out, (code.text + "\n").encode("ascii"))
        return EXIT_OK
    from suishen.codecs import qr  # Pillow and qrcode: imported only for an image

    data = qr.render_png(code.text) if args.format == "png" else qr.render_svg(code.text)
    if args.out is not None:
        _write_file(args.out, data)
    else:
        sys.stdout.flush()
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
    return EXIT_OK


def _add_codes_verify(commands: Any) -> None:
    parser = commands.add_parser(
        "verify", help="verify a code offline against a JWK Set; prints the decision",
        description="Verify CODE with the public keys of a JWK Set, as a gate does "
        "offline, and print the decision as JSON. Exit 0 when valid, 1 when not, 2 on a "
        "usage error (unknown scene, unreadable JWK Set, bad --at). Single use is not "
        "remembered between invocations.")
    parser.add_argument("code", metavar="CODE", help="the code text (SC1:...), or - for stdin")
    parser.add_argument("--jwks", required=True, metavar="FILE",
                        help="JWK Set file (suishen keys jwks, GET /v1/keys)")
    parser.add_argument("--scene", default=DEFAULT_SCENE,
                        help=f"checkpoint scene (default {DEFAULT_SCENE}: re-scannable, no "
                        "direction); " + ", ".join(SCENES))
    parser.add_argument("--at", metavar="RFC3339",
                        help="judge as at this time, e.g. 2026-11-22T14:00:00Z (default: now)")
    parser.add_argument("--direction", choices=("in", "out"),
                        help="entry or exit, for transit scenes")
    parser.set_defaults(handler=_codes_verify)


def _codes_verify(args: argparse.Namespace) -> int:
    from suishen.sdk import Verifier
    from suishen.verifiers.policy import scene

    try:
        scene(args.scene)
    except UnknownScene as exc:
        raise UsageError(str(exc)) from None
    at = _now()
    if args.at is not None:
        try:
            at = parse_rfc3339(args.at)
        except ValueError as exc:
            raise UsageError(f"--at {args.at!r}: {exc}") from None
    try:
        with open(args.jwks, encoding="utf-8") as handle:
            jwks = json.load(handle)
        verifier = Verifier.from_jwks(jwks, skew=_clock_skew())
    except OSError as exc:
        raise UsageError(f"cannot read the JWK Set: {_os_error(exc)}") from None
    except (ValueError, SuishenError) as exc:
        raise UsageError(f"{args.jwks} is not a usable JWK Set: {exc}") from None
    decision = verifier.verify(_code_arg(args.code), scene=args.scene, now=at,
                               direction=args.direction)
    out: dict[str, Any] = {"valid": decision.valid, "reason": decision.reason.value}
    if decision.kid is not None:
        out["kid"] = decision.kid
    if decision.kind is not None:
        out["kind"] = decision.kind
    if decision.expires_at is not None:
        out["expires_at"] = rfc3339(decision.expires_at)
    out["scene"] = args.scene
    out["verified_at"] = rfc3339(at)
    _print_json(out)
    return EXIT_OK if decision.valid else EXIT_FAILURE


def _add_codes_inspect(commands: Any) -> None:
    parser = commands.add_parser(
        "inspect", help="decode a code WITHOUT verifying it",
        description="Print the protected header and the claims of CODE as JSON without "
        "verifying anything (bytes as hex, times also as RFC 3339). With --dir, also the "
        "citizen's subject handle behind the blinded sub (needs the key-encryption key).")
    parser.add_argument("code", metavar="CODE", help="the code text (SC1:...), or - for stdin")
    _add_dir(parser, required=False)
    parser.set_defaults(handler=_codes_inspect)


def _codes_inspect(args: argparse.Namespace) -> int:
    try:
        envelope = sc1.parse(_code_arg(args.code))
        claims = cbor.loads(envelope.message.payload)
    except SuishenError as exc:
        raise CodecError(f"not a well-formed SC1 code: {exc}") from None
    if not isinstance(claims, dict):
        raise CodecError("not a well-formed SC1 code: the claims are not a map")
    try:
        alg_name: str | None = Alg.from_cose(envelope.alg).value
    except UnsupportedAlgorithm:
        alg_name = None
    out: dict[str, Any] = {
        "verified": False,
        "header": {"alg": alg_name, "alg_cose": envelope.alg, "kid": envelope.kid.hex()},
        "claims": _claims_json(claims),
    }
    if args.dir is not None:
        out["subject_handle"] = _subject_handle(KeyDirectory(args.dir), envelope, claims)
    _print_json(out)
    return EXIT_OK


def _claims_json(claims: dict[Any, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for label, value in claims.items():
        name = _CLAIM_NAMES.get(label, str(label))
        out[name] = _jsonable(value)
        if label in _TIME_CLAIMS and type(value) is int and 0 <= value <= 0xFFFFFFFF:
            out[f"{name}_rfc3339"] = rfc3339(value)
        if label == sc1.CLAIM_KIND and type(value) is int:
            # A kind this version does not know: the number says all there is to say.
            with contextlib.suppress(ValueError):
                out["kind_name"] = sc1.Kind(value).label
    return out


def _jsonable(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, list):
        return [_jsonable(item) for item in value]
    if isinstance(value, dict):
        return {str(key): _jsonable(item) for key, item in value.items()}
    if isinstance(value, cbor.Tag):
        return {"tag": value.number, "value": _jsonable(value.value)}
    return value


def _subject_handle(directory: KeyDirectory, envelope: sc1.Envelope,
                    claims: dict[Any, Any]) -> str | None:
    keyset = directory.require()
    source = directory.kek()
    directory.check_kek(keyset, source)
    key = keyset.keyring(source.kek).get(envelope.kid)
    if key is None:
        raise KeyDirectoryError(f"no key with kid {envelope.kid.hex()} in {directory.path}")
    sub, iat, cti = (claims.get(label) for label in
                     (sc1.CLAIM_SUB, sc1.CLAIM_IAT, sc1.CLAIM_CTI))
    if not (isinstance(sub, bytes) and len(sub) == sc1.HANDLE_BYTES
            and type(iat) is int and 0 <= iat <= 0xFFFFFFFF and isinstance(cti, bytes)):
        raise CodecError("the claims carry no blinded sub, iat and cti to unblind")
    if key.blinding is None:  # a revoked key's secrets stay sealed
        print(f"{PROG}: warning: key {envelope.kid.hex()} is {key.state.value}: its "
              "blinding secret is not unsealed; subject_handle is null", file=sys.stderr)
        return None
    return unblind(sub, key.blinding, iat=iat, cti=cti).hex()


# --- helpers --------------------------------------------------------------------------
def _now() -> int:
    return int(time.time())


def _alg(value: str | None) -> Alg | None:
    return None if value is None else Alg.parse(value)


def _opt_time(value: int | None) -> str | None:
    return None if value is None else rfc3339(value)


def _non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError("must not be negative")
    return value


def _env_int(name: str, default: int, low: int, high: int) -> int:
    text = os.environ.get(name, "").strip()
    if not text:
        return default
    try:
        value = int(text)
    except ValueError:
        raise UsageError(f"{name} must be an integer, got {text!r}") from None
    if not low <= value <= high:
        raise UsageError(f"{name} must be between {low} and {high}, got {value}")
    return value


def _code_ttl() -> int:
    return _env_int(TTL_ENV, DEFAULT_CODE_TTL, MIN_TTL, MAX_TTL)


def _clock_skew() -> int:
    return _env_int(SKEW_ENV, DEFAULT_CLOCK_SKEW, 0, MAX_CLOCK_SKEW)


def _handle(text: str) -> bytes:
    want = 2 * sc1.HANDLE_BYTES
    cleaned = text.strip()
    if len(cleaned) != want:
        raise UsageError(f"--sub must be {want} hex characters ({sc1.HANDLE_BYTES} bytes), "
                         f"got {len(cleaned)}")
    try:
        return bytes.fromhex(cleaned)
    except ValueError:
        raise UsageError(f"--sub is not hexadecimal: {text!r}") from None


def _code_arg(text: str) -> str:
    return sys.stdin.readline().strip() if text == "-" else text.strip()


def _write_file(path: str, data: bytes) -> None:
    # Written whole to a temporary file beside the target, then moved into place, so that
    # a scanner watching FILE never reads half an image.
    directory = os.path.dirname(os.path.abspath(path))
    tmp = os.path.join(directory, f".{os.path.basename(path)}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as handle:
            handle.write(data)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _print_json(value: Any) -> None:
    print(json.dumps(value, indent=2, ensure_ascii=False))


def _fail(message: str, status: int) -> int:
    line = " ".join(message.split())  # one line, whatever the exception carried
    print(f"{PROG}: error: {line}", file=sys.stderr)
    return status


def _os_error(exc: OSError) -> str:
    if exc.strerror and exc.filename is not None:
        return f"{exc.filename}: {exc.strerror}"
    return exc.strerror or str(exc)


def _silence_stdout() -> None:
    # Python flushes stdout again at exit; point it at /dev/null so that flush cannot
    # raise a second BrokenPipeError.
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass


if __name__ == "__main__":
    sys.exit(main())
