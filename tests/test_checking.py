"""labkit.checking: stubs, scenario verdicts, reports and the wall-clock spy (lesson 00).

The "learner" functions below live in this file, outside labkit, so the checker treats
them as the learner's code, exactly as it treats a notebook cell.
"""
import inspect
import json
import os
import threading
import time

import pytest

import labkit as lk
from labkit import checking
from labkit.checking import Exercise, Fail, LocalContext, Report, Result, is_stub


# --- the learner's code -------------------------------------------------------------------------

def learner_divides(rate, latency):
    return rate / latency


def learner_schedules_in_the_past(answer_unused=None):
    sim = lk.Sim()
    sim.advance(5)
    sim.at(1, print)  # labkit raises, but the mistake is on this line


def stub_ellipsis(rate, latency):
    ...


def stub_pass(rate, latency):
    pass


def stub_docstring(rate, latency):
    """Return how many requests are in flight."""


class StubBreaker:
    """Every method is still a placeholder; __init__ was given as starter code."""

    def __init__(self, clock, failure_threshold=5):
        self.clock = clock
        self.failure_threshold = failure_threshold
        self.state = "closed"

    def allow_request(self):
        """True: make the call."""
        ...

    def on_success(self):
        pass

    def on_failure(self):
        ...


class HalfDoneBreaker(StubBreaker):
    def allow_request(self):
        return self.state != "open"

    def on_success(self):
        ...


def line_of(fn, text):
    """The line number of `text` inside the source of `fn`."""
    lines, first = inspect.getsourcelines(fn)
    (offset,) = [i for i, line in enumerate(lines) if text in line]
    return first + offset


# --- is_stub ------------------------------------------------------------------------------------

@pytest.mark.parametrize("answer", [
    ...,
    {"failure_threshold": ..., "recovery_timeout_s": 5},
    stub_ellipsis,
    stub_pass,
    stub_docstring,
    lambda rate, latency: ...,
    StubBreaker,
], ids=["ellipsis", "dict with ...", "def ...", "def pass", "def docstring", "lambda ...", "class"])
def test_untouched_starters_are_stubs(answer):
    assert is_stub(answer) is True


@pytest.mark.parametrize("answer", [
    learner_divides,
    lambda rate, latency: rate * latency,
    lambda: 0,
    HalfDoneBreaker,
    {"failure_threshold": 3, "recovery_timeout_s": 5},
    {},
    0,
    None,
    "...",
], ids=["def", "lambda", "lambda constant", "half-done class", "dict", "empty dict", "zero", "None", "string"])
def test_attempted_answers_are_not_stubs(answer):
    assert is_stub(answer) is False


# --- Exercise.run ---------------------------------------------------------------------------------

def exercise(*scenarios, **kwargs):
    """An unregistered exercise with the given (name, fn, points[, hidden]) scenarios."""
    ex = Exercise("t.1", "in flight", answer="in_flight", **kwargs)
    for name, fn, points, *hidden in scenarios:
        ex.scenario(name, points, *hidden)(fn)
    return ex


def passes(answer, ctx):
    return "looked fine"


def fails(answer, ctx):
    raise Fail("At 100 requests/s you predicted 2 in flight; the simulation measured 5.\nHow long does each stay?")


def calls_with_zero_latency(answer, ctx):
    answer(100, 0)


def test_a_stub_is_not_attempted_and_no_scenario_runs():
    ran = []
    ex = exercise(("a", lambda a, c: ran.append(a), 2), ("b", passes, 3), ("secret", passes, 5, True))
    report = ex.run(stub_ellipsis)
    assert ran == []
    assert [(r.scenario, r.status, r.points, r.max_points) for r in report.results] == [
        ("a", "not attempted", 0, 2), ("b", "not attempted", 0, 3)]
    assert report.status == "not attempted" and report.score == 0 and report.max_score == 5
    assert all(r.message == ex.stub_message for r in report.results)
    assert len(ex.run(..., include_hidden=True).results) == 3


def test_each_scenario_scores_its_points():
    ex = exercise(("good", passes, 2), ("bad", fails, 3))
    report = ex.run(learner_divides)
    good, bad = report.results
    assert good == Result("t.1", "good", "passed", 2, 2, "looked fine")
    assert (bad.status, bad.points, bad.max_points) == ("failed", 0, 3)
    assert bad.message.startswith("At 100 requests/s you predicted 2")
    assert report.score == 2 and report.max_score == 5 and report.status == "failed"


