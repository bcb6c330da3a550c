"""Which mode labkit runs in: a learner's notebook, or the batch grader's sandboxed child (course tooling).

In the child, a notebook's own cells are run to define the learner's answers, and nobody
looks at what the demonstration cells show: their plots are not drawn
(`plots.not_drawn_while_grading`), and the runs and tables they make are made only if
something reads them (`made_when_read`). A lesson's demo runs were a third of the time the
grader took for some solutions; a learner's answer that does read a run (`three.summary()`)
gets the same run, made at that moment.
"""
from __future__ import annotations

import contextlib
import contextvars
import functools
import os
import types

_COMPUTE, _FAILED = "_labkit_make", "_labkit_failed"   # how a stand-in makes its object; why it could not
# While the grader's child runs the notebook's own cells: the allowance a stand-in makes its object in; else None.
_cells = None
# True during a `made_when_read` call's first pass, which stops at `arguments_checked()`; per thread.
_checking: contextvars.ContextVar = contextvars.ContextVar("labkit_checking", default=False)
_stand_ins: dict = {}
_PLAIN = (type(None), bool, int, float, str)


def grading_child() -> bool:
    """True inside the batch grader's sandboxed child, where checks, plots and widgets are skipped."""
    return os.environ.get("LABKIT_GRADING_CHILD") == "1"


@contextlib.contextmanager
def notebook_cells(allowance=contextlib.nullcontext):
    """The grader's child runs the notebook's own cells in this block: `made_when_read` functions wait to be read.

    A stand-in made here makes its object inside `allowance()`, whenever it is read: the
    child gives that work a cell's CPU allowance of its own, as the cell that asked for it
    had in a notebook, whatever cell or call of a check reads it.
    """
    global _cells
    before, _cells = _cells, allowance
    try:
        yield
    finally:
        _cells = before


class _ArgumentsChecked(BaseException):
    """A `made_when_read` call's first pass reached `arguments_checked()`: a BaseException, so no `except Exception` stops it."""


def arguments_checked() -> None:
    """Where a `made_when_read` function has checked its arguments and built nothing it would waste (lesson 00).

    Call it before the run's event loop and before any call into the learner's code (a
    router or app factory). Inside `notebook_cells()` the call's first pass stops here, so
    a bad argument fails in the cell that passed it, as in a notebook; elsewhere it does nothing.
    """
    if _checking.get():
        raise _ArgumentsChecked


def made_when_read(made: type):
    """Decorator for a lesson function that makes a `made` for the learner to look at (a run, a table) (lesson 00).

    Outside `notebook_cells()` (in a notebook, in the grader, in a check) it is a plain
    call. Inside, the function runs until it calls `arguments_checked()`, so every bad
    argument fails at the call as it would in a notebook, and the call then returns a
    stand-in: an instance of a subclass of `made` (`isinstance` holds) that runs the
    function again in full on the first read of any attribute (`run.summary()`,
    `print(table)`, `vars(run)`) and becomes what it returns, class and all. If that
    fails, every later read raises the same error without trying again.

    Only labkit's own work waits: a call given anything of the learner's (a router or app
    class, a lambda, a generator, an object of theirs) runs at once, so the learner's code
    runs when and as often as in a notebook, against the same state. So does a function
    that never calls `arguments_checked()`. Lists, tuples and dicts among the arguments are
    copied at the call, so changing one later changes nothing.
    """
    def decorate(make):
        @functools.wraps(make)
        def made_on_read(*args, **kwargs):
            allowance = _cells
            if allowance is None or not _ours(args) or not _ours(kwargs):
                return make(*args, **kwargs)
            args, kwargs = _copied(args), _copied(kwargs)
            token = _checking.set(True)
            try:
                return make(*args, **kwargs)
            except _ArgumentsChecked:
                pass
            finally:
                _checking.reset(token)
            stand_in = object.__new__(_stand_in(made))
            object.__getattribute__(stand_in, "__dict__")[_COMPUTE] = allowance, lambda: make(*args, **kwargs)
            return stand_in

        return made_on_read

    return decorate


def _ours(value, depth: int = 0) -> bool:
    """True if `value` is plain data or labkit's own (its classes, functions and objects), looking into containers."""
    t = type(value)
    if t in _PLAIN:
        return True
    if depth > 20:
        return False
    if t in (list, tuple):
        return all(_ours(v, depth + 1) for v in value)
    if t is dict:
        return all(_ours(k, depth + 1) and _ours(v, depth + 1) for k, v in value.items())
    if t is type or t is types.FunctionType:   # a class or a function: where it was written (not a metaclass's say)
        module = vars(value).get("__module__") if t is type else value.__module__
    else:
        module = vars(t).get("__module__")
    return isinstance(module, str) and (module == "labkit" or module.startswith("labkit."))


def _copied(value):
    if type(value) in (list, tuple):
        return type(value)(_copied(v) for v in value)
    if type(value) is dict:
        return {k: _copied(v) for k, v in value.items()}
    return value


def _stand_in(made: type) -> type:
    if made in _stand_ins:
        return _stand_ins[made]

    def become(self) -> None:
        state = object.__getattribute__(self, "__dict__")
        if _FAILED in state:
            raise state[_FAILED]
        allowance, compute = state[_COMPUTE]
        token = _checking.set(False)
        try:
            with allowance():
                real = compute()
        except BaseException as exc:   # a timeout too: a later read raises it again at once, as a cell that failed
            state[_FAILED] = exc
            raise
        finally:
            _checking.reset(token)
        if type(real) is not made:
            raise TypeError(f"made_when_read({made.__name__}) got a {type(real).__name__}")
        state.clear()
        state.update(object.__getattribute__(real, "__dict__"))
        object.__setattr__(self, "__class__", made)

    def __getattribute__(self, name):
        become(self)
        return getattr(self, name)

    def __setattr__(self, name, value):
        become(self)
        setattr(self, name, value)

    def __delattr__(self, name):
        become(self)
        delattr(self, name)

    _stand_ins[made] = type(made.__name__, (made,), {
        "__getattribute__": __getattribute__, "__setattr__": __setattr__, "__delattr__": __delattr__,
        "__module__": made.__module__, "__qualname__": made.__qualname__, "__doc__": made.__doc__})
    return _stand_ins[made]
