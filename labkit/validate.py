"""Argument checks at the boundary: errors name the parameter, the value and what is allowed.

One rule decides which error a bad argument raises:

- `TypeError` when the value is not the kind the parameter takes: a string, None or a
  list where a number goes, a bool where a number goes (True is not 1 second), a float
  where a count goes (as `range(2.0)` does), an object of the wrong class.
- `ValueError` when the kind is right but the value is not allowed: outside the range,
  NaN or infinite, empty, not one of the choices.

The TypeErrors are `ArgumentTypeError`, which is a ValueError too: callers written when
every bad argument raised ValueError (a Play panel showing "these settings cannot run", a
check turning a learner's bad setting into feedback) still catch it.

Every number a run's size grows with has an upper bound (`hi`), stated in the message,
so no argument makes a call hang or allocate without bound.
"""
from __future__ import annotations

import decimal
import fractions
import math
import numbers


class ArgumentTypeError(TypeError, ValueError):
    """An argument of the wrong kind: a TypeError, and a ValueError for callers that catch bad arguments as one."""


def number(name: str, value, *, lo: float | None = None, hi: float | None = None,
           lo_open: bool = False, hi_open: bool = False, integer: bool = False, optional: bool = False):
    """Return `value` if it is a finite number (an int if `integer`) in the range, else raise.

    TypeError for something that is not a number (or is a bool, or a non-int where an int
    is required); ValueError for NaN, infinity or a value outside [lo, hi] (open ends
    with `lo_open` / `hi_open`). With `optional`, None is allowed and returned.
    """
    if value is None and optional:
        return None
    kind = "an int" if integer else "a number"
    if not isinstance(value, numbers.Integral if integer else numbers.Real) or isinstance(value, bool):
        none = " or None" if optional else ""
        raise ArgumentTypeError(f"{name} must be {kind}{_range_text(lo, hi, lo_open, hi_open)}{none}, got {value!r}")
    if not integer and not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number{_range_text(lo, hi, lo_open, hi_open)}, got {value!r}")
    too_low = lo is not None and (value <= lo if lo_open else value < lo)
    too_high = hi is not None and (value >= hi if hi_open else value > hi)
    if too_low or too_high:
        raise ValueError(f"{name} must be{_range_text(lo, hi, lo_open, hi_open)}, got {value!r}")
    return value


def _fmt(x) -> str:
    x = float(x)
    return str(int(x)) if x.is_integer() and abs(x) < 1e16 else repr(x)


def _range_text(lo, hi, lo_open, hi_open) -> str:
    if lo is not None and hi is not None:
        return f" in {'(' if lo_open else '['}{_fmt(lo)}, {_fmt(hi)}{')' if hi_open else ']'}"
    if lo is not None:
        return f" {'>' if lo_open else '>='} {_fmt(lo)}"
    if hi is not None:
        return f" {'<' if hi_open else '<='} {_fmt(hi)}"
    return ""


def interval(name: str, value, *, lo: float, hi: float) -> tuple[float, float]:
    """Return `value` as a (start, end) tuple if it is a pair of numbers with lo <= start <= end <= hi, else raise."""
    if isinstance(value, (str, bytes)) or not isinstance(value, (tuple, list)) or len(value) != 2:
        raise ArgumentTypeError(f"{name} must be a (start, end) pair of numbers in [{_fmt(lo)}, {_fmt(hi)}], "
                                f"got {value!r}")
    start, end = value
    for v in value:
        if isinstance(v, bool) or not isinstance(v, numbers.Real):
            raise ArgumentTypeError(f"{name} must be a (start, end) pair of numbers, got {value!r}")
    if not (math.isfinite(start) and math.isfinite(end)) or not lo <= start <= end <= hi:
        raise ValueError(f"{name} must be a (start, end) pair with {_fmt(lo)} <= start <= end <= {_fmt(hi)}, "
                         f"got {value!r}")
    return (start, end)