def test_a_learner_exception_fails_with_the_learners_function_and_line():
    (result,) = exercise(("zero latency", calls_with_zero_latency, 1)).run(learner_divides).results
    line = line_of(learner_divides, "return rate / latency")
    assert result.status == "failed"
    assert result.message == (f"Your code raised ZeroDivisionError: division by zero\n"
                              f"  (in learner_divides(), line {line}: return rate / latency)")


def test_an_error_raised_inside_labkit_by_the_learners_call_points_at_the_learners_line():
    ex = exercise(("schedules", lambda answer, ctx: answer(), 1))
    (result,) = ex.run(learner_schedules_in_the_past).results
    line = line_of(learner_schedules_in_the_past, "sim.at(1, print)")
    assert result.status == "failed"
    assert result.message.startswith("Your code raised ValueError: time_s must be >= now (5 s)")
    assert f"in learner_schedules_in_the_past(), line {line}: sim.at(1, print)" in result.message


def test_an_exception_from_labkits_own_code_is_an_error_not_the_learners_fault():
    # A scenario whose code lives under labkit/, as every lesson's checks do.
    source = "def broken_scenario(answer, ctx):\n    return {}['missing']\n"
    namespace = {}
    path = os.path.join(checking.exercise._LABKIT_DIR, "lessons", "broken", "exercises.py")
    exec(compile(source, path, "exec"), namespace)
    report = exercise(("broken", namespace["broken_scenario"], 1), ("fine", passes, 1)).run(learner_divides)
    broken, fine = report.results
    assert broken.status == "error"
    assert broken.message == "The checker itself failed (KeyError: 'missing'). This is a labkit bug: please report it."
    assert fine.passed  # one broken scenario does not stop the others
    assert report.status == "error"


def test_keyboard_interrupt_stops_the_run():
    ran = []

    def interrupted(answer, ctx):
        raise KeyboardInterrupt

    ex = exercise(("first", passes, 1), ("loops", interrupted, 1), ("never reached", lambda a, c: ran.append(1), 1))
    report = ex.run(learner_divides)
    assert [(r.scenario, r.status) for r in report.results] == [("first", "passed"), ("loops", "failed"),
                                                                 ("never reached", "failed")]
    assert "stuck in a loop" in report.results[1].message
    assert report.max_score == 3   # the scenarios not reached still count: 1/3, not 1/2
    assert ran == []


def test_hidden_scenarios_run_only_when_asked():
    ex = exercise(("visible", passes, 1), ("hidden", fails, 1, True))
    assert [r.scenario for r in ex.run(learner_divides).results] == ["visible"]
    hidden = ex.run(learner_divides, include_hidden=True).results[1]
    assert hidden.hidden and hidden.status == "failed"


def test_the_text_marks_hidden_results_and_says_whether_they_ran():
    public = exercise(("visible", passes, 1), ("secret", passes, 1, True))
    assert "Hidden checks, if any, run when your work is graded." in public.run(learner_divides).text()
    text = public.run(learner_divides, include_hidden=True).text()
    assert "✔ secret (hidden)" in text and "All checks passed, hidden ones included." in text


def test_every_scenario_gets_a_fresh_context():
    made = []

    def factory():
        made.append(LocalContext())
        return made[-1]

    seen = []
    ex = exercise(("a", lambda a, ctx: seen.append(ctx), 1), ("b", lambda a, ctx: seen.append(ctx), 1))
    ex.run(learner_divides, ctx_factory=factory)
    assert seen == made and seen[0] is not seen[1]


# --- Report -------------------------------------------------------------------------------------

def result(status, points=1, max_points=1, message=""):
    return Result("t.1", f"scenario {status}", status, points, max_points, message)


@pytest.mark.parametrize("statuses, expected", [
    (["passed", "passed"], "passed"),
    (["not attempted", "not attempted"], "not attempted"),
    (["passed", "failed"], "failed"),
    (["passed", "failed", "error"], "error"),
    (["not attempted", "passed"], "failed"),
])
def test_report_status_summarises_its_results(statuses, expected):
    assert Report("t.1", "x", [result(s) for s in statuses]).status == expected


def test_passed_report_text():
    report = Report("t.1", "in flight", [result("passed", 2, 2, "note"), result("passed", 1, 1)])
    assert report.text().splitlines() == [
        "Exercise t.1: in flight: 3/3 points",
        "  ✔ scenario passed",
        "  ✔ scenario passed",
        "  All checks passed. Hidden checks, if any, run when your work is graded.",
    ]
    assert repr(report) == report.text()


