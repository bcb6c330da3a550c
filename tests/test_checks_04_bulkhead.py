"""The bulkhead checks against the solution, the untouched lesson, and plausible wrong answers.

Each wrong answer is a small mutation of the solution, and each must fail with the message
written for that mistake.
"""
import random

import pytest

import labkit as lk
from labkit.service import executor_timeline
from support import assert_every_check, cell_defining, mutate, run_cells

LESSON = "04_bulkhead"
EXERCISES = [("04.1", "Bulkhead"), ("04.2", "timeline"), ("04.3", "SIZING"), ("04.4", "ANSWER"),
             ("04.5", "AIMDLimiter")]
BULKHEAD = cell_defining("solutions", LESSON, "Bulkhead")
TIMELINE = cell_defining("solutions", LESSON, "timeline")
SIZING = cell_defining("solutions", LESSON, "SIZING")
AIMD = cell_defining("solutions", LESSON, "AIMDLimiter")


def messages(report):
    return "\n".join(r.message for r in report.results if not r.passed)


def test_solution_passes_every_check():
    ns = run_cells(BULKHEAD, TIMELINE, SIZING, cell_defining("solutions", LESSON, "ANSWER"), AIMD)
    assert_every_check(ns, EXERCISES, "passed")


def test_untouched_lesson_is_not_attempted():
    ns = run_cells(*(cell_defining("lessons", LESSON, name) for _, name in EXERCISES))
    assert_every_check(ns, EXERCISES, "not attempted")


WRONG_BULKHEADS = {
    "no limit at all": (
        "if self.in_use < self.max_concurrent_calls and not self.waiting:",
        "if True:",
        "Count the permits in use and refuse a call when all are taken"),
    "one permit too many": (
        "if self.in_use < self.max_concurrent_calls and not self.waiting:",
        "if self.in_use <= self.max_concurrent_calls and not self.waiting:",
        "Count the permits in use and refuse a call when all are taken"),
    "never waits": (
        "elif self.max_wait_s > 0:",
        "elif False:",
        "With max_wait_s > 0 a call waits up to max_wait_s"),
    "waiters served last come, first served": (
        "waiter = self.waiting.popleft()",
        "waiter = self.waiting.pop()",
        "Serve waiters first come, first served"),
    "waiters never started when a permit comes back": (
        """            while self.waiting and self.in_use < self.max_concurrent_calls:""",
        """            while False:""",
        "When a call is done, start the oldest waiter at once"),
    "a waiter whose wait ran out is never rejected": (
        """            waiter[1]("rejected")""",
        """            pass""",
        "never got a reply"),
    "a waiter whose wait ran out still runs later": (
        """            waiter[2] = False
            self.waiting.remove(waiter)
            waiter[1]("rejected")""",
        """            waiter[1]("rejected")""",
        "once its wait is over it must be rejected, not run later"),
    "a rejected waiter gives back a permit": (
        """            self.waiting.remove(waiter)""",
        """            self.waiting.remove(waiter)
            self.in_use -= 1""",
        "the rejected waiter gave back a permit it never held"),
    "permit kept after an error": (
        """            returned = True
            self.in_use -= 1""",
        """            returned = True
            if outcome == "ok":
                self.in_use -= 1""",
        "the permit was only given back on success"),
    "exception escapes": (
        """        try:
            work(done)
        except Exception:
            done("error")""",
        """        work(done)""",
        "catch it, give the permit back, and reply('error')"),
    "permit given back twice": (
        """            if returned:
                return
""",
        "",
        "gave back a permit that was not held"),
    "the caller told through work": (
        """            waiter[1]("rejected")""",
        """            waiter[0]("rejected")""",
        "The caller hears the outcome (or 'rejected') through reply, never through work"),
    "replies before the permit is back": (
        """            self.in_use -= 1
            reply(outcome)""",
        """            reply(outcome)
            self.in_use -= 1""",
        "Give the permit back before you reply"),
    "a new call barges past the waiters": (
        "if self.in_use < self.max_concurrent_calls and not self.waiting:",
        "if self.in_use < self.max_concurrent_calls:",
        "a new call waits behind those already waiting"),
    "the permit counted after the work returns": (
        """        self.in_use += 1
        returned = False""",
        """        returned = False""",
        "Take the permit before you call work(done)"),
    "the except branch ignores that done already ran": (
        """        except Exception:
            done("error")""",
        """        except Exception:
            self.in_use -= 1
            reply("error")""",
        "reply exactly once"),
    "the waiter passed through clock.after, which copies it when graded": (
        "self.clock.after(self.max_wait_s, lambda: self._give_up(waiter))",
        "self.clock.after(self.max_wait_s, self._give_up, waiter)",
        "they arrive as copies"),
    "rejects with another word": (
        """        else:
            reply("rejected")""",
        """        else:
            reply("full")""",
        "should be told 'rejected' at once"),
}


