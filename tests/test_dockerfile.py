"""The image build, read statically (docker cannot run on the development machines):
the Dockerfile copies only what ``.dockerignore`` lets into the build context, installs
only the hashed runtime (and build) locks, and installs the package non-editable."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = (ROOT / "Dockerfile").read_text()
# RUN/COPY instructions with their continuation lines joined.
INSTRUCTIONS = [
    line.strip()
    for line in re.sub(r"\\\n", " ", DOCKERFILE).splitlines()
    if line.strip() and not line.lstrip().startswith("#")
]


def _ignore_patterns() -> list[str]:
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def _context_includes(path: str) -> bool:
    """Allow-list semantics of our .dockerignore: ``*`` first, then ``!path`` lines."""
    included = False
    for pattern in _ignore_patterns():
        negated = pattern.startswith("!")
        target = pattern.removeprefix("!").strip("/")
        if target == "*" or path == target or path.startswith(target + "/"):
            included = negated
    return included


def _copies() -> list[str]:
    sources = []
    for line in INSTRUCTIONS:
        words = shlex.split(line)
        if words[0] == "COPY" and not any(w.startswith("--from") for w in words):
            sources += [w for w in words[1:-1] if not w.startswith("--")]
    return sources


def test_dockerignore_is_an_allow_list_without_local_state() -> None:
    patterns = _ignore_patterns()
    assert patterns[0] == "*"
    for path in (".venv", ".git", "tests", "benchmarks", "var", "loadtests",
                 "requirements/dev.txt", ".mypy_cache", ".pytest_cache"):
        assert not _context_includes(path), path


def test_everything_the_dockerfile_copies_is_in_the_context_and_exists() -> None:
    sources = _copies()
    assert "requirements/runtime.txt" in sources
    for source in sources:
        assert (ROOT / source).exists(), source
        assert _context_includes(source.strip("/")), f"{source} is excluded by .dockerignore"


def test_the_image_installs_hashed_runtime_locks_and_a_wheel() -> None:
    installs = [line for line in INSTRUCTIONS if "pip install" in line]
    locks = set()
    for line in installs:
        for command in line.split("&&"):
            if "pip install" not in command:
                continue
            words = shlex.split(command)
            assert "-e" not in words and "--editable" not in words
            if "-r" in words:
                assert "--require-hashes" in words, command
                locks.add(words[words.index("-r") + 1])
    assert locks == {"requirements/runtime.txt", "requirements/build.txt"}
    assert re.search(r"pip install --no-deps /tmp/dist/suishen-\*\.whl", DOCKERFILE)


def test_the_runtime_image_has_a_cjk_font_for_posters() -> None:
    """Venue posters draw the venue's (often Chinese) name with the first font of
    app/poster.py's list that exists; the runtime stage installs that package."""
    from suishen.app import poster

    runtime = DOCKERFILE.split("AS runtime", 1)[1]
    assert "fonts-wqy-microhei" in runtime
    assert "/usr/share/fonts/truetype/wqy/wqy-microhei.ttc" in poster.FONT_CANDIDATES
