"""Exercises: run a learner's answer in fresh seeded scenarios and judge what it does (lesson 00).

A scenario is a function `fn(answer, ctx)` that drives the answer through its public
interface only (construct it, call its methods, read its attributes) and either
returns a short note of what it observed or raises `Fail("what was observed, and a
nudge")`. Because scenarios touch the answer only through that interface, the grader
can hand them a proxy to an answer living in another process and reach the same verdict.
"""
from __future__ import annotations

import contextlib
import dis
import os
import signal
import threading
import time
import traceback
from dataclasses import dataclass
from typing import Callable

from labkit.checking.verdicts import ERROR, FAILED, NOT_ATTEMPTED, PASSED, Fail, Report, Result

_monotonic = time.monotonic   # the real one: LocalContext swaps time's clocks for spies while a scenario runs
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
                 stub_message: str = "fill in the cell above (replace the ...), then check it again."):
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

    def run(self, answer, *, ctx_factory: Callable | None = None, include_hidden: bool = False,
            stop_at_first_failure: bool = False) -> Report:
        """Judge `answer` in every scenario; never raises (learner errors become failed results).

        In this process (no `ctx_factory`), each scenario runs under the limits of its
        `LocalContext`: a time limit and a memory allowance, so a learner's endless loop or
        runaway allocation becomes a verdict, not a hung or swapping kernel. A KeyboardInterrupt
        stops the run; the scenarios it did not reach fail too, so the report keeps the
        exercise's full points. `stop_at_first_failure` (for mutation testing) skips the rest
        once one scenario failed.
        """
        report = Report(self.id, self.title)
        scenarios = [s for s in self.scenarios if include_hidden or not s.hidden]
        if is_stub(answer):
            report.results = [Result(self.id, s.name, NOT_ATTEMPTED, 0, s.points, self.stub_message, s.hidden)
                              for s in scenarios]
            return report
        for i, s in enumerate(scenarios):
            ctx = ctx_factory() if ctx_factory else LocalContext()
            try:
                with ctx, limits(getattr(ctx, "time_limit_s", None), getattr(ctx, "memory_limit_bytes", None),
                                 getattr(ctx, "cpu_limit_s", None)):
                    note = s.fn(answer, ctx)
                result = Result(self.id, s.name, PASSED, s.points, s.points, note or "", s.hidden)
            except Fail as fail:
                result = Result(self.id, s.name, FAILED, 0, s.points, str(fail), s.hidden)
            except OutOfTime as exc:
                # One stuck scenario is enough to know: the others would only keep the cell busy as long.
                report.results.append(Result(self.id, s.name, FAILED, 0, s.points, _too_slow(exc), s.hidden))
                report.results.extend(Result(self.id, rest.name, FAILED, 0, rest.points,
                                             "Not checked: your code did not finish in the check above.",
                                             rest.hidden) for rest in scenarios[i + 1:])
                break
            except KeyboardInterrupt:
                report.results.append(Result(self.id, s.name, FAILED, 0, s.points,
                                             "Interrupted while your code was running: is it stuck in a loop?",
                                             s.hidden))
                report.results.extend(Result(self.id, rest.name, FAILED, 0, rest.points,
                                             "Not checked: the check was interrupted before it got here.",
                                             rest.hidden) for rest in scenarios[i + 1:])
                break
            except BaseException as exc:  # noqa: BLE001 - a learner's exception is a verdict, not a crash
                status, message = _describe_exception(exc, answer)
                result = Result(self.id, s.name, status, 0, s.points, message, s.hidden)
            report.results.append(result)
            if stop_at_first_failure and not result.passed:
                break
        return report


def _too_slow(exc: "OutOfTime") -> str:
    what = "computing" if exc.cpu else "waiting"
    return (f"Your code did not finish within {exc.seconds:g} s of {what}, so the check stopped it (a correct "
            "answer needs well under a second). Is a loop waiting for something that never happens (a while loop "
            "whose condition nothing in it changes, or time.sleep() waiting for the simulation, whose clock only "
            "moves between your calls), or is a callback scheduling itself again and again?")


