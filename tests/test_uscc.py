"""Unified social credit codes (codecs/uscc.py) against GB 32100-2015's own worked
example and published codes (issue 11 item 1)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from suishen.codecs.uscc import CHARSET, WEIGHTS, InvalidUSCC, check_character, validate

# GB 32100-2015's worked example of the check-character computation takes the code
# 91350100M000100Y4Z, computes the sum 1640, 1640 mod 31 = 28, check 31 - 28 = 3, and
# concludes that "…Y4Z" is not valid: the valid form is 91350100M000100Y43. The second
# valid code is the one worked through step by step in widely circulated explanations
# of the rule (sum 1495, remainder 17, check 14 = E).
VALID = ["91350100M000100Y43", "91512081MA62K0260E"]
INVALID = {
    "91350100M000100Y4Z": "check character",  # the standard's own invalid example
    "91512081MA62K0260F": "check character",
    "91350100M000100Y4": "18 characters",
    "91350100M000100Y433": "18 characters",
    "91350100I000100Y43": "outside",  # I is not in the set
    "91350100m000100Y43": "outside",  # lower case
    "913501O0M000100Y43": "outside",  # O
    "91A50100M000100Y43": "digits",  # division code must be digits
    "": "18 characters",
}


def test_weights_are_the_standards() -> None:
    assert WEIGHTS == (1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28)
    assert len(CHARSET) == 31 and not set("IOZSV") & set(CHARSET)


@pytest.mark.parametrize("code", VALID)
def test_published_valid_codes(code: str) -> None:
    assert validate(code) == code


def test_the_standards_worked_example_step_by_step() -> None:
    first17 = "91350100M000100Y4"
    total = sum(CHARSET.index(c) * w for c, w in zip(first17, WEIGHTS, strict=True))
    assert (total, total % 31) == (1640, 28)
    assert check_character(first17) == "3"


@pytest.mark.parametrize(("code", "why"), INVALID.items())
def test_invalid_codes_say_why(code: str, why: str) -> None:
    with pytest.raises(InvalidUSCC) as info:
        validate(code)
    assert why in str(info.value)


def test_non_text_is_refused() -> None:
    for value in (None, 913501, b"91350100M000100Y43", ["9"]):
        with pytest.raises(InvalidUSCC):
            validate(value)


FIRST17 = st.builds(
    lambda a, d, b: a + d + b,
    st.text(alphabet=CHARSET, min_size=2, max_size=2),
    st.text(alphabet="0123456789", min_size=6, max_size=6),
    st.text(alphabet=CHARSET, min_size=9, max_size=9),
)


@given(FIRST17)
def test_every_single_character_error_in_the_check_position_is_caught(first17: str) -> None:
    good = first17 + check_character(first17)
    assert validate(good) == good
    for c in CHARSET:
        if c != good[17]:
            with pytest.raises(InvalidUSCC):
                validate(first17 + c)


@given(FIRST17, st.integers(0, 16), st.sampled_from(CHARSET))
def test_any_single_substitution_is_caught(first17: str, pos: int, c: str) -> None:
    """31 is prime and every weight is non-zero mod 31: changing one character always
    changes the sum mod 31, so every single substitution is detected."""
    good = first17 + check_character(first17)
    bad = good[:pos] + c + good[pos + 1 :]
    if bad != good and bad[2:8].isdigit():
        with pytest.raises(InvalidUSCC):
            validate(bad)
