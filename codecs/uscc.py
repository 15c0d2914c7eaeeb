"""The unified social credit code (统一社会信用代码) of enterprises, GB 32100-2015.

Eighteen characters from the 31-character set ``0-9 A-H J-N P-R T U W-Y`` (no I, O, Z, S
or V)::

    position  1     registration authority (登记管理部门代码)
              2     organisation type (机构类别代码)
              3-8   administrative division (登记管理机关行政区划码), six digits
              9-17  subject identifier (主体标识码, the organisation code of GB 11714)
              18    check character

Check character (GB 32100-2015 §5): with ``C_i`` the value of the character at position
``i`` (its index in the character set) and weights ``W_i = 3^(i-1) mod 31``,
``C_18 = 31 - (sum(C_i * W_i, i = 1..17) mod 31)``, and 31 is written as ``0``.

Only the structure and the check character are validated here; whether an enterprise
with that code exists is the registry's business. (Real registries hold a few codes,
issued before the standard settled, whose check character does not verify; an operator
registering one gets a clear 422 and the code is not stored.)
"""

from __future__ import annotations

from suishen.errors import CodecError

CHARSET = "0123456789ABCDEFGHJKLMNPQRTUWXY"
WEIGHTS = tuple(pow(3, i, 31) for i in range(17))
_VALUE = {c: i for i, c in enumerate(CHARSET)}
LENGTH = 18


class InvalidUSCC(CodecError):
    """Not a well-formed unified social credit code."""


def check_character(first17: str) -> str:
    """The check character for the first 17 characters."""
    if len(first17) != LENGTH - 1 or any(c not in _VALUE for c in first17):
        raise InvalidUSCC("the first 17 characters must come from the USCC character set")
    total = sum(_VALUE[c] * w for c, w in zip(first17, WEIGHTS, strict=True))
    return CHARSET[(31 - total % 31) % 31]


def validate(code: object) -> str:
    """``code`` if it is a valid USCC, else :class:`InvalidUSCC` saying why."""
    if not isinstance(code, str):
        raise InvalidUSCC("a unified social credit code is text")
    if len(code) != LENGTH:
        raise InvalidUSCC(f"a unified social credit code has {LENGTH} characters")
    bad = sorted({c for c in code[:17] if c not in _VALUE})
    if bad:
        raise InvalidUSCC(f"characters outside the USCC set (no I, O, Z, S, V, no lower case): "
                          f"{''.join(bad)[:8]!r}")
    if not code[2:8].isdigit():
        raise InvalidUSCC("positions 3-8 (the administrative division) are digits")
    expected = check_character(code[:17])
    if code[17] != expected:
        raise InvalidUSCC("the check character (position 18) does not match")
    return code