class OutOfTime(BaseException):
    """A scenario ran past its time limit (a BaseException, so a learner's `except Exception` cannot swallow it)."""

    def __init__(self, seconds: float, cpu: bool):
        super().__init__(f"did not finish within {seconds:g} s")
        self.seconds, self.cpu = seconds, cpu


@contextlib.contextmanager
def limits(time_limit_s: float | None, memory_limit_bytes: int | None, cpu_limit_s: float | None = None):
    """Run the body under time limits and a memory allowance, where this process can enforce them.

    `cpu_limit_s` bounds the processor time the body uses (a busy loop), whatever else the
    machine is doing, so a correct answer on a loaded machine is not cut short; `time_limit_s`
    bounds the time it takes on the wall (a loop that sleeps). Both are interval timers
    (SIGPROF, SIGALRM), which only the main thread can set, on systems with
    `signal.setitimer`; they re-fire every half second, in case a bare `except:` swallowed
    the first one. The memory allowance is a soft RLIMIT_AS of the address space in use at
    the start plus the allowance, restored on the way out (Linux; other systems do not
    enforce it). Where one cannot be set, the body runs without it.
    """
    with contextlib.ExitStack() as stack:
        if cpu_limit_s:
            stack.enter_context(_timer(cpu_limit_s, cpu=True))
        if time_limit_s:
            stack.enter_context(_timer(time_limit_s, cpu=False))
        if memory_limit_bytes:
            stack.enter_context(_memory_limit(memory_limit_bytes))
        yield


@contextlib.contextmanager
def _timer(seconds: float, cpu: bool):
    if not hasattr(signal, "setitimer") or threading.current_thread() is not threading.main_thread():
        yield
        return
    signum, which = (signal.SIGPROF, signal.ITIMER_PROF) if cpu else (signal.SIGALRM, signal.ITIMER_REAL)
    armed = True

    def on_timer(signum, frame):
        if armed:
            raise OutOfTime(seconds, cpu)

    try:
        previous = signal.signal(signum, on_timer)
    except (ValueError, OSError):   # not the main interpreter, or signals unavailable
        yield
        return
    started = _monotonic() if not cpu else time.process_time()
    outer, _ = signal.setitimer(which, seconds, 0.5)
    try:
        yield
    finally:
        armed = False
        signal.setitimer(which, 0)
        signal.signal(signum, previous)
        if outer:   # someone else's timer was running: give it back what is left of it
            used = (_monotonic() if not cpu else time.process_time()) - started
            signal.setitimer(which, max(outer - used, 0.001))


def _address_space() -> int | None:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


@contextlib.contextmanager
def _memory_limit(allowance: int):
    try:
        import resource
        soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    except (ImportError, AttributeError, OSError, ValueError):
        yield
        return
    used = _address_space()
    if used is None:
        yield
        return
    cap = used + allowance
    if hard != resource.RLIM_INFINITY:
        cap = min(cap, hard)
    if soft != resource.RLIM_INFINITY and soft <= cap:
        yield   # a tighter limit is already in force
        return
    try:
        resource.setrlimit(resource.RLIMIT_AS, (cap, hard))
    except (ValueError, OSError):
        yield
        return
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


def _learner_names(answer) -> set[str]:
    """The names a Python error message would use for the learner's answer: its class and their bases, or its function."""
    if answer is _NO_ANSWER:
        return set()
    if isinstance(answer, type):
        return {k.__name__ for k in answer.__mro__ if not k.__module__.startswith(("labkit", "builtins"))}
    name = getattr(answer, "__name__", None)
    return {name} if isinstance(name, str) and name != "<lambda>" else set()


_NO_ANSWER = object()