@pytest.mark.parametrize("mistake", list(WRONG_BULKHEADS))
def test_wrong_bulkhead_fails_with_its_message(mistake):
    old, new, expected = WRONG_BULKHEADS[mistake]
    source = mutate(BULKHEAD, old, new)
    if mistake == "the permit counted after the work returns":
        source = mutate(source, """            done("error")\n""", """            done("error")\n        self.in_use += 1\n""")
    report = lk.check("04.1", run_cells(source)["Bulkhead"])
    assert report.status == "failed", report.text()
    assert expected in messages(report), report.text()


# A fresh-eyes review found these named wrongly by a check other than their own: each check's message must
# name what the trace shows, not the first symptom.
NAMED_FROM_THE_TRACE = {
    "waiters served last come, first served": (
        "waiter = self.waiting.popleft()", "waiter = self.waiting.pop()",
        "The last waiter got a permit before the one sent ahead of it", "Take the permit before"),
    "one permit too many": (
        "if self.in_use < self.max_concurrent_calls and not self.waiting:",
        "if self.in_use <= self.max_concurrent_calls and not self.waiting:",
        "A fresh bulkhead with max_concurrent_calls=1 also ran 2 calls", "Take the permit before"),
    "rejected at once whatever max_wait_s": (
        "elif self.max_wait_s > 0:", "elif False:", "None of them waited", "Take the permit before"),
    "max_wait_s=0 rejected from a timer": (
        "elif self.max_wait_s > 0:", "elif True:", "only after call() had returned, from a timer",
        "Does it read the time"),
    "no timer ends a wait": (
        "            self.clock.after(self.max_wait_s, lambda: self._give_up(waiter))\n", "",
        "does a timer, clock.after(max_wait_s, ...), end its wait?", "Does it read the time"),
    # fresh4 04.1 w8: a waiter that started at once was told it started late.
    "one permit too many, seen by the waiters": (
        "if self.in_use < self.max_concurrent_calls and not self.waiting:",
        "if self.in_use <= self.max_concurrent_calls and not self.waiting:",
        "the one sent at t=0.10 s started at t=0.10 s, before its permit came back at t=0.50 s",
        "after its permit came back"),
    # fresh4 04.1 w10: new calls barge past waiters, whom a timer wakes 1 ms after the permit comes back; it was
    # told to take the permit before calling work(done), which it did.
    "waiters woken by a timer, new calls barging past them": (
        """            while self.waiting and self.in_use < self.max_concurrent_calls:
                waiter = self.waiting.popleft()
                waiter[2] = False
                self._start(waiter[0], waiter[1])""",
        """            def wake():
                while self.waiting and self.in_use < self.max_concurrent_calls:
                    waiter = self.waiting.popleft()
                    waiter[2] = False
                    self._start(waiter[0], waiter[1])
            self.clock.after(0.001, wake)""",
        "got it first: it barged past a call that was already waiting", "Take the permit before"),
}


