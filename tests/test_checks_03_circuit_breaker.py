"""The circuit-breaker checks against the solution, the untouched lesson, and plausible wrong answers.

Each wrong answer is a small mutation of the solution, so it stays plausible as the
solution evolves, and each must fail with the message written for that mistake.
"""
import re

import pytest

import labkit as lk
from support import assert_every_check, cell_defining, mutate, run_cells

LESSON = "03_circuit_breaker"
EXERCISES = [("03.1", "CircuitBreaker"), ("03.2", "TrialLimitedBreaker"), ("03.3", "TUNING"), ("03.4", "ANSWER")]
BREAKER = cell_defining("solutions", LESSON, "CircuitBreaker")
LIMITED = cell_defining("solutions", LESSON, "TrialLimitedBreaker")


def breaker_class(source=BREAKER):
    return run_cells(source)["CircuitBreaker"]


def limited_class(source=LIMITED, base=BREAKER):
    return run_cells(base, source)["TrialLimitedBreaker"]


def messages(report):
    return "\n".join(r.message for r in report.results if not r.passed)


def test_solution_passes_every_check():
    ns = run_cells(BREAKER, LIMITED, cell_defining("solutions", LESSON, "TUNING"),
                   cell_defining("solutions", LESSON, "ANSWER"))
    assert_every_check(ns, EXERCISES, "passed")


def test_untouched_lesson_is_not_attempted():
    ns = run_cells(*(cell_defining("lessons", LESSON, name) for _, name in EXERCISES))
    assert_every_check(ns, EXERCISES, "not attempted")


WRONG_BREAKERS = {
    "never half-opens": (
        """            if self.clock.now - self.opened_at < self.recovery_timeout_s:
                return False
            self.state = "half_open\"""",
        """            return False""",
        "would stay open forever"),
    "never counts failures in half-open": (
        """        if self.state == "half_open":
            self.state, self.opened_at = "open", self.clock.now
        elif self.state == "closed":""",
        """        if self.state == "closed":""",
        "In 'half_open' any failure is proof the service is still down"),
    "forgets to reset the failure count on success": (
        """        elif self.state == "closed":
            self.failures = 0
""",
        "",
        "although there were never 3 failures in a row"),
    "uses wall-clock time": (
        """        self.clock = clock
""",
        """        import time
        self.clock = type("WallClock", (), {"now": property(lambda _: time.monotonic())})()
""",
        "Your code read the wall clock"),
    "opens one failure late": (
        "if self.failures >= self.failure_threshold:",
        "if self.failures > self.failure_threshold:",
        "it should open on the 3rd"),
    "keeps old failures after closing": (
        """                self.state = "closed"
                self.failures = 0""",
        """                self.state = "closed\"""",
        "Reset the count when it closes"),
    "re-opens without restarting the timeout": (
        """        if self.state == "half_open":
            self.state, self.opened_at = "open", self.clock.now""",
        """        if self.state == "half_open":
            self.state = "open\"""",
        "re-opening should restart the timeout"),
    "names states in capitals": (
        """                return False
            self.state = "half_open\"""",
        """                return False
            self.state = "HALF_OPEN\"""",
        "state should be one of 'closed', 'open', 'half_open'"),
    "crashes in allow_request": (
        """        if self.state == "open":
            if self.clock.now""",
        """        if self.state == "open":
            1 / 0
            if self.clock.now""",
        "Your code raised ZeroDivisionError: division by zero\n  (in allow_request(), line"),
    # Kinds a fresh-eyes review found passing, or named wrongly.
    "half-opens on a timer, with no call": (
        """    def allow_request(self):""",
        """    def _half_open(self):
        if self.state == "open":
            self.state, self.successes = "half_open", 0

    def allow_request(self):""",
        "The move is lazy"),
    "a hard-coded failure threshold": (
        "if self.failures >= self.failure_threshold:",
        "if self.failures >= 5:",
        "it ignores the failure_threshold it is given"),
    "renames a parameter": (
        "def __init__(self, clock, failure_threshold=5,",
        "def __init__(self, clock, max_failures=5,",
        "Keep the parameter names of the starter cell"),
    # fresh4 03.1 w1: the message names the boundary's behaviour, not an operator the learner may not have written.
    "refuses the call exactly recovery_timeout_s after opening": (
        "if self.clock.now - self.opened_at < self.recovery_timeout_s:",
        "if self.clock.now - self.opened_at <= self.recovery_timeout_s:",
        "the timeout is over once now - opened_at reaches recovery_timeout_s, not only once it is exceeded"),
}


