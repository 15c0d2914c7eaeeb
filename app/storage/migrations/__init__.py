"""Versioned SQL migrations, one folder per backend; files apply in name order."""

from __future__ import annotations

from importlib import resources


def load(backend: str) -> list[tuple[str, str]]:
    """``(name, sql)`` of every migration of ``backend`` (``sqlite`` or ``postgres``)."""
    folder = resources.files(__package__).joinpath(backend)
    return sorted(
        (entry.name.removesuffix(".sql"), entry.read_text("utf-8"))
        for entry in folder.iterdir()
        if entry.name.endswith(".sql")
    )
