"""A key set kept in a directory: the ``suishen keys`` / ``suishen codes`` commands' store.

Layout of ``DIR``::

    DIR/                    mode 0700 when created here
    DIR/keyset.json         the ``codes`` key set: KeySet.to_dict() as JSON, mode 0600;
                            private keys and secrets only sealed with the KEK
    DIR/keyset-tokens.json  the ``tokens`` key set (partner access tokens), if any
    DIR/kek                 development only: the KEK as base64url, mode 0600

The KEK comes from ``SUISHEN_KEY_ENCRYPTION_KEY`` (32 bytes of base64url, padding
optional). When that variable is unset, ``suishen keys init`` generates a KEK into
``DIR/kek`` and every later command reads it from there. A KEK stored beside the sealed
keys protects nothing against someone who can read the directory, which is why that is
for development only and announced loudly (:attr:`KekSource.generated`).

:attr:`KeyDirectory.keysets` implements :class:`suishen.keys.keyset.KeySetStore`, the
same compare-and-swap interface as the service's SQLite and PostgreSQL stores. Writes
are atomic: the set is written to a temporary file in ``DIR``, flushed to disk and moved
over its file with ``os.replace``, so a reader sees the old set or the new one, never a
torn file. A compare-and-swap holds an exclusive ``flock`` on ``DIR`` itself (no lock
file) from reading the stored version to the rename, so two writers -- two operators,
or a CLI and a script -- cannot both win.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import re
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from suishen.errors import InvalidKeyEncryptionKey, KeyManagementError, WrongKeyEncryptionKey
from suishen.keys.kek import KeyEncryptionKey
from suishen.keys.keyset import KeySet

if TYPE_CHECKING:
    from suishen.keys.keyset import KeySetStore

KEK_ENV = "SUISHEN_KEY_ENCRYPTION_KEY"
KEYSET_FILE = "keyset.json"
KEK_FILE = "kek"
CODES = "codes"
_NAME = re.compile(r"[a-z][a-z0-9]{0,31}")
_DIR_MODE = 0o700
_FILE_MODE = 0o600


class KeyDirectoryError(KeyManagementError):
    """The key directory is missing, damaged, or would be overwritten."""


@dataclass(frozen=True, slots=True)
class KekSource:
    """A key-encryption key and where it came from (never shows the key)."""

    kek: KeyEncryptionKey
    origin: str  # "SUISHEN_KEY_ENCRYPTION_KEY" or the path of DIR/kek
    generated: bool = False  # True when `keys init` has just written a development KEK


class KeyDirectory:
    """The key set in ``path`` (see the module docstring for the layout)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"KeyDirectory({str(self.path)!r})"

    @property
    def keyset_path(self) -> Path:
        """``DIR/keyset.json``."""
        return self.path / KEYSET_FILE

    @property
    def kek_path(self) -> Path:
        """``DIR/kek`` (development KEK)."""
        return self.path / KEK_FILE

    def file_of(self, name: str) -> Path:
        """The file of key set ``name``: ``keyset.json`` for ``codes`` (the layout before
        named sets), ``keyset-NAME.json`` otherwise."""
        if not isinstance(name, str) or not _NAME.fullmatch(name):
            raise KeyDirectoryError(f"bad key set name {name!r}")
        return self.keyset_path if name == CODES else self.path / f"keyset-{name}.json"

    @property
    def keysets(self) -> DirectoryKeySets:
        """This directory as a :class:`~suishen.keys.keyset.KeySetStore`."""
        return DirectoryKeySets(self)

    # --- the codes key set, synchronously (codes issue / inspect) ------------------
    def load(self, name: str = CODES) -> KeySet | None:
        """The stored key set, or None when its file does not exist."""
        path = self.file_of(name)
        try:
            text = path.read_text("utf-8")
        except FileNotFoundError:
            return None
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise KeyDirectoryError(f"{path} is not valid JSON: {exc}") from None
        if not isinstance(data, dict):
            raise KeyDirectoryError(f"{path} does not hold a key set")
        return KeySet.from_dict(data)

    def save(self, keyset: KeySet, name: str = CODES) -> None:
        """Replace the stored key set atomically, unconditionally (creating ``DIR`` 0700
        if needed). Concurrent writers use :meth:`compare_and_swap` instead."""
        self._write(keyset, self.file_of(name), replace=True)

    def compare_and_swap(self, name: str, keyset: KeySet, expected_version: int | None) -> bool:
        """Store ``keyset`` as ``name`` only if the stored version is ``expected_version``
        (None: only if there is none). Under an exclusive lock on ``DIR``."""
        path = self.file_of(name)
        self._ensure_dir()
        with self._locked():
            current = self.load(name)
            if expected_version is None:
                if current is not None:
                    return False
            elif current is None or current.version != expected_version:
                return False
            self._write(keyset, path, replace=True)
            return True

    def versions(self) -> dict[str, int]:
        """name -> version of every key set in the directory."""
        out: dict[str, int] = {}
        if not self.path.is_dir():
            return out
        for path in self.path.glob("keyset*.json"):
            name = CODES if path.name == KEYSET_FILE else path.name[len("keyset-"):-5]
            if not _NAME.fullmatch(name):
                continue
            keyset = self.load(name)
            if keyset is not None:
                out[name] = keyset.version
        return out

    # --- directory helpers -------------------------------------------------------
    def require(self) -> KeySet:
        """The stored key set; :class:`KeyDirectoryError` naming what to do when absent."""
        keyset = self.load()
        if keyset is None:
            where = "does not exist" if not self.path.exists() else f"has no {KEYSET_FILE}"
            raise KeyDirectoryError(
                f"key directory {self.path} {where} "
                f"(create a key set with: suishen keys init --dir {self.path})"
            )
        return keyset

    def create(self, keyset: KeySet) -> None:
        """Store a first key set; :class:`KeyDirectoryError` if one exists already (the
        check and the write are one atomic step: concurrent creators cannot both win)."""
        self._write(keyset, self.keyset_path, replace=False)

    def kek(self, environ: Mapping[str, str] | None = None) -> KekSource:
        """The KEK: ``SUISHEN_KEY_ENCRYPTION_KEY`` if set, otherwise ``DIR/kek``."""
        env = os.environ if environ is None else environ
        text = env.get(KEK_ENV, "")
        if text.strip():
            return KekSource(_parse_kek(text, KEK_ENV), KEK_ENV)
        try:
            stored = self.kek_path.read_text("utf-8")
        except FileNotFoundError:
            raise KeyDirectoryError(
                f"no key-encryption key: set {KEK_ENV} (or keep the development key in "
                f"{self.kek_path})"
            ) from None
        return KekSource(_parse_kek(stored, str(self.kek_path)), str(self.kek_path))

    def kek_for_init(self, environ: Mapping[str, str] | None = None) -> KekSource:
        """Like :meth:`kek`, but when neither the variable nor ``DIR/kek`` exists, generate
        a development KEK into ``DIR/kek`` (mode 0600) and say so (``generated``)."""
        try:
            return self.kek(environ)
        except KeyDirectoryError:
            if self.kek_path.exists():
                raise
        self._ensure_dir()
        text = KeyEncryptionKey.generate_text()
        try:
            fd = os.open(self.kek_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, _FILE_MODE)
        except FileExistsError:  # another `keys init` got there first: use its key
            return self.kek(environ)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            os.fchmod(handle.fileno(), _FILE_MODE)
            handle.write(text + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        return KekSource(KeyEncryptionKey.from_text(text), str(self.kek_path), generated=True)

    def check_kek(self, keyset: KeySet, source: KekSource) -> None:
        """:class:`WrongKeyEncryptionKey` (one clear sentence) unless the KEK opens every
        secret of ``keyset``."""
        try:
            keyset.check_kek(source.kek)
        except WrongKeyEncryptionKey:
            raise WrongKeyEncryptionKey(
                f"wrong key-encryption key: the key from {source.origin} does not open "
                f"the key set in {self.path}"
            ) from None

    # --- internals ----------------------------------------------------------------
    def _ensure_dir(self) -> None:
        if not self.path.is_dir():
            self.path.mkdir(mode=_DIR_MODE, parents=True, exist_ok=True)
            os.chmod(self.path, _DIR_MODE)  # mkdir's mode is filtered by the umask

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        # flock on the directory itself: the files are replaced by rename, so a lock on
        # one of them would lock a file that is about to be unlinked.
        fd = os.open(self.path, os.O_RDONLY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # releases the lock

    def _write(self, keyset: KeySet, target: Path, *, replace: bool) -> None:
        self._ensure_dir()
        payload = json.dumps(keyset.to_dict(), indent=2, sort_keys=True) + "\n"
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=self.path)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                os.fchmod(handle.fileno(), _FILE_MODE)  # mkstemp's 0600, made explicit
                handle.write(payload)
                handle.flush()
                os.fsync(handle.fileno())
            if replace:
                os.replace(tmp, target)
            else:
                self._link_new(tmp)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
        self._sync_dir()

    def _link_new(self, tmp: str) -> None:
        # link() fails when the target exists: create-if-absent in one atomic step.
        try:
            os.link(tmp, self.keyset_path)
        except FileExistsError:
            raise KeyDirectoryError(
                f"a key set already exists in {self.path}; refusing to overwrite it"
            ) from None
        except OSError as exc:
            if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV):
                raise
            # A filesystem without hard links: check, then replace (not atomic, but
            # two operators initialising one directory at the same instant is remote).
            if self.keyset_path.exists():
                raise KeyDirectoryError(
                    f"a key set already exists in {self.path}; refusing to overwrite it"
                ) from None
            os.replace(tmp, self.keyset_path)

    def _sync_dir(self) -> None:
        # Make the rename durable; not every platform can open a directory.
        try:
            fd = os.open(self.path, os.O_RDONLY)
        except OSError:
            return
        try:
            os.fsync(fd)
        except OSError:
            pass
        finally:
            os.close(fd)


class DirectoryKeySets:
    """A :class:`KeyDirectory` as a :class:`~suishen.keys.keyset.KeySetStore` (the file
    operations are quick and local, so they run inline)."""

    def __init__(self, directory: KeyDirectory) -> None:
        self.directory = directory

    def __repr__(self) -> str:
        return f"DirectoryKeySets({str(self.directory.path)!r})"

    async def load(self, name: str) -> KeySet | None:
        """The stored key set ``name``, or None."""
        return self.directory.load(name)

    async def save(self, name: str, keyset: KeySet, *, expected_version: int | None) -> bool:
        """Compare-and-swap under the directory lock."""
        return self.directory.compare_and_swap(name, keyset, expected_version)

    async def versions(self) -> dict[str, int]:
        """name -> version of every key set in the directory."""
        return self.directory.versions()


if TYPE_CHECKING:  # mypy checks that the directory is a KeySetStore
    _store: KeySetStore = DirectoryKeySets(KeyDirectory("."))


def _parse_kek(text: str, origin: str) -> KeyEncryptionKey:
    try:
        return KeyEncryptionKey.from_text(text)
    except InvalidKeyEncryptionKey as exc:
        raise InvalidKeyEncryptionKey(f"{origin}: {exc}") from None