@pytest.mark.parametrize("mistake", list(WRONG_BREAKERS))
def test_wrong_breaker_fails_with_its_message(mistake):
    old, new, expected = WRONG_BREAKERS[mistake]
    source = mutate(BREAKER, old, new)
    if mistake == "half-opens on a timer, with no call":
        source = re.sub(r"( +)(self.state, self.opened_at = \"open\", self.clock.now)",
                        r"\1\2\n\1self.clock.after(self.recovery_timeout_s, self._half_open)", source)
    if mistake == "renames a parameter":
        source = source.replace("self.failure_threshold = failure_threshold", "self.failure_threshold = max_failures")
    report = lk.check("03.1", breaker_class(source))
    assert report.status == "failed", report.text()
    assert expected in messages(report), report.text()


def test_labkit_breaker_is_not_accepted_as_an_answer():
    report = lk.check("03.1", lk.CircuitBreaker)
    assert report.score == 0
    assert "labkit's own breaker" in messages(report)


WRONG_LIMITED = {
    "half-open admits everything": (
        lambda src: src.split("    def allow_request")[0],
        "That is the half-open stampede"),
    "never frees a trial slot": (
        lambda src: mutate(src, "            self.trials_in_flight -= 1\n", "            pass\n"),
        "the finished trial's slot was never given back"),
    "late successes close it": (
        lambda src: mutate(src, """        if self.state == "half_open":
            self.trials_in_flight -= 1
        super().on_success()""", """        if self.state == "open":
            self.state = "half_open"
        if self.state == "half_open":
            self.trials_in_flight -= 1
        super().on_success()"""),
        "while 'open', on_success() changes nothing"),
    # Kinds a fresh-eyes review found passing: exercise 1's rules, broken only in the subclass.
    "a late failure while open restarts the timeout": (
        lambda src: src + """
    def on_failure(self):
        if self.state == "open":
            self.opened_at = self.clock.now
        super().on_failure()
""", "the late failure restarted the timeout"),
    "a late success while open is counted for the next round": (
        lambda src: src.replace("""        super().on_success()""", """        if self.state == "open":
            self.successes += 1
            return
        super().on_success()""").replace("""        was_open = self.state == "open"
        if not super().allow_request():""", """        was_open = self.state == "open"
        kept = self.successes
        if not super().allow_request():""").replace("""        if was_open:                      # a new round of trials starts
            self.trials_in_flight = 0""", """        if was_open:                      # a new round of trials starts
            self.trials_in_flight = 0
            self.successes = kept"""),
        "the success from the earlier round was still counted"),
    "successes that arrive while open are carried into the next round": (
        lambda src: src.replace("""        super().on_success()""", """        if self.state == "open":
            self.carried = getattr(self, "carried", 0) + 1
        super().on_success()""").replace("""            self.trials_in_flight = 0""", """            self.trials_in_flight = 0
            self.successes, self.carried = getattr(self, "carried", 0), 0"""),
        "the successes that arrived while 'open' were counted towards it"),
    "the trial limit applied while closed": (
        lambda src: mutate(src, """        if self.state != "half_open":
            return True
""", ""),
        "The trial limit is for 'half_open' only"),
    "a refused call re-opens the breaker": (
        lambda src: mutate(src, """        if self.trials_in_flight >= self.half_open_max_calls:
            return False""", """        if self.trials_in_flight >= self.half_open_max_calls:
            self.state, self.opened_at = "open", self.clock.now
            return False"""),
        "A call refused because the trial slots are full is only refused"),
    # fresh4 03.2 w8: a success frees its slot only if no other trial is in flight, so fewer trials run than allowed.
    "a success frees its slot only when it was the last trial out": (
        lambda src: mutate(src, """        if self.state == "half_open":
            self.trials_in_flight -= 1
        super().on_success()""", """        if self.state == "half_open" and self.successes + 1 >= self.trials_in_flight:
            self.trials_in_flight -= 1
        super().on_success()"""),
        "let none of them through, so only 1 trial was in flight where 2 are allowed"),
    # fresh4 03.2 w4: the message names which of exercise 1's rules the subclass broke.
    "successes that arrive while open close it": (
        lambda src: mutate(src, """        super().on_success()""", """        if self.state == "open":
            self.successes += 1
            if self.successes >= self.success_threshold:
                self.state = "closed"
            return
        super().on_success()"""),
        "breaks a rule of exercise 1, outcomes that arrive while 'open' change nothing"),
}


def test_a_hard_coded_threshold_is_not_blamed_on_the_reset():
    report = lk.check("03.1", breaker_class(mutate(BREAKER, "if self.failures >= self.failure_threshold:",
                                                    "if self.failures >= 5:")))
    assert "the reset is not the cause" in messages(report), report.text()
    assert "no lower" not in messages(report), report.text()


def test_opening_one_failure_late_is_not_blamed_on_the_reset():
    report = lk.check("03.1", breaker_class(mutate(BREAKER, "if self.failures >= self.failure_threshold:",
                                                    "if self.failures > self.failure_threshold:")))
    assert "It opened one failure late for every threshold" in messages(report), report.text()
    assert "a fresh breaker, too, opens only on the 4th failure" in messages(report), report.text()
    assert "no lower" not in messages(report), report.text()


