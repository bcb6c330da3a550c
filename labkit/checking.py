"""Exercise checks: run a learner's answer in fresh seeded scenarios and judge what it does (lesson 00).

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
from dataclasses import asdict, dataclass, field
from typing import Callable

PASSED, FAILED, NOT_ATTEMPTED, ERROR = "passed", "failed", "not attempted", "error"
_LABKIT_DIR = os.path.dirname(os.path.abspath(__file__))


class Fail(Exception):
    """Raised by a scenario: the answer did something observably wrong; the text says what."""


@dataclass(frozen=True)
class Result:
    """The verdict of one scenario group: what the grader stores and the learner reads."""

    exercise: str
    scenario: str
    status: str
    points: float
    max_points: float
    message: str = ""
    hidden: bool = False

    @property
    def passed(self) -> bool:
        return self.status == PASSED


@dataclass
class Report:
    """Every scenario result of one exercise; prints as the verdict a learner sees."""

    exercise: str
    title: str
    results: list[Result] = field(default_factory=list)

    @property
    def score(self) -> float:
        return sum(r.points for r in self.results)

    @property
    def max_score(self) -> float:
        return sum(r.max_points for r in self.results)

    @property
    def status(self) -> str:
        statuses = {r.status for r in self.results}
        if statuses == {PASSED}:
            return PASSED
        if statuses == {NOT_ATTEMPTED}:
            return NOT_ATTEMPTED
        return ERROR if ERROR in statuses else FAILED

    def to_dict(self) -> dict:
        """Plain data for JSON: the report and each result."""
        return {"exercise": self.exercise, "title": self.title, "status": self.status,
                "score": self.score, "max_score": self.max_score,
                "results": [asdict(r) for r in self.results]}

    def text(self) -> str:
        """The verdict as plain text, one line per scenario group."""
        head = f"Exercise {self.exercise}: {self.title}"
        if self.status == NOT_ATTEMPTED:
            return f"{head}\n  - not attempted yet: {self.results[0].message}"
        lines = [f"{head}: {self.score:g}/{self.max_score:g} points"]
        mark = {PASSED: "✔", FAILED: "✘", ERROR: "!", NOT_ATTEMPTED: "-"}
        for r in self.results:
            lines.append(f"  {mark[r.status]} {r.scenario}" + (" (hidden)" if r.hidden else ""))
            if r.message and r.status != PASSED:
                lines.extend("      " + line for line in r.message.splitlines())
        if self.status == PASSED:
            lines.append("  All checks passed, hidden ones included." if any(r.hidden for r in self.results)
                         else "  All checks passed. Hidden checks, if any, run when your work is graded.")
        return "\n".join(lines)

    def __repr__(self) -> str:
        return self.text()

    def _repr_html_(self) -> str:
        import html
        colour = {PASSED: "#1b7837", FAILED: "#b2182b", ERROR: "#b2182b", NOT_ATTEMPTED: "#555"}[self.status]
        # The notebook's own font and width, wrapped between words (JupyterLab breaks a <pre> in
        # an output anywhere, mid-word); each line of text() is a block indented by its leading
        # spaces, so a wrapped message keeps its indent.
        lines = "".join(f'<div style="padding-left: {len(line) - len(line.lstrip())}ch">'
                        f"{html.escape(line.strip())}</div>" for line in self.text().splitlines())
        return (f'<div class="labkit-report" style="border-left: 4px solid {colour}; padding-left: 8px; '
                f'white-space: pre-wrap; word-break: normal; overflow-wrap: anywhere; line-height: 1.5">'
                f"{lines}</div>")


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


def judge_choice(answer, choices: dict) -> str:
    """A multiple-choice answer ('b', 'B' or '(b)') against {letter: (right, feedback)}; a wrong one raises Fail."""
    choice = str(answer).strip().lower().strip("()")
    if choice not in choices:
        raise Fail(f"ANSWER should be one of {', '.join(map(repr, choices))}; got {answer!r}.")
    right, feedback = choices[choice]
    if not right:
        raise Fail(feedback)
    return feedback


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


_REGISTRY: dict[str, Exercise] = {}


def register(exercise: Exercise) -> Exercise:
    """Add an exercise to the registry that `check` looks ids up in."""
    _REGISTRY[exercise.id] = exercise
    return exercise


def get(exercise_id: str) -> Exercise:
    """The registered exercise with this id (lesson exercise modules are imported on first use)."""
    from labkit import exercises  # noqa: F401 - importing registers every lesson's exercises

    try:
        return _REGISTRY[exercise_id]
    except KeyError:
        known = ", ".join(sorted(_REGISTRY))
        raise ValueError(f"exercise_id must be one of {known}; got {exercise_id!r}") from None


def all_exercises() -> list[Exercise]:
    """Every registered exercise, in id order."""
    from labkit import exercises  # noqa: F401

    return [_REGISTRY[k] for k in sorted(_REGISTRY)]


def grading_child() -> bool:
    """True inside the batch grader's sandboxed child, where checks, plots and widgets are skipped."""
    return os.environ.get("LABKIT_GRADING_CHILD") == "1"


def check(exercise_id: str, answer) -> Report | None:
    """Check a learner's answer in fresh seeded scenarios and return the verdict (lesson 00)."""
    if grading_child():
        return None  # the grader judges in its own process; running the checks here would only cost time
    return get(exercise_id).run(answer)