def test_failed_report_text_indents_each_message_line():
    report = Report("t.1", "in flight", [result("passed", 1.5, 1.5), result("failed", 0, 2, "saw 5\ntry again"),
                                         result("error", 0, 1, "checker broke")])
    assert report.text().splitlines() == [
        "Exercise t.1: in flight: 1.5/4.5 points",
        "  ✔ scenario passed",
        "  ✘ scenario failed",
        "      saw 5",
        "      try again",
        "  ! scenario error",
        "      checker broke",
    ]
    assert "border-left: 4px solid #b2182b" in report._repr_html_()


def test_report_html_wraps_between_words_at_the_notebooks_width_and_keeps_each_lines_indent():
    report = Report("t.1", "in <flight>", [result("failed", 0, 2, "you divided: a & b")])
    html = report._repr_html_()
    assert "<pre" not in html and "word-break: normal" in html  # JupyterLab breaks an output <pre> mid-word
    assert '<div style="padding-left: 0ch">Exercise t.1: in &lt;flight&gt;: 0/2 points</div>' in html
    assert '<div style="padding-left: 2ch">✘ scenario failed</div>' in html
    assert '<div style="padding-left: 6ch">you divided: a &amp; b</div>' in html


def test_not_attempted_report_text_says_what_to_do():
    report = Report("t.1", "in flight", [result("not attempted", 0, 1, "fill in the cell above")] * 2)
    assert report.text() == "Exercise t.1: in flight\n  - not attempted yet: fill in the cell above"


def test_to_dict_is_plain_json():
    report = Report("t.1", "in flight", [result("passed", 1, 1, "ok"), result("failed", 0, 2, "no")])
    data = json.loads(json.dumps(report.to_dict()))
    assert {k: data[k] for k in ("exercise", "title", "status", "score", "max_score")} == {
        "exercise": "t.1", "title": "in flight", "status": "failed", "score": 1, "max_score": 3}
    assert data["results"][1] == {"exercise": "t.1", "scenario": "scenario failed", "status": "failed",
                                  "points": 0, "max_points": 2, "message": "no", "hidden": False}


# --- LocalContext: the wall-clock spy -------------------------------------------------------------

CLOCKS = ("time", "monotonic", "perf_counter", "time_ns", "monotonic_ns", "perf_counter_ns")


def test_local_context_counts_wall_clock_reads_from_the_main_thread_only():
    real = {name: getattr(time, name) for name in CLOCKS}
    with LocalContext() as ctx:
        time.time(), time.monotonic(), time.perf_counter_ns()
        other = threading.Thread(target=lambda: [time.time() for _ in range(5)])
        other.start()
        other.join()
    assert ctx.wall_clock_reads == 3
    assert {name: getattr(time, name) for name in CLOCKS} == real


def test_local_context_restores_the_clocks_when_the_scenario_raises():
    real = {name: getattr(time, name) for name in CLOCKS}
    with pytest.raises(RuntimeError):
        with LocalContext():
            assert time.time is not real["time"]
            raise RuntimeError("scenario crashed")
    assert {name: getattr(time, name) for name in CLOCKS} == real


def test_a_scenario_sees_the_learners_clock_reads():
    def learner_uses_wall_clock(rate, latency):
        started = time.monotonic()
        return rate * latency + 0 * (time.time() - started)

    def no_wall_clock(answer, ctx):
        answer(10, 0.1)
        if ctx.wall_clock_reads:
            raise Fail(f"Your code read the wall clock {ctx.wall_clock_reads} times; use the simulation's clock.")

    real_time = time.time
    report = exercise(("virtual time only", no_wall_clock, 1)).run(learner_uses_wall_clock)
    assert report.results[0].message == "Your code read the wall clock 2 times; use the simulation's clock."
    assert time.time is real_time
    assert exercise(("virtual time only", no_wall_clock, 1)).run(learner_divides).status == "passed"


# --- check --------------------------------------------------------------------------------------

def test_check_with_an_unknown_id_lists_the_known_ones(monkeypatch):
    monkeypatch.delenv("LABKIT_GRADING_CHILD", raising=False)
    with pytest.raises(ValueError, match=r"exercise_id must be one of .*00\.1, .*03\.1.*; got 'nope'"):
        lk.check("nope", learner_divides)


def test_check_is_silent_inside_the_grading_child(monkeypatch):
    monkeypatch.setenv("LABKIT_GRADING_CHILD", "1")
    assert lk.check("00.1", learner_divides) is None


def test_a_title_that_is_a_question_is_not_followed_by_a_colon():
    """'in flight?: 0/1 points' read as a typo to a learner."""
    assert Report("t.1", "how many in flight?", [result("passed")]).text().splitlines()[0] == \
        "Exercise t.1: how many in flight? 1/1 points"
