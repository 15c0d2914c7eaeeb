"""The one rule for text that reaches storage, a page or a token: *printable text*, and
the subject identifier built on it. The regular expressions here are both what the
service enforces (:func:`is_valid_subject`, the pydantic and path
parameter patterns in :mod:`suishen.app.schemas` and the routes) and what the OpenAPI
document publishes, so a client, a fuzzer and the service agree on every input.

Printable means: no control characters (C0, DEL, C1), no format characters (bidi
overrides and isolates, zero-width characters, the BOM, soft hyphen, ...), no separator
other than the ASCII space (no NBSP, no line or paragraph separator), no surrogates, no
private-use characters of the Basic Multilingual Plane and no noncharacters. That is
Python's ``str.isprintable`` for assigned characters, except that the supplementary
private-use planes (15 and 16) are allowed, as are unassigned code points: they carry no
control meaning, and excluding 130,000 code points makes every schema-driven generator
(hypothesis, schemathesis) crawl. A subject identifier is 1 to :data:`MAX_SUBJECT_CHARS`
printable characters without surrounding spaces (``" alice"`` must not be a different
citizen from ``"alice"``).
"""

from __future__ import annotations

import re
from typing import Final

MAX_SUBJECT_CHARS: Final = 255

# Code points that are not printable (inclusive ranges). Format characters (Cf) as of
# Unicode 15.1; the separators Zs (but U+0020), Zl and Zp; surrogates; private use;
# noncharacters.
_EXCLUDED: Final = (
    (0x00, 0x1F), (0x7F, 0x9F),  # controls
    (0xA0, 0xA0), (0xAD, 0xAD),
    (0x600, 0x605), (0x61C, 0x61C), (0x6DD, 0x6DD), (0x70F, 0x70F), (0x890, 0x891),
    (0x8E2, 0x8E2), (0x1680, 0x1680), (0x180E, 0x180E),
    (0x2000, 0x200F), (0x2028, 0x202F), (0x205F, 0x2064), (0x2066, 0x206F),
    (0x3000, 0x3000), (0xE000, 0xF8FF), (0xFDD0, 0xFDEF),
    (0xFEFF, 0xFEFF), (0xFFF9, 0xFFFB), (0xFFFE, 0xFFFF),
    (0x110BD, 0x110BD), (0x110CD, 0x110CD), (0x13430, 0x1343F), (0x1BCA0, 0x1BCA3),
    (0x1D173, 0x1D17A), (0xE0001, 0xE0001), (0xE0020, 0xE007F),
    # the last two code points of every supplementary plane are noncharacters
    *((plane + 0xFFFE, plane + 0xFFFF) for plane in range(0x10000, 0x110000, 0x10000)),
)


def _printable_class(*, space: bool) -> str:
    """A negated character class of the excluded code points, as literal characters (so
    that Python's ``re``, pydantic-core's Rust engine and JSON Schema readers agree)."""
    excluded = sorted(_EXCLUDED if space else (*_EXCLUDED, (0x20, 0x20)))

    def char(cp: int) -> str:
        c = chr(cp)
        return "\\" + c if c in "\\]^-[" else c

    return "[^" + "".join(char(a) if a == b else f"{char(a)}-{char(b)}"
                          for a, b in excluded) + "]"


_TEXT_CHAR: Final = _printable_class(space=True)
_VISIBLE_CHAR: Final = _printable_class(space=False)

PRINTABLE_PATTERN: Final = f"^{_TEXT_CHAR}*$"
"""Printable text, empty allowed (bound the length separately)."""

SUBJECT_PATTERN: Final = f"^{_VISIBLE_CHAR}(?:{_TEXT_CHAR}*{_VISIBLE_CHAR})?$"
"""A subject identifier's characters: printable, no leading or trailing space."""

# Surrogates (U+D800..U+DFFF) are left out of the published patterns: no UTF-8 text can
# hold them, so pydantic-core (Rust strings) refuses them before any pattern, generators
# never make them, and an OpenAPI document holding one could not even be encoded. Python
# strings can (``json.loads('"\\ud800"')``): the check here refuses them explicitly.
_SURROGATE: Final = re.compile("[\ud800-\udfff]")
_SUBJECT: Final = re.compile(SUBJECT_PATTERN)


def is_valid_subject(sub: object) -> bool:
    """True for a subject identifier: a printable string of 1..:data:`MAX_SUBJECT_CHARS`
    characters without surrounding spaces."""
    return (isinstance(sub, str) and 0 < len(sub) <= MAX_SUBJECT_CHARS
            and _SUBJECT.fullmatch(sub) is not None and _SURROGATE.search(sub) is None)