@pytest.mark.parametrize("mistake", list(NAMED_FROM_THE_TRACE))
def test_wrong_bulkhead_is_named_from_the_trace(mistake):
    old, new, expected, wrong_cause = NAMED_FROM_THE_TRACE[mistake]
    source = mutate(BULKHEAD, old, new)
    if mistake == "waiters woken by a timer, new calls barging past them":
        source = mutate(source, "if self.in_use < self.max_concurrent_calls and not self.waiting:",
                        "if self.in_use < self.max_concurrent_calls:")
    report = lk.check("04.1", run_cells(source)["Bulkhead"])
    assert report.status == "failed", report.text()
    assert expected in messages(report), report.text()
    assert wrong_cause not in messages(report), report.text()


def test_a_late_wake_up_names_each_waiter_late_by_the_millisecond():
    source = mutate(BULKHEAD, NAMED_FROM_THE_TRACE["waiters woken by a timer, new calls barging past them"][0],
                    NAMED_FROM_THE_TRACE["waiters woken by a timer, new calls barging past them"][1])
    text = messages(lk.check("04.1", run_cells(source)["Bulkhead"]))
    assert "started at t=0.501 s, 1 ms after its permit came back at t=0.50 s" in text, text
    assert "A waiter is not started when the permit comes back" in text, text
    assert "barged" not in text, text   # new calls wait behind the waiters here: only the late wake-up is named


def test_labkit_pool_is_not_accepted_as_a_bulkhead():
    report = lk.check("04.1", lk.WorkerPool)
    assert report.score == 0 and "labkit's own pool" in messages(report)


def test_solution_timeline_matches_the_reference_on_random_arrivals():
    timeline = run_cells(TIMELINE, names={"deque": __import__("collections").deque})["timeline"]
    rng = random.Random(4)
    for _ in range(300):
        core = rng.randint(1, 3)
        mx = rng.randint(core, 5)
        cap = rng.randint(0, 3)
        t, tasks = 0.0, []
        for _ in range(rng.randint(1, 15)):
            t += rng.choice([0.0, 0.01, 0.05, 0.3])
            tasks.append((round(t, 3), rng.choice([0.05, 0.1, 0.4])))
        want = executor_timeline(core, mx, cap, tasks)
        got = timeline(core, mx, cap, tasks)
        assert [a for a, _ in got] == [a for a, _ in want], (core, mx, cap, tasks)
        assert all((s is None and w is None) or abs(s - w) < 1e-9 for (_, s), (_, w) in zip(got, want))


WRONG_TIMELINES = {
    "one queued task handed out per arrival": (
        """        while queue:
            i = min(range(len(free_at)), key=free_at.__getitem__)""",
        """        if queue:
            i = min(range(len(free_at)), key=free_at.__getitem__)""",
        "one thread drains a queue of two between arrivals"),
    "newest queued task first between arrivals": (
        """            j = queue.popleft()
            out[j] = ("queue", free_at[i])""",
        """            j = queue.pop() if until < math.inf else queue.popleft()
            out[j] = ("queue", free_at[i])""",
        "one thread drains a queue of two between arrivals"),
    "grows to max before queueing": (
        """        elif len(queue) < queue_capacity:
            queue.append(k)
        elif len(free_at) < max_threads:
            free_at.append(arrival + service)
            out[k] = ("extra", arrival)""",
        """        elif len(free_at) < max_threads:
            free_at.append(arrival + service)
            out[k] = ("extra", arrival)
        elif len(queue) < queue_capacity:
            queue.append(k)""",
        "Java starts a thread beyond core only when the queue is full"),
    "never starts extra threads": (
        """        elif len(free_at) < max_threads:""",
        """        elif False:""",
        "The queue was full, but fewer than max_threads threads existed: a new thread starts"),
    "the extra thread takes the oldest queued task": (
        """            free_at.append(arrival + service)
            out[k] = ("extra", arrival)""",
        """            j = queue.popleft()
            queue.append(k)
            free_at.append(arrival + tasks[j][1])
            out[j] = ("extra", arrival)""",
        "not the oldest queued one"),
    "idle threads ignored": (
        """        elif free_at and min(free_at) <= arrival:""",
        """        elif False:""",
        "A thread was free (or fewer than core threads existed)"),
    "a thread freed at an arrival skips the queue": (
        """            if free_at[i] > until:""",
        """            if free_at[i] >= until:""",
        "a thread frees at the moment a task arrives"),
    "a thread freed at an arrival is not idle": (
        """        elif free_at and min(free_at) <= arrival:""",
        """        elif free_at and min(free_at) < arrival:""",
        "a thread frees at the moment a task arrives"),
}


