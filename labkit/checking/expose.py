"""Which attributes of the grader's objects a learner's code may use while it is graded (course tooling).

A scenario hands the learner's code some of its own objects: the simulation clock that a
breaker reads `clock.now` from, later a database or a cache. That code runs in the child,
so each attribute read or method call comes back to the grader as a request. The grader
serves only the names listed here: nothing
starting with `_`, no classes, modules or functions, and no writes, so a notebook cannot
walk from the clock to `os.system` in the grader's process. A lesson whose scenarios pass
a new kind of object says what of it learner code may use with `expose(...)` lines at the
top of its own `exercises.py` (they run before any scenario does).

An exposed attribute that is a value, not a method (`Replica.is_up`, `Database.lag_s`), is
read by the grader whenever it sends the child a message, once the child has read it, and
sent along, so learner code reads it without a round trip. So such an attribute, property
or not, must be cheap and change nothing when it is read.
"""
from __future__ import annotations

from labkit.clock import Sim

_EXPOSED: dict[type, frozenset[str]] = {}
_BY_TYPE: dict[type, frozenset[str]] = {}


def expose(cls: type, *names: str) -> None:
    """Let learner code read these attributes of `cls` instances (and call them, if methods)."""
    for name in names:
        if not isinstance(name, str) or name.startswith("_"):
            raise ValueError(f"names must be public attribute names, got {name!r}")
    _EXPOSED[cls] = _EXPOSED.get(cls, frozenset()) | frozenset(names)
    _BY_TYPE.clear()


def exposed_names(obj) -> frozenset[str]:
    """Every attribute name learner code may use on `obj`."""
    cls = type(obj)
    names = _BY_TYPE.get(cls)
    if names is None:
        names = _BY_TYPE[cls] = _names_of(cls)
    return names


def _names_of(cls: type) -> frozenset[str]:
    names: frozenset[str] = frozenset()
    for klass in cls.__mro__:
        names |= _EXPOSED.get(klass, frozenset())
    return names


# The clock a breaker, a cache TTL or a scaler reads. Not run/advance: time is the scenario's.
expose(Sim, "now", "seed", "pending", "at", "after")
