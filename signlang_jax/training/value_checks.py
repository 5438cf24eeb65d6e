"""Rules for one config value: each check takes a value and returns the broken rule or None.

The vocabulary `signlang_jax.training.config_check` builds its table of every field from:
integers and numbers in a range (finite, never a bool), one of a set, strings, booleans,
schedule boundaries, HOST:PORT. A broken rule reads "must be ...", with the wrong type or a
non-finite value named, e.g. "must be a positive integer (got float)".
"""

from __future__ import annotations

import math
import numbers
import re
from collections.abc import Callable, Sequence

# A check takes a field's value and returns the broken rule ("must be ...") or None.
Check = Callable[[object], str | None]


def is_int(value: object) -> bool:
    """An integer, and not a bool (True would pass for 1)."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _got(value: object) -> str:
    """Suffix naming a wrong type or a non-finite number, '' for a finite number."""
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        return "" if math.isfinite(value) else " (not inf or nan)"
    return _type(value)


def _type(value: object) -> str:
    return f" (got {type(value).__name__})"


def integer(minimum: int | None = None, maximum: int | None = None) -> Check:
    """Check: an int (not a bool) in [minimum, maximum] (either bound optional)."""
    if minimum is not None and maximum is not None:
        rule = f"must be an integer in {minimum}..{maximum}"
    else:
        rule = {None: "must be an integer", 0: "must be an integer >= 0",
                1: "must be a positive integer"}[minimum]

    def check(value: object) -> str | None:
        if not is_int(value):
            return rule + _got(value)
        too_small = minimum is not None and value < minimum
        too_large = maximum is not None and value > maximum
        return rule if too_small or too_large else None

    return check


def number(rule: str, accept: Callable[[float], bool]) -> Check:
    """Check: a finite int or float (not a bool) for which `accept` holds; `rule` says which."""

    def check(value: object) -> str | None:
        is_number = isinstance(value, numbers.Real) and not isinstance(value, bool)
        if not is_number or not math.isfinite(value):
            return "must be a number" + rule + _got(value)
        return None if accept(value) else "must be a number" + rule

    return check


POSITIVE = number(" > 0", lambda v: v > 0)
NON_NEGATIVE = number(" >= 0", lambda v: v >= 0)
FRACTION = number(" in [0, 1]", lambda v: 0 <= v <= 1)
FRACTION_BELOW_1 = number(" in [0, 1)", lambda v: 0 <= v < 1)


def one_of(choices: Sequence[object]) -> Check:
    """Check: one of `choices` (same type too: True is not the kernel size 1)."""
    rule = "must be one of " + ", ".join(repr(c) for c in choices)

    def check(value: object) -> str | None:
        ok = any(type(value) is type(c) and value == c for c in choices)
        return None if ok else rule

    return check


def string(value: object) -> str | None:
    """Check: a str."""
    return None if isinstance(value, str) else "must be a string" + _type(value)


def boolean(value: object) -> str | None:
    """Check: True or False (not 0 or 1)."""
    return None if isinstance(value, bool) else "must be True or False" + _type(value)


def boundaries(value: object) -> str | None:
    """Check: step-schedule boundaries, increasing fractions of training in (0, 1)."""
    rule = "must be increasing fractions in (0, 1), e.g. (0.7, 0.9)"
    if not isinstance(value, (list, tuple)):
        return rule + _type(value)
    numbers_ok = all(isinstance(b, numbers.Real) and not isinstance(b, bool) and 0 < b < 1
                     for b in value)
    increasing = all(a < b for a, b in zip(value, value[1:], strict=False))
    return None if numbers_ok and increasing else rule


def coordinator(value: object) -> str | None:
    """Check: HOST:PORT, or empty for none."""
    if not isinstance(value, str):
        return "must be HOST:PORT or empty" + _type(value)
    return None if value == "" or re.fullmatch(r"\S+:\d+", value) else "must be HOST:PORT or empty"


POSITIVE_INT = integer(1)
NON_NEGATIVE_INT = integer(0)