def test_a_thread_that_frees_at_an_arrival_counted_busy_is_named():
    """A fresh-eyes variant: a thread finishing at the arrival instant is busy, for the queue and for the arrival.
    The message names the instant, not Java's queue-before-extra rule."""
    source = mutate(mutate(TIMELINE, "            if free_at[i] > until:", "            if free_at[i] >= until:"),
                    "        elif free_at and min(free_at) <= arrival:", "        elif free_at and min(free_at) < arrival:")
    report = lk.check("04.2", run_cells(source, names={"deque": __import__("collections").deque})["timeline"])
    assert report.status == "failed", report.text()
    assert "the instant task 2 arrives" in messages(report), report.text()
    assert "Java starts a thread beyond core only when the queue is full" not in messages(report), report.text()


@pytest.mark.parametrize("mistake", list(WRONG_TIMELINES))
def test_wrong_timeline_fails_with_its_message(mistake):
    old, new, expected = WRONG_TIMELINES[mistake]
    fn = run_cells(mutate(TIMELINE, old, new), names={"deque": __import__("collections").deque})["timeline"]
    report = lk.check("04.2", fn)
    assert report.status == "failed", report.text()
    assert expected in messages(report), report.text()


def _sizing(**change):
    sizing = dict(checkout_workers=12, product_workers=14, reporting_workers=14, max_wait_s=0.0)
    sizing.update(change)
    return sizing


WRONG_SIZINGS = {
    "checkout starved": (dict(checkout_workers=6, product_workers=20), "is too small for its bursts"),
    "product starved on a healthy day": (dict(checkout_workers=14, product_workers=8, reporting_workers=18),
                                         "rejects its own ordinary bursts"),
    "product waits too long": (dict(max_wait_s=0.5), "a long max_wait_s holds a request thread"),
    "reporting starved": (dict(product_workers=24, reporting_workers=4), "its slow queries need more"),
    "over the budget": (dict(checkout_workers=20), "the budget is 40"),
    "a fraction of a worker": (dict(checkout_workers=12.5), "a whole number of workers"),
}


@pytest.mark.parametrize("mistake", list(WRONG_SIZINGS))
def test_wrong_sizing_fails_with_its_message(mistake):
    change, expected = WRONG_SIZINGS[mistake]
    report = lk.check("04.3", _sizing(**change))
    assert report.status == "failed", report.text()
    assert expected in messages(report), report.text()


@pytest.mark.parametrize("letter", ["a", "c", "d"])
def test_each_wrong_choice_has_its_own_feedback(letter):
    report = lk.check("04.4", letter)
    assert report.status == "failed"
    assert messages(report) and messages(report) not in {messages(lk.check("04.4", x)) for x in "acd" if x != letter}


def test_every_percentage_in_the_prose_is_an_output_a_reader_can_see():
    import re

    from support import notebook

    nb = notebook("solutions", LESSON)
    prose = "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")
    shown = "\n".join(str(o.get("text", "")) + str(o.get("data", {}).get("text/plain", ""))
                      for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))
    claims = set(re.findall(r"(\d+\.\d) %", prose.replace("**", "")))
    assert len(claims) >= 8
    missing = sorted(c for c in claims if f"{c} %" not in shown)
    assert not missing, f"percentages in the prose that no output shows: {missing}"


