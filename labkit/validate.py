"""Argument checks for public constructors: errors name the parameter, the value and the range."""
from __future__ import annotations

import math
import numbers


def number(name: str, value, *, lo: float | None = None, hi: float | None = None,
           lo_open: bool = False, hi_open: bool = False, integer: bool = False):
    """Return `value` if it is a number in the range, else raise ValueError saying which range."""
    kind = "an int" if integer else "a number"
    ok_type = isinstance(value, numbers.Integral if integer else numbers.Real) and not isinstance(value, bool)
    if not ok_type or (not integer and not math.isfinite(value)):
        raise ValueError(f"{name} must be {kind}{_range_text(lo, hi, lo_open, hi_open)}, got {value!r}")
    too_low = lo is not None and (value <= lo if lo_open else value < lo)
    too_high = hi is not None and (value >= hi if hi_open else value > hi)
    if too_low or too_high:
        raise ValueError(f"{name} must be{_range_text(lo, hi, lo_open, hi_open)}, got {value!r}")
    return value


def _range_text(lo, hi, lo_open, hi_open) -> str:
    if lo is not None and hi is not None:
        return f" in {'(' if lo_open else '['}{lo:g}, {hi:g}{')' if hi_open else ']'}"
    if lo is not None:
        return f" {'>' if lo_open else '>='} {lo:g}"
    if hi is not None:
        return f" {'<' if hi_open else '<='} {hi:g}"
    return ""


def choice(name: str, value, allowed):
    """Return `value` if it is one of `allowed`, else raise ValueError listing them."""
    if value not in allowed:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, allowed))}; got {value!r}")
    return value


def runs(value, run_type: type, made_by: str) -> dict:
    """Return `value` if it is a non-empty dict of label -> run of `run_type` (what `made_by` returns)."""
    if not isinstance(value, dict) or not value:
        raise ValueError(f"runs must be a non-empty dict of label -> run, got {value!r}")
    for run in value.values():
        if not isinstance(run, run_type):
            raise ValueError(f"runs must map labels to what {made_by} returns, got {run!r}")
    return value