def choice(name: str, value, allowed):
    """Return `value` if it is one of `allowed`, else raise (TypeError if no choice is of its type)."""
    try:
        if value in allowed:
            return value
    except TypeError:  # an unhashable value asked of a set
        pass
    listed = ", ".join(map(repr, allowed))
    if not any(type(value) is type(a) for a in allowed):
        raise ArgumentTypeError(f"{name} must be one of {listed}; got {value!r}")
    raise ValueError(f"{name} must be one of {listed}; got {value!r}")


def instance(name: str, value, cls, what: str):
    """Return `value` if it is an instance of `cls` (a class or tuple), else raise TypeError saying `what` it must be."""
    if not isinstance(value, cls):
        raise ArgumentTypeError(f"{name} must be {what}, got {value!r}")
    return value


def text(name: str, value, *, optional: bool = False) -> str | None:
    """Return `value` if it is a non-empty string (or None, if `optional`), else raise."""
    if value is None and optional:
        return None
    if not isinstance(value, str):
        raise ArgumentTypeError(f"{name} must be a non-empty string{' or None' if optional else ''}, got {value!r}")
    if not value:
        raise ValueError(f"{name} must be a non-empty string, got ''")
    return value


def key(name: str, value):
    """Return `value` if it can be a row or cache key: an int (not a bool) or a non-empty string."""
    if isinstance(value, bool) or not isinstance(value, (numbers.Integral, str)):
        raise ArgumentTypeError(f"{name} must be an int or a non-empty string, got {value!r}")
    if value == "":
        raise ValueError(f"{name} must be an int or a non-empty string, got ''")
    return value


def items(name: str, values, cls, what: str) -> tuple:
    """`values` as a tuple if it is a list or tuple (any iterable but a string) of `cls`, else TypeError."""
    if isinstance(values, (str, bytes)) or not hasattr(values, "__iter__"):
        raise ArgumentTypeError(f"{name} must be a list of {what}, got {values!r}")
    out = tuple(values)
    for v in out:
        if not isinstance(v, cls):
            raise ArgumentTypeError(f"{name} must hold {what}, got {v!r}")
    return out


def callable_(name: str, value, what: str = "a function", *, optional: bool = False):
    """Return `value` if it is callable (or None, if `optional`), else raise TypeError."""
    if value is None and optional:
        return None
    if not callable(value):
        raise ArgumentTypeError(f"{name} must be {what}{' or None' if optional else ''}, got {value!r}")
    return value


def clock(name: str, value):
    """Return `value` if it has a numeric `.now` (a labkit Sim, or a proxy to one), else raise TypeError."""
    now = getattr(value, "now", None)
    if isinstance(now, bool) or not isinstance(now, numbers.Real):
        raise ArgumentTypeError(f"{name} must have a numeric .now attribute (a labkit Sim), got {value!r}")
    return value


def runs(value, run_type: type, made_by: str) -> dict:
    """Return `value` if it is a non-empty dict of label -> run of `run_type` (what `made_by` returns)."""
    if not isinstance(value, dict):
        raise ArgumentTypeError(f"runs must be a non-empty dict of label -> run, got {value!r}")
    if not value:
        raise ValueError("runs must be a non-empty dict of label -> run, got {}")
    for run in value.values():
        if not isinstance(run, run_type):
            raise ArgumentTypeError(f"runs must map labels to what {made_by} returns, got {run!r}")
    return value


def plain_number(value):
    """numpy's scalars, a Fraction or a Decimal as the int, float or bool they stand for; None for anything else.

    A learner's arithmetic on numpy arrays gives numpy scalars (`np.int64(7)` is not an int),
    and a number is a number wherever an answer asks for one: sent by value, not as a proxy
    the checks could not read. Only these known types: their conversions run no learner code.
    """
    t = type(value)
    if t.__module__ == "numpy":
        if t.__name__ in ("bool_", "bool"):
            return bool(value)
        if isinstance(value, numbers.Integral):
            return int(value)
        if isinstance(value, numbers.Real):
            return float(value)
        return None
    if t is fractions.Fraction:
        return value.numerator if value.denominator == 1 else value.numerator / value.denominator
    if t is decimal.Decimal:
        return int(value) if value.is_finite() and value == value.to_integral_value() else float(value)
    return None