WRONG_LIMITERS = {
    "never grows": ("            self.limit += 1 / self.limit", "            pass", "Does every success raise the limit"),
    "never shrinks": ("            self.limit = max(1.0, self.limit * 0.9)", "            pass",
                      "Does a refused call (ok=False) cut the limit"),
    "admits one too many": ("        if self.in_flight < self.limit:", "        if self.in_flight <= self.limit:",
                            "admitted 7 of 9 calls"),
    "halves on a refusal": ("            self.limit = max(1.0, self.limit * 0.9)",
                            "            self.limit = max(1.0, self.limit * 0.5)", "Halving"),
    "+2 on every success": ("            self.limit += 1 / self.limit", "            self.limit += 2",
                            "A raise larger than that outgrows any cut"),
    "initial_limit ignored": ("        self.limit = initial_limit", "        self.limit = 4",
                              "the limit starts at the initial_limit it is given"),
    "additive decrease": ("            self.limit = max(1.0, self.limit * 0.9)",
                          "            self.limit = max(1.0, self.limit - 1)", "taking off a fixed amount is additive"),
    "a refused acquire counted in flight": ("            return True\n        return False",
                                            "            return True\n        self.in_flight += 1\n        return False",
                                            "Only admitted calls are in flight"),
    "a refused call never leaves flight": ("        self.in_flight -= 1\n        if ok:",
                                           "        if ok:\n            self.in_flight -= 1",
                                           "release(False) counts it out"),
    "the limit grows on acquire": ("            self.in_flight += 1\n            return True",
                                   "            self.in_flight += 1\n            self.limit += 0.1\n            return True",
                                   "only release() should move the limit"),
    "an unbounded limit": ("            self.limit += 1 / self.limit", '            self.limit = float("inf")',
                           "limiter.limit should be a finite number"),
    # fresh4 04.5 w3 passed, w6 was told about release(False).
    "multiplicative increase": ("            self.limit += 1 / self.limit", "            self.limit *= 1.1",
                                "the raise grows with the limit, so it multiplies. AIMD's increase is additive"),
    "a small multiplicative increase": ("            self.limit += 1 / self.limit", "            self.limit *= 1.01",
                                        "the raise grows with the limit, so it multiplies"),
    "+2 on every success, told at once": ("            self.limit += 1 / self.limit", "            self.limit += 2",
                                          "more than 1 per success. AIMD's increase is additive and small"),
    "the cut rounds the limit down to 0": ("            self.limit = max(1.0, self.limit * 0.9)",
                                           "            self.limit = int(self.limit * 0.9)",
                                           "its limit fell to 0.00, below one call"),
    "the cut has no floor": ("            self.limit = max(1.0, self.limit * 0.9)",
                             "            self.limit = self.limit * 0.5 if self.limit > 1 else 0",
                             "Keep the cut from taking the limit below 1"),
}


@pytest.mark.parametrize("mistake", list(WRONG_LIMITERS))
def test_wrong_limiter_fails_with_its_message(mistake):
    old, new, expected = WRONG_LIMITERS[mistake]
    report = lk.check("04.5", run_cells(mutate(AIMD, old, new))["AIMDLimiter"])
    assert report.status == "failed", report.text()
    assert expected in messages(report), report.text()


NETFLIX_AIMD = """
class AIMDLimiter:
    def __init__(self, clock, initial_limit=4):
        self.clock = clock
        self.limit = initial_limit
        self.in_flight = 0
    def acquire(self):
        if self.in_flight >= int(self.limit):
            return False
        self.in_flight += 1
        return True
    def release(self, ok):
        busy = self.in_flight
        self.in_flight -= 1
        if not ok:
            self.limit = max(1, int(self.limit * 0.9))
        elif busy * 2 >= self.limit:
            self.limit = self.limit + 1
"""


@pytest.mark.parametrize("design", ["netflix", "plus one"])
def test_the_cited_librarys_aimd_rule_passes(design):
    """The prompt cites concurrency-limits: its +1 (while half the limit is in flight, a whole-number limit) is a
    little, and so is a bare +1 per success; both settle within 2.5 x what the server holds."""
    source = NETFLIX_AIMD if design == "netflix" else mutate(AIMD, "            self.limit += 1 / self.limit",
                                                              "            self.limit += 1")
    report = lk.check("04.5", run_cells(source)["AIMDLimiter"])
    assert report.status == "passed", report.text()
