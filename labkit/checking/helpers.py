"""What many exercises' scenarios need: build the answer or fail, refuse labkit's own class, judge a choice."""
from __future__ import annotations

import decimal
import math
import numbers
import re

from labkit.checking.verdicts import Fail
from labkit.clock import Sim


def judge_choice(answer, choices: dict) -> str:
    """A multiple-choice answer against {letter: (right, feedback)}; a wrong one raises Fail.

    The letter may come as it is written on paper: 'b', 'B', '(b)', 'b)', 'b.', '[b]', ' b: '.
    """
    match = re.fullmatch(r"[\s(\[]*([a-z])[\s)\].:]*", str(answer).lower()) if isinstance(answer, str) else None
    choice = match.group(1) if match else str(answer).strip().lower()
    if choice not in choices:
        raise Fail(f"ANSWER should be one of {', '.join(map(repr, choices))}; got {answer!r}.")
    right, feedback = choices[choice]
    if not right:
        raise Fail(feedback)
    return feedback


def construct(Answer, *args, shown: str | None = None, **kwargs):
    """`Answer(*args, **kwargs)`, or a Fail that shows the call (`shown`: how to spell the arguments)."""
    name = getattr(Answer, "__name__", "your class")
    if not isinstance(Answer, type):
        if callable(Answer) and hasattr(Answer, "__code__"):
            got = f"the function {name}()"
        else:
            got = f"{type(Answer).__name__} {Answer!r:.80}" + (" (an instance: a class is called to make one)"
                                                              if not callable(Answer) and hasattr(Answer, "__dict__")
                                                              and not isinstance(Answer, dict) else "")
        raise Fail(f"Expected a class here, got {got}: define a class in the cell above (class "
                   f"{name if isinstance(name, str) and name.isidentifier() else 'Name'}: ...) and pass the class "
                   "itself (its name, without calling it).")
    if shown is None:
        shown = ", ".join([*map(repr, args), *(f"{k}={v!r}" for k, v in kwargs.items())])
    try:
        return Answer(*args, **kwargs)
    except TypeError as exc:
        raise Fail(f"Could not create your class as {name}({shown}):\n  {exc}\n"
                   "Keep the parameter names of the starter cell.") from None


def refuse_reference(Answer, reference: type, spelled: str, what: str, note: str = "not yours") -> None:
    """Fail if the answer is labkit's own reference class (or a subclass of it) handed in as the learner's."""
    if isinstance(Answer, type) and issubclass(Answer, reference):
        raise Fail(f"This is labkit's own {what} ({spelled}), {note}: write your own class.")


def clock_hint(ctx, *, ask: bool = True) -> str:
    """A nudge about time: the wall clock was read (said with the count), or, if `ask`, a question about it."""
    reads = getattr(ctx, "wall_clock_reads", 0)
    if reads:
        return ("\nYour code read the wall clock (time.time(), time.monotonic() or similar) "
                f"{'once' if reads == 1 else f'{reads:,} times'}. In a simulation only clock.now moves: those seconds "
                "passed in microseconds of real time. Read the time from self.clock.now.")
    if not ask:
        return ""
    return ("\nDoes it read the time from the clock it was given (self.clock.now)? "
            "time.time() and datetime.now() do not move in a simulation.")


def number(value, what: str, *, whole: bool = False, should: str = "it should be a number"):
    """`value` as a plain float (an int if `whole`), or a Fail: "{what} {value!r}, a str: {should}."

    Any real number counts: int, float, numpy's integers and floats, Fraction, Decimal. A bool,
    a string, None, NaN or an infinity does not (a NaN compares False with everything, so a
    check that only asked "too far off?" would let it through).
    """
    if isinstance(value, bool) or type(value).__name__ == "bool_" or not (
            isinstance(value, (numbers.Real, decimal.Decimal))):
        raise Fail(f"{what} {value!r}, a {type(value).__name__}: {should}.")
    try:
        as_float = float(value)
    except (TypeError, ValueError, OverflowError):
        raise Fail(f"{what} {value!r}: {should}.") from None
    if math.isnan(as_float):
        raise Fail(f"{what} NaN (not a number): {should}. NaN comes from 0/0, inf - inf, or the mean of nothing.")
    if math.isinf(as_float):
        raise Fail(f"{what} {as_float:g}: {should}, and a finite one.")
    if not whole:
        return as_float
    if not as_float.is_integer():
        raise Fail(f"{what} {as_float:g}: {should}, a whole one.")
    return int(as_float)


def percent_short_of(value: float, target: float) -> str:
    """`value`, a fraction under `target`, as a percentage with the decimals it takes to read as under it.

    98.96 % against a target of 99 % is "98.96 %", not "99.0 %", which reads as a pass.
    """
    for digits in (1, 2, 3, 4):
        if round(100 * value, digits) < round(100 * target, digits):
            return f"{100 * value:.{digits}f} %"
    return f"{100 * value:.6f} %"


def counted(n, word: str, plural: str | None = None) -> str:
    """'1 replica', '3 replicas', '1,200 reads': a count with its noun in the right number."""
    shown = f"{n:,}" if isinstance(n, int) else f"{n:g}"
    return f"{shown} {word if n == 1 else plural or word + 's'}"


def as_sent(value):
    """`value` as the grader's process receives it from learner code: builtin containers (and subclasses)
    as fresh copies of their base type, everything else as the same object (the grader's protocol sends
    those by reference)."""
    for base in (list, tuple, set, frozenset):
        if isinstance(value, base):
            return base(as_sent(v) for v in base.__iter__(value))
    if isinstance(value, dict):
        return {as_sent(k): as_sent(v) for k, v in dict.items(value)}
    return value


class SentArgsSim(Sim):
    """A Sim that hands a callback its extra arguments as copies, as the grader's clock does.

    When work is graded, the clock is in the grader's process, so `clock.after(delay_s, fn, waiter)` sends
    `waiter` there and back: `fn` gets an equal list, not the same one. A check that gives learner code
    this clock behaves the same in the notebook, so what passes there passes when graded.
    """

    copied_args = False   # True once a callback was scheduled with extra arguments (a check may say so)

    def at(self, time_s, callback, *args, priority: int = 0) -> None:
        self.copied_args = self.copied_args or bool(args)
        super().at(time_s, callback, *as_sent(args), priority=priority)

    def after(self, delay_s, callback, *args, priority: int = 0) -> None:
        self.copied_args = self.copied_args or bool(args)
        super().after(delay_s, callback, *as_sent(args), priority=priority)