@pytest.mark.parametrize("mistake", list(WRONG_LIMITED))
def test_wrong_trial_limit_fails_with_its_message(mistake):
    change, expected = WRONG_LIMITED[mistake]
    report = lk.check("03.2", limited_class(change(LIMITED)))
    assert report.status == "failed", report.text()
    assert expected in messages(report), report.text()


def test_a_fresh_class_with_total_trial_semantics_also_passes():
    """A correct alternative design: count trials per half-open round (resilience4j's permits), written from scratch."""
    source = '''
class TrialLimitedBreaker:
    def __init__(self, clock, failure_threshold=5, recovery_timeout_s=10.0, success_threshold=1,
                 half_open_max_calls=1):
        self.clock, self.limit = clock, failure_threshold
        self.timeout, self.needed, self.permits_max = recovery_timeout_s, success_threshold, half_open_max_calls
        self.state, self.streak, self.since, self.permits, self.wins = "closed", 0, 0.0, 0, 0

    def allow_request(self):
        if self.state == "open" and self.clock.now - self.since >= self.timeout:
            self.state, self.permits, self.wins = "half_open", max(self.permits_max, self.needed), 0
        if self.state == "open":
            return False
        if self.state == "half_open":
            if self.permits == 0:
                return False
            self.permits -= 1
        return True

    def on_success(self):
        if self.state == "closed":
            self.streak = 0
        elif self.state == "half_open":
            self.wins += 1
            if self.wins >= self.needed:
                self.state, self.streak = "closed", 0

    def on_failure(self):
        if self.state == "half_open" or (self.state == "closed" and self.streak + 1 >= self.limit):
            self.state, self.since = "open", self.clock.now
        elif self.state == "closed":
            self.streak += 1
'''
    report = lk.check("03.2", run_cells(source)["TrialLimitedBreaker"])
    assert report.status == "passed", report.text()
    assert lk.check("03.1", run_cells(source)["TrialLimitedBreaker"]).status == "passed"


@pytest.mark.parametrize("tuning, expected", [
    (dict(failure_threshold=1, recovery_timeout_s=2.0, success_threshold=1), "trips on bad luck"),
    # The eight runs happen to see no run of 4 failures; the odds say one comes every few minutes.
    (dict(failure_threshold=4, recovery_timeout_s=2.0, success_threshold=1), "but that was luck"),
    (dict(failure_threshold=6, recovery_timeout_s=15.0, success_threshold=1), "to return to normal"),
    # fresh4 03.3 w4: runs that never recover are counted in one clause, the target in its own.
    (dict(failure_threshold=5, recovery_timeout_s=30, success_threshold=1),
     "before the run ended in 2 of 8 runs, seed 13 among them; the target is 4 s on average"),
    (dict(failure_threshold=200, recovery_timeout_s=2.0, success_threshold=1), "reached the dead service"),
    (dict(failure_threshold=3, recovery_timeout_s=1.0, success_threshold=15), "closed and then opened again"),
    (dict(failure_threshold=6, recovery_timeout_s=-1, success_threshold=1),
     "labkit's breaker rejected your TUNING: recovery_timeout_s must be > 0"),
    (dict(threshold=6), "TUNING should be a dict with exactly the keys"),
])
def test_wrong_tuning_fails_with_its_message(tuning, expected):
    report = lk.check("03.3", tuning)
    assert report.status == "failed"
    assert expected in messages(report), report.text()


def test_a_breaker_that_flaps_after_the_outage_is_not_told_to_shorten_its_timeout():
    # Slow recovery from re-opening on ordinary errors is the threshold's fault, not the timeout's.
    report = lk.check("03.3", dict(failure_threshold=3, recovery_timeout_s=1.0, success_threshold=15))
    text = messages(report)
    assert "failure_threshold=3 trips on bad luck" in text and "set how long that takes" not in text, report.text()
    assert "seed 1" in text


@pytest.mark.parametrize("tuning", [
    dict(failure_threshold=5, recovery_timeout_s=1.0, success_threshold=2),
    dict(failure_threshold=10, recovery_timeout_s=0.5, success_threshold=1),
])
def test_other_good_tunings_pass(tuning):
    assert lk.check("03.3", tuning).status == "passed"


@pytest.mark.parametrize("choice, expected", [
    ("a", "Reading .state does not move it"),
    ("c", "starts no timer and no thread of its own"),
    ("d", "a quiet spell with no calls is not a success"),
    ("z", "ANSWER should be one of"),
])
def test_each_wrong_concept_answer_gets_its_own_feedback(choice, expected):
    report = lk.check("03.4", choice)
    assert report.status == "failed"
    assert expected in messages(report)
