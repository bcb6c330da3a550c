"""Which mode labkit runs in: a learner's notebook, or the batch grader's sandboxed child (course tooling).

While the child runs the notebook, its demonstration cells (`lk.replicas.simulate(...)` and a table of
the runs) would cost the grader as much as the checks themselves, for a table nobody sees.
So there, a lesson's `simulate` and `summarize` give a `Deferred`: the same result,
computed when learner code first uses it (reads an attribute, iterates, compares, prints,
`isinstance`), and never if it is only displayed. Only calls whose arguments cannot change
in the meantime are deferred (numbers, strings, labkit's frozen values and runs, labkit's own
classes and functions, other deferred results, and lists, tuples and dicts of them, copied); a call
that hands over learner code, such as `simulate(router=MyRouter)`, runs at once, as in the
notebook, so learner code runs when the notebook runs it.
"""
from __future__ import annotations

import contextlib
import dataclasses
import functools
import inspect
import os

_in_cells = False   # True while the grading child runs the notebook's cells (`running_cells`)


def grading_child() -> bool:
    """True inside the batch grader's sandboxed child, where checks, plots and widgets are skipped."""
    return os.environ.get("LABKIT_GRADING_CHILD") == "1"


@contextlib.contextmanager
def running_cells():
    """While the grading child runs a notebook's cells: the calls deferred are those the cells make, never a check's."""
    global _in_cells
    _in_cells = True
    try:
        yield
    finally:
        _in_cells = False


class Deferred:
    """In the grading child: a labkit result computed on first use (`deferred_while_grading`)."""

    __slots__ = ("_deferred_call", "_deferred_value", "_deferred_what")

    def __init__(self, what: str, call):
        object.__setattr__(self, "_deferred_what", what)
        object.__setattr__(self, "_deferred_call", call)
        object.__setattr__(self, "_deferred_value", None)

    def _deferred_force(self):
        call = object.__getattribute__(self, "_deferred_call")
        if call is not None:
            value = call()   # a call that fails fails again at the next use, as calling it again would
            object.__setattr__(self, "_deferred_value", value)
            object.__setattr__(self, "_deferred_call", None)
        return object.__getattribute__(self, "_deferred_value")

    @property
    def _deferred_done(self) -> bool:
        """True once computed."""
        return object.__getattribute__(self, "_deferred_call") is None

    def _deferred_placeholder(self) -> str:
        """What the child's display shows instead of computing it."""
        return f"<{object.__getattribute__(self, '_deferred_what')}: not computed while grading, as nothing used it>"

    # Whatever learner code does with it, it does with the result.
    @property
    def __class__(self):   # isinstance(result, ReplicasRun) holds
        return type(self._deferred_force())

    def __getattr__(self, name):
        return getattr(self._deferred_force(), name)

    def __setattr__(self, name, value):
        setattr(self._deferred_force(), name, value)

    def __delattr__(self, name):
        delattr(self._deferred_force(), name)

    def __dir__(self):
        return dir(self._deferred_force())

    def __repr__(self):
        return repr(self._deferred_force())

    def __str__(self):
        return str(self._deferred_force())

    def __format__(self, spec):
        return format(self._deferred_force(), spec)

    def __eq__(self, other):
        return self._deferred_force() == other

    def __ne__(self, other):
        return self._deferred_force() != other

    def __hash__(self):
        return hash(self._deferred_force())

    def __bool__(self):
        return bool(self._deferred_force())

    def __len__(self):
        return len(self._deferred_force())

    def __iter__(self):
        return iter(self._deferred_force())

    def __contains__(self, item):
        return item in self._deferred_force()

    def __getitem__(self, key):
        return self._deferred_force()[key]

    def __setitem__(self, key, value):
        self._deferred_force()[key] = value

    def __call__(self, *args, **kwargs):
        return self._deferred_force()(*args, **kwargs)

    def __reduce_ex__(self, protocol):
        return self._deferred_force().__reduce_ex__(protocol)

    def __copy__(self):
        import copy

        return copy.copy(self._deferred_force())

    def __deepcopy__(self, memo):
        import copy

        return copy.deepcopy(self._deferred_force(), memo)


class _Unsettled(Exception):
    """An argument that could change, or run learner code, before a deferred call is computed."""


def _settled(value, depth: int = 0):
    """`value`, or a copy of it, that nothing can change later; _Unsettled if there is none."""
    t = type(value)
    if value is None or t in (bool, int, float, complex, str, bytes, range) or t is Deferred:
        return value
    if depth > 8:
        raise _Unsettled()
    if t in (list, tuple, frozenset, set):
        return t(_settled(v, depth + 1) for v in value)
    if t is dict:
        return {_settled(k, depth + 1): _settled(v, depth + 1) for k, v in value.items()}
    own = lambda obj: isinstance(getattr(obj, "__module__", None), str) and obj.__module__.startswith("labkit")
    if isinstance(value, type) or callable(value) and hasattr(value, "__code__"):
        if own(value):   # labkit's own class or function (a learner's subclass is the learner's module)
            return value
        raise _Unsettled()
    from labkit.run import Run

    if isinstance(value, Run) and own(t):   # a run does not change once simulated
        return value
    params = getattr(t, "__dataclass_params__", None)
    if own(t) and params is not None and params.frozen:
        for field in dataclasses.fields(value):
            _settled(getattr(value, field.name), depth + 1)
        return value
    raise _Unsettled()


def deferred_while_grading(fn):
    """Decorator for a lesson's `simulate` and `summarize`: in the grading child, their result is a `Deferred`."""

    signature = inspect.signature(fn)
    where = fn.__module__.split(".")
    what = (f"lk.{where[2]}.{fn.__name__}(...)" if where[:2] == ["labkit", "lessons"] and len(where) > 2
            else f"{fn.__qualname__}(...)")

    def now(args, kwargs):
        global _in_cells
        cells, _in_cells = _in_cells, False   # what it calls in turn is not deferred
        try:
            return fn(*args, **kwargs)
        finally:
            _in_cells = cells

    @functools.wraps(fn)
    def call(*args, **kwargs):
        if not _in_cells:
            return fn(*args, **kwargs)
        signature.bind(*args, **kwargs)   # a misspelt or missing argument fails in its cell, as it would at once
        try:
            args, kwargs = _settled(args), _settled(kwargs)
        except _Unsettled:
            return now(args, kwargs)
        return Deferred(what, lambda: now(args, kwargs))

    call.deferred_while_grading = True
    return call