def _describe_exception(exc: BaseException, answer=_NO_ANSWER) -> tuple[str, str]:
    """(status, message) for an exception: the learner's own line if the error came from their code."""
    # An error raised in a grading child arrives as a RemoteError carrying the learner's
    # frames and type name; it must read exactly as the same error raised here.
    own = getattr(exc, "learner_frames", None)
    if own is None:
        frames = traceback.extract_tb(exc.__traceback__)
        own = [f for f in frames if not os.path.abspath(f.filename).startswith(_LABKIT_DIR)]
    name = getattr(exc, "type_name", None) or type(exc).__name__
    what = f"{name}: {exc}" if str(exc) else name
    if name == "RuntimeError" and "events without finishing" in str(exc):
        # labkit's runaway guard (Sim.run): the events were the learner's, even if no frame of theirs is left.
        return FAILED, ("Your code kept the simulation busy: " + str(exc).split(":")[0] + ", so the check "
                        "stopped it. Is a callback scheduling itself again and again (clock.after(0, ...) "
                        "in a loop), or a retry that never gives up?")
    if name == "MemoryError":
        return FAILED, ("Your code ran out of the memory a check allows, so the check stopped it. Is a list, "
                        "dict or string growing without end (a queue nobody empties, a loop that keeps "
                        "appending)?" + (f"\n  ({_where(own[-1])})" if own else ""))
    if name == "RecursionError" and own:
        return FAILED, ("Your code called itself without end (RecursionError). Does a method call itself (or "
                        f"its parent's method call it back) with nothing that stops it?\n  ({_where(own[-1])})")
    if own:
        return FAILED, f"Your code raised {what}\n  ({_where(own[-1])})"
    # Errors raised at the check's call into the learner's code, before any line of it ran: a method
    # or attribute the check uses is missing, or takes other parameters than the starter cell's.
    names, text = _learner_names(answer), str(exc)
    obj = getattr(exc, "obj", None)
    if name == "AttributeError" and (
            (isinstance(answer, type) and obj is not None and isinstance(obj, answer))
            or any(text.startswith(f"'{n}' object has no attribute") for n in names)):
        attribute = getattr(exc, "name", None) or text.rsplit(" ", 1)[-1].strip("'")
        return FAILED, (f"The check used {attribute!r} of your object and it has none ({text}). Keep the names of "
                        "the starter cell: the check calls those methods and reads those attributes.")
    if name == "TypeError" and any(text.startswith(f"{n}.") or text.startswith(f"{n}()") for n in names):
        return FAILED, (f"The check could not call your code as the exercise says ({text}). Keep the parameters "
                        "of the starter cell: their names, their order and their defaults.")
    if name == "TypeError" and answer is not _NO_ANSWER and not callable(answer) \
            and text.startswith(f"'{type(answer).__name__}' object is not callable"):
        return FAILED, (f"Expected a function or class here, got {type(answer).__name__} {answer!r:.80}: pass the "
                        "function or class itself (its name, without calling it).")
    return ERROR, f"The checker itself failed ({what}). This is a labkit bug: please report it."


def _where(frame) -> str:
    return f"in {frame.name}(), line {frame.lineno}" + (f": {frame.line.strip()}" if frame.line else "")


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
    """An answer running in this process: did it read the wall clock? And the limits each scenario runs under."""

    _CLOCKS = ("time", "monotonic", "perf_counter", "time_ns", "monotonic_ns", "perf_counter_ns")
    # Per scenario. A correct answer needs well under a second of processor time; the wall-clock
    # limit only catches code that waits (sleeps), so it is looser, for a loaded machine.
    CPU_LIMIT_S = 5.0
    TIME_LIMIT_S = 15.0
    MEMORY_LIMIT_BYTES = 2 << 30    # on top of what the process already uses

    def __init__(self, time_limit_s: float | None = TIME_LIMIT_S, memory_limit_bytes: int | None = MEMORY_LIMIT_BYTES,
                 cpu_limit_s: float | None = CPU_LIMIT_S):
        self.time_limit_s, self.memory_limit_bytes, self.cpu_limit_s = time_limit_s, memory_limit_bytes, cpu_limit_s
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
