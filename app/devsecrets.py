"""Development-posture secrets: the key-encryption key and the admin token, generated
once into ``SUISHEN_DATA_DIR`` (files with mode 0600) when the settings give none;
production refuses to start without them."""

from __future__ import annotations

import os
import secrets
import sys
from pathlib import Path

from suishen.app.settings import Settings
from suishen.errors import ConfigError
from suishen.keys.kek import KeyEncryptionKey


def _dev_secret_file(path: Path, make: str) -> tuple[str, bool]:
    """Read a development secret from ``path``, creating it (0600) if missing."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    try:
        return path.read_text("utf-8").strip(), False
    except FileNotFoundError:
        pass
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(make + "\n")
    return make, True


def resolve_kek(settings: Settings) -> KeyEncryptionKey:
    """The KEK from settings; in development, generated once into the data directory."""
    if settings.key_encryption_key is not None:
        return KeyEncryptionKey.from_text(settings.key_encryption_key.get_secret_value())
    if settings.production:
        raise ConfigError("SUISHEN_KEY_ENCRYPTION_KEY is required in production")
    text, created = _dev_secret_file(
        settings.data_dir / "kek", KeyEncryptionKey.generate_text()
    )
    if created:
        print(
            f"suishen: WARNING development key-encryption key generated in "
            f"{settings.data_dir / 'kek'}; set SUISHEN_KEY_ENCRYPTION_KEY in production",
            file=sys.stderr,
        )
    return KeyEncryptionKey.from_text(text)


def resolve_admin_token(settings: Settings) -> str:
    """The operators' token; in development generated once and printed once."""
    if settings.admin_token is not None:
        return settings.admin_token.get_secret_value()
    if settings.production:
        raise ConfigError("SUISHEN_ADMIN_TOKEN is required in production")
    path = settings.data_dir / "admin-token"
    token, created = _dev_secret_file(path, secrets.token_urlsafe(32))
    if created:
        # Printed once, on the console of the developer who started the service; the
        # log stream never carries it.
        print(f"suishen: development admin token (saved in {path}): {token}", file=sys.stderr)
    return token
