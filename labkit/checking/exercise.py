"""Exercises: run a learner's answer in fresh seeded scenarios and judge what it does (lesson 00).

A scenario is a function `fn(answer, ctx)` that drives the answer through its public
interface only (construct it, call its methods, read its attributes) and either
returns a short note of what it observed or raises `Fail("what was observed, and a
nudge")`. Because scenarios touch the answer only through that interface, the grader
can hand them a proxy to an answer living in another process and reach the same verdict.
"""
from __future__ import annotations

import dis
import os
import threading
import time
import traceback
from dataclasses import dataclass
from typing import Callable

from labkit.checking.verdicts import ERROR, FAILED, NOT_ATTEMPTED, PASSED, Fail, Report, Result

_LABKIT_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@dataclass
class Scenario:
    """One group of behaviour to check, worth `points`."""

    name: str
    fn: Callable
    points: float = 1.0
    hidden: bool = False


class Exercise:
    """A graded exercise: an answer (a class, function or value) judged by its scenarios (lesson 00)."""

    def __init__(self, id: str, title: str, *, answer: str, hints: tuple[str, ...] = (),
                 stub_message: str = "fill in the cell above (replace the ...) and run this cell again."):
        self.id, self.title, self.answer_name = id, title, answer
        self.hints = tuple(hints)
        self.stub_message = stub_message
        self.scenarios: list[Scenario] = []

    def scenario(self, name: str, points: float = 1.0, hidden: bool = False):
        """Decorator: register `fn(answer, ctx)` as a scenario group of this exercise."""

        def register(fn):
            self.scenarios.append(Scenario(name, fn, points, hidden))
            return fn

        return register

    def run(self, answer, *, ctx_factory: Callable | None = None, include_hidden: bool = False) -> Report:
        """Judge `answer` in every scenario; never raises (learner errors become failed results)."""
        report = Report(self.id, self.title)
        scenarios = [s for s in self.scenarios if include_hidden or not s.hidden]
        if is_stub(answer):
            report.results = [Result(self.id, s.name, NOT_ATTEMPTED, 0, s.points, self.stub_message, s.hidden)
                              for s in scenarios]
            return report
        for s in scenarios:
            ctx = ctx_factory() if ctx_factory else LocalContext()
            try:
                with ctx:
                    note = s.fn(answer, ctx)
                result = Result(self.id, s.name, PASSED, s.points, s.points, note or "", s.hidden)
            except Fail as fail:
                result = Result(self.id, s.name, FAILED, 0, s.points, str(fail), s.hidden)
            except KeyboardInterrupt:
                report.results.append(Result(self.id, s.name, FAILED, 0, s.points,
                                             "Interrupted while your code was running: is it stuck in a loop?",
                                             s.hidden))
                break
            except BaseException as exc:  # noqa: BLE001 - a learner's exception is a verdict, not a crash
                status, message = _describe_exception(exc)
                result = Result(self.id, s.name, status, 0, s.points, message, s.hidden)
            report.results.append(result)
        return report


def _describe_exception(exc: BaseException) -> tuple[str, str]:
    """(status, message) for an exception: the learner's own line if the error came from their code."""
    # An error raised in a grading child arrives as a RemoteError carrying the learner's
    # frames and type name; it must read exactly as the same error raised here.
    own = getattr(exc, "learner_frames", None)
    if own is None:
        frames = traceback.extract_tb(exc.__traceback__)
        own = [f for f in frames if not os.path.abspath(f.filename).startswith(_LABKIT_DIR)]
    name = getattr(exc, "type_name", None) or type(exc).__name__
    what = f"{name}: {exc}" if str(exc) else name
    if own:
        f = own[-1]
        where = f"in {f.name}(), line {f.lineno}" + (f": {f.line.strip()}" if f.line else "")
        return FAILED, f"Your code raised {what}\n  ({where})"
    return ERROR, f"The checker itself failed ({what}). This is a labkit bug: please report it."


def is_stub(answer) -> bool:
    """True for an untouched starter: `...`, a dict with `...` values, or a class/function whose bodies are all `...`."""
    if answer is ...:
        return True
    if isinstance(answer, dict):
        return any(v is ... for v in answer.values())
    if isinstance(answer, type):
        methods = [v for k, v in vars(answer).items() if callable(v) and hasattr(v, "__code__") and k != "__init__"]
        return bool(methods) and all(_trivial(m) for m in methods)
    if callable(answer) and hasattr(answer, "__code__"):
        return _trivial(answer)
    return False


def _trivial(fn) -> bool:
    """True if a function does nothing but return None: a body of `...`, `pass` or a docstring."""
    for ins in dis.get_instructions(fn):
        if ins.opname in ("LOAD_CONST", "RETURN_CONST"):
            if ins.argval is not None and ins.argval is not ...:
                return False
        elif ins.opname not in ("RESUME", "NOP", "RETURN_VALUE", "POP_TOP"):
            return False
    return True


class LocalContext:
    """What a scenario may ask about an answer running in this process: did it read the wall clock?"""

    _CLOCKS = ("time", "monotonic", "perf_counter", "time_ns", "monotonic_ns", "perf_counter_ns")

    def __init__(self):
        self.wall_clock_reads = 0
        self._saved: dict = {}

    def __enter__(self):
        main = threading.get_ident()
        for name in self._CLOCKS:
            real = getattr(time, name)
            self._saved[name] = real

            def spy(real=real):
                # Only count the learner's thread: the kernel's own threads read the clock too.
                if threading.get_ident() == main:
                    self.wall_clock_reads += 1
                return real()

            setattr(time, name, spy)
        return self

    def __exit__(self, *exc):
        for name, real in self._saved.items():
            setattr(time, name, real)
        return False
