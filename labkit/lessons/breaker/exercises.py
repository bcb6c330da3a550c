"""Exercises of lesson 03, circuit breaker: scenarios and the messages each mistake earns."""
from __future__ import annotations

import contextvars
import math

from labkit.checking import Exercise, Fail, clock_hint, concept_question, construct, counted, refuse_reference, register
from labkit.clock import Sim
from labkit.lessons.breaker.model import simulate
from labkit.resilience import STATES, CircuitBreaker


# Settings every _Bench adds while exercise 2 replays exercise 1's scenarios (half_open_max_calls).
_EXTRA_SETTINGS: contextvars.ContextVar[dict] = contextvars.ContextVar("extra_settings", default={})


class _Bench:
    """A scripted caller: sends calls at chosen virtual times with chosen outcomes to one breaker."""

    def __init__(self, Breaker, seed: int = 0, **settings):
        refuse_reference(Breaker, CircuitBreaker, "lk.CircuitBreaker", "breaker")
        settings = {**settings, **_EXTRA_SETTINGS.get()}
        self.sim = Sim(seed)
        self.settings = settings
        call = ", ".join(f"{k}={v!r}" for k, v in settings.items())
        self.breaker = construct(Breaker, self.sim, shown=f"clock, {call}", **settings)
        self.reached = 0
        self.opened_at: float | None = None

    @property
    def state(self) -> str:
        state = self.breaker.state
        if isinstance(state, str):
            state = str.__str__(state)  # a plain copy: a str subclass cannot bend == to match every state
        if type(state) is not str or state not in STATES:
            raise Fail(f"state should be one of {', '.join(map(repr, STATES))}; yours was {state!r}.")
        return state

    def call(self, ok: bool, duration_s: float = 0.05) -> bool:
        """One call now: True if the breaker let it through; its outcome lands `duration_s` later."""
        admitted = bool(self.breaker.allow_request())
        if admitted and self.state == "open":
            raise Fail(f"At t={self.sim.now:.2f} s your breaker let a call through while its state was 'open' "
                       "(allow_request() returned True and state stayed 'open'). While 'open' it refuses every "
                       "call; the one call it lets through after recovery_timeout_s is a trial, in 'half_open'.")
        if admitted:
            self.reached += 1
            self.sim.after(duration_s, self._settle, ok)
        return admitted

    def _settle(self, ok: bool) -> None:
        before = self.state
        self.breaker.on_success() if ok else self.breaker.on_failure()
        if self.state == "open" and before != "open":
            self.opened_at = self.sim.now

    def wait(self, delay_s: float) -> None:
        self.sim.advance(delay_s)

    def open_it(self) -> float:
        """Fail calls one at a time until the breaker opens; returns when it opened."""
        for _ in range(self.settings["failure_threshold"]):
            self.call(ok=False)
            self.wait(0.2)
        if self.state != "open":
            raise Fail(f"After {self.settings['failure_threshold']} failures in a row "
                       f"(failure_threshold={self.settings['failure_threshold']}) your breaker was "
                       f"{self.state!r}, not 'open'. Exercise 1's checks say more.")
        return self.opened_at if self.opened_at is not None else self.sim.now


def _ordinal(n: int) -> str:
    """1st, 2nd, 3rd, 4th, ..., 11th, 12th, 13th, 21st."""
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


state_machine = register(Exercise(
    "03.1", "the breaker's state machine", answer="CircuitBreaker",
    hints=(
        "Keep three things: the state, a count of consecutive failures, and the time the breaker opened.",
        "allow_request() is where OPEN becomes HALF_OPEN: if recovery_timeout_s has passed since it "
        "opened (self.clock.now - opened_at), switch to 'half_open' and let this call through.",
        "on_failure() in 'half_open' re-opens and records the new opening time; on_success() in "
        "'half_open' counts successes and closes at success_threshold, resetting the failure count.",
    )))


def _opens_after(Breaker, threshold: int) -> int | None:
    """How many failures in a row a fresh breaker let through before it refused a call (None: it never did)."""
    bench = _Bench(Breaker, failure_threshold=threshold, recovery_timeout_s=10.0, success_threshold=1)
    for _ in range(12):
        if not bench.call(ok=False):
            return bench.reached
        bench.wait(0.2)
    return None


@state_machine.scenario("opens after failure_threshold consecutive failures")
def _opens(Breaker, ctx):
    thresholds = (3, 5, 2)
    reached = {threshold: _opens_after(Breaker, threshold) for threshold in thresholds}
    for threshold, n in reached.items():
        if n is None:
            raise Fail(f"12 calls failed in a row (failure_threshold={threshold}) and your breaker let every "
                       "one through: it never opened. Count consecutive failures in on_failure() and "
                       "switch to 'open' when the count reaches failure_threshold.")
    if len(set(reached.values())) == 1:
        n = reached[thresholds[0]]
        raise Fail(f"Built with failure_threshold=3, 5 and 2, your breaker opened after {n} failures in a row "
                   "every time: it ignores the failure_threshold it is given. Compare the count with "
                   "self.failure_threshold, not a fixed number.")
    for threshold, n in reached.items():
        if n != threshold:
            late = all(m == t + 1 for t, m in reached.items())
            raise Fail(f"With failure_threshold={threshold}, your breaker opened after {n} "
                       f"failures in a row; it should open on the {_ordinal(threshold)}. "
                       + ("It opened one failure late for every threshold: compare the count with >=, not >."
                          if late else "Check >= against >, and where you increment the count."))
    return "opened on the threshold-th failure, for thresholds 3, 5 and 2"


@state_machine.scenario("a success resets the failure count")
def _resets(Breaker, ctx):
    bench = _Bench(Breaker, failure_threshold=3, recovery_timeout_s=10.0, success_threshold=1)
    pattern = [False, False, True] * 4
    for i, ok in enumerate(pattern, 1):
        if not bench.call(ok):
            raise Fail("Calls went fail, fail, success, fail, fail, success, ... and your breaker opened "
                       f"at call {i}, although there were never 3 failures in a row "
                       "(failure_threshold=3). A success in the 'closed' state should reset the count.")
        bench.wait(0.2)
    # A second round: after the last success, exactly failure_threshold failures open it again.
    for i in range(1, 4):
        if not bench.call(ok=False):
            raise Fail(f"After a success reset the count, your breaker refused call {i} of the next failures "
                       "(failure_threshold=3): it opened too early.")
        bench.wait(0.2)
    if bench.state != "open":
        fresh = _opens_after(Breaker, 3)
        if fresh != 3:
            raise Fail(f"After a success, 3 failures in a row (failure_threshold=3) left your breaker "
                       f"{bench.state!r}, not 'open'; a fresh breaker, too, "
                       + ("never opened in 12 failures" if fresh is None else f"opens only on the {_ordinal(fresh)} failure")
                       + (": it opens one failure late. Compare the count with >=, not >." if fresh == 4 else
                          ": the reset is not the cause. The first check, on failure_threshold, says more."))
        raise Fail(f"After a success, 3 failures in a row (failure_threshold=3) left your breaker {bench.state!r}, "
                   "not 'open'. A success should set the count back to 0, no lower, so the next "
                   "failure_threshold failures open it again.")
    return "stayed closed through fail-fail-success patterns, and opened on the next 3 failures"


@state_machine.scenario("refuses while open, then lets a trial through after recovery_timeout_s")
def _half_opens(Breaker, ctx):
    _boundary(Breaker, ctx)
    bench = _Bench(Breaker, failure_threshold=2, recovery_timeout_s=10.0, success_threshold=1)
    opened = bench.open_it()
    for after in (1.0, 5.0, 9.5):
        bench.wait(opened + after - bench.sim.now)
        if bench.call(ok=True):
            raise Fail(f"Your breaker let a call through {after:g} s after it opened, before "
                       "recovery_timeout_s=10 had passed. While 'open', refuse every call at once.")
    bench.wait(opened + 10.5 - bench.sim.now)
    if bench.state == "half_open":
        raise Fail(f"Your breaker opened at t={opened:g} s; at t={opened + 10.5:g} s, recovery_timeout_s=10 later, "
                   "no call had come since, and its state was already 'half_open'. The move is lazy: the first "
                   "call at least recovery_timeout_s after opening makes it, in allow_request(); until a call "
                   "comes the breaker stays 'open' (no timer).")
    if bench.call(ok=True, duration_s=0.05):
        if bench.state != "half_open":
            raise Fail(f"10.5 s after opening your breaker let a call through, but its state was "
                       f"{bench.state!r}: that first call after recovery_timeout_s is a trial, so the state "
                       "should be 'half_open' until the trial's outcome arrives.")
        return "refused for 10 s, then let a trial through in 'half_open'"
    bench.wait(1000)
    if bench.call(ok=True):
        raise Fail("10.5 s after opening (recovery_timeout_s=10) your breaker still refused the call; "
                   "it only let one through much later. Is the timeout measured in seconds from "
                   "the moment it opened?")
    raise Fail("1000 s after opening (recovery_timeout_s=10) your breaker still refused every call: it "
               "would stay open forever. The first call after recovery_timeout_s should get through as a "
               "trial, in state 'half_open'." + clock_hint(ctx))


@state_machine.scenario("closes after success_threshold successful trials")
def _closes(Breaker, ctx):
    bench = _Bench(Breaker, failure_threshold=2, recovery_timeout_s=5.0, success_threshold=2)
    opened = bench.open_it()
    bench.wait(opened + 6 - bench.sim.now)
    for n in (1, 2):
        if not bench.call(ok=True):
            raise Fail(f"Trial {n} after recovery_timeout_s was refused; in 'half_open' the breaker should "
                       "let trials through until success_threshold=2 have succeeded."
                       + ("" if n == 2 else clock_hint(ctx)))
        bench.wait(0.2)
        expected = "half_open" if n == 1 else "closed"
        if bench.state != expected:
            raise Fail(f"After {n} successful trial{'s' if n > 1 else ''} (success_threshold=2) your "
                       f"breaker was {bench.state!r}; it should be {expected!r}.")
    bench.call(ok=False)
    bench.wait(0.2)
    if bench.state != "closed":
        raise Fail("Once closed again, a single failure re-opened your breaker (failure_threshold=2): "
                   "the failures from before it opened were still counted. Reset the count when it closes.")
    bench.call(ok=False)
    bench.wait(0.2)
    if bench.state != "open":
        raise Fail(f"Once closed again, 2 failures in a row (failure_threshold=2) left your breaker "
                   f"{bench.state!r}: the second round should open on the threshold like the first. When it "
                   "closes, set the failure count back to 0, no lower.")
    return "closed after 2 successful trials, with a fresh failure count that opens it again"


def _boundary(Breaker, ctx):
    """The first call exactly recovery_timeout_s after opening is a trial (part of the half-open scenario)."""
    # Times that are exact in binary (quarters of a second), so "exactly 10 s later" is exact.
    bench = _Bench(Breaker, failure_threshold=2, recovery_timeout_s=10.0, success_threshold=1)
    for _ in range(2):
        bench.call(ok=False, duration_s=0.25)
        bench.wait(0.5)
    if bench.state != "open" or bench.opened_at is None:
        raise Fail(f"After 2 failures in a row (failure_threshold=2) your breaker was {bench.state!r}, not "
                   "'open'. Exercise 1's first check says more.")
    opened = bench.opened_at
    bench.sim.run(until=opened + 9.75)
    if bench.call(ok=True):
        raise Fail("Your breaker let a call through 9.75 s after it opened (recovery_timeout_s=10).")
    bench.sim.run(until=opened + 10.0)
    if bench.call(ok=True, duration_s=0.25):
        return "a call exactly 10 s after opening went through as a trial"
    bench.sim.run(until=opened + 10.25)
    if not bench.call(ok=True):
        return "not a boundary mistake: the rest of the scenario says what it is"
    raise Fail(f"Your breaker opened at t={opened:g} s and refused a call at exactly t={opened + 10:g} s, "
               "recovery_timeout_s=10 later, then let one through 0.25 s after that. A call that comes exactly "
               "recovery_timeout_s after opening is a trial too: the timeout is over once now - opened_at "
               "reaches recovery_timeout_s, not only once it is exceeded.")


def _late_outcomes(Breaker, ctx):
    """Outcomes that arrive while open change nothing (part of the re-open scenario)."""
    bench = _Bench(Breaker, failure_threshold=2, recovery_timeout_s=10.0, success_threshold=1)
    bench.call(ok=True, duration_s=3.0)     # slow calls let through while closed:
    bench.call(ok=False, duration_s=5.0)    # their outcomes arrive after it has opened
    for _ in range(2):
        bench.call(ok=False, duration_s=0.25)
        bench.wait(0.5)
    if bench.state != "open" or bench.opened_at is None:
        raise Fail(f"After 2 failures in a row (failure_threshold=2) your breaker was {bench.state!r}, not "
                   "'open'. Exercise 1's first check says more.")
    opened = bench.opened_at
    bench.sim.run(until=3.5)
    if bench.state != "open" or bench.call(ok=True):
        raise Fail(f"Your breaker opened at t={opened:g} s. At t=3 s a slow call that had been let through "
                   f"before that succeeded, and your breaker became {bench.state!r} (or let calls through). That "
                   "success is old news from before the outage, not a trial: while 'open', on_success() "
                   "changes nothing.")
    bench.sim.run(until=opened + 10.5)
    if not bench.call(ok=True):
        bench.sim.run(until=5.0 + 10.5)
        if not bench.call(ok=True):
            return "no trial at all: the rest of the scenario says why"
        raise Fail(f"Your breaker opened at t={opened:g} s; a slow call from before that failed at t=5 s, while it "
                   f"was open, and at t={opened + 10.5:g} s (recovery_timeout_s=10 after opening) it still refused "
                   "the trial, but let one through 10.5 s after that late failure: the late failure restarted the "
                   "timeout. A failure that arrives while 'open' changes nothing: the timeout runs from the moment "
                   "it opened.")
    return "a late success did not close it and a late failure did not restart the timeout"


@state_machine.scenario("a failed trial re-opens it and restarts recovery_timeout_s")
def _reopens(Breaker, ctx):
    _late_outcomes(Breaker, ctx)
    return _reopens_on_failed_trial(Breaker, ctx)


def _reopens_on_failed_trial(Breaker, ctx):
    """A failed trial re-opens, restarts the timeout, and the next round counts afresh (in the re-open scenario)."""
    bench = _Bench(Breaker, failure_threshold=2, recovery_timeout_s=10.0, success_threshold=1)
    opened = bench.open_it()
    bench.wait(opened + 10.5 - bench.sim.now)
    if not bench.call(ok=False):
        raise Fail("The first call after recovery_timeout_s was refused: it should go through as a trial."
                   + clock_hint(ctx))
    bench.wait(0.2)
    if bench.state != "open":
        admitted = bench.call(ok=True)
        raise Fail(f"A trial call failed, but your breaker stayed {bench.state!r}"
                   + (" and let the next call through" if admitted else "")
                   + ". In 'half_open' any failure is proof the service is still down: go back to 'open'.")
    reopened = bench.opened_at if bench.opened_at is not None else bench.sim.now
    bench.wait(reopened + 9.0 - bench.sim.now)
    if bench.call(ok=True):
        raise Fail("After the failed trial re-opened it, your breaker let a call through 9 s later, before a "
                   "new recovery_timeout_s=10 had passed: re-opening should restart the timeout from now.")
    bench.wait(reopened + 10.5 - bench.sim.now)
    if not bench.call(ok=True):
        raise Fail("After re-opening, your breaker refused calls even after a fresh recovery_timeout_s.")
    # A second half-open round starts from no successes: one that half-succeeded counts for nothing.
    bench = _Bench(Breaker, failure_threshold=2, recovery_timeout_s=10.0, success_threshold=2)
    opened = bench.open_it()
    bench.wait(opened + 10.5 - bench.sim.now)
    bench.call(ok=True)
    bench.wait(0.2)
    bench.call(ok=False)
    bench.wait(0.2)
    if bench.state != "open" or bench.opened_at is None:
        raise Fail(f"In 'half_open' one trial succeeded and the next failed (success_threshold=2); your breaker "
                   f"was then {bench.state!r}. Any failed trial re-opens it.")
    bench.wait(bench.opened_at + 10.5 - bench.sim.now)
    bench.call(ok=True)
    bench.wait(0.2)
    if bench.state == "closed":
        raise Fail("In the first half-open round one trial succeeded, then one failed and re-opened the breaker. "
                   "In the next round a single successful trial closed it (success_threshold=2): the success from "
                   "the earlier round was still counted. Start counting trial successes from 0 in every "
                   "half-open round.")
    return "re-opened on the failed trial, waited a full timeout again, and counted the next round afresh"


trial_limit = register(Exercise(
    "03.2", "half-open admits only its trial calls", answer="TrialLimitedBreaker",
    hints=(
        "Count trial calls in flight: add one when allow_request() admits a call in 'half_open', "
        "subtract one when its outcome arrives.",
        "In 'half_open', allow_request() returns False once half_open_max_calls trials are in flight.",
        "Outcomes that arrive while 'open' (trials that started before another trial failed) must not "
        "close the breaker: only count successes while 'half_open'.",
    )))


def _trial_bench(Breaker, max_calls, success_threshold):
    bench = _Bench(Breaker, failure_threshold=2, recovery_timeout_s=10.0, success_threshold=success_threshold,
                   half_open_max_calls=max_calls)
    opened = bench.open_it()
    bench.wait(opened + 10.5 - bench.sim.now)
    return bench


def _keeps_exercise_1(Breaker, ctx, scenarios) -> None:
    """Exercise 1's scenarios on this class, with more trial slots than they ever fill: what they judge (late
    outcomes, the timeout, each round counted afresh) must not change when a breaker limits its trials. A
    slot that is never freed is the next scenario's to name, not one of these. `scenarios` pairs each check
    with the rule it judges, so the message names the rule that broke."""
    token = _EXTRA_SETTINGS.set({"half_open_max_calls": 100})
    try:
        for scenario, rule in scenarios:
            try:
                scenario(Breaker, ctx)
            except Fail as exc:
                raise Fail(f"Your TrialLimitedBreaker breaks a rule of exercise 1, {rule} (seen with "
                           f"half_open_max_calls=100, more trial slots than this ever fills). {exc}") from None
    finally:
        _EXTRA_SETTINGS.reset(token)


@trial_limit.scenario("at most half_open_max_calls trial calls at once")
def _stampede(Breaker, ctx):
    bench = _Bench(Breaker, failure_threshold=2, recovery_timeout_s=10.0, success_threshold=1, half_open_max_calls=1)
    for _ in range(5):
        bench.call(ok=True, duration_s=0.3)
    if bench.reached != 5:
        raise Fail(f"While 'closed', 5 calls arrived together and your breaker (half_open_max_calls=1) let "
                   f"{bench.reached} of them through. The trial limit is for 'half_open' only: a closed breaker "
                   "lets every call through.")
    for max_calls in (1, 3):
        bench = _trial_bench(Breaker, max_calls, success_threshold=max_calls)
        before = bench.reached
        for _ in range(20):
            bench.call(ok=True, duration_s=0.3)
        trials = bench.reached - before
        if bench.state == "open":
            raise Fail(f"When recovery_timeout_s ended, 20 calls arrived together; your breaker let {trials} "
                       f"through (half_open_max_calls={max_calls}) and was then 'open', though no trial had "
                       "failed yet. A call refused because the trial slots are full is only refused: the state "
                       "stays 'half_open' until a trial's outcome decides.")
        if trials > max_calls:
            raise Fail(f"When recovery_timeout_s ended, 20 calls arrived together and your breaker sent "
                       f"{trials} of them to the recovering service (half_open_max_calls={max_calls}). "
                       "That is the half-open stampede: a service that just came back is flooded again. "
                       "Refuse calls beyond the permitted trials until their outcomes arrive.")
        if trials == 0:
            raise Fail("When recovery_timeout_s ended, your breaker refused every call: no trial got "
                       "through, so it can never close." + clock_hint(ctx))
        if trials < max_calls:
            raise Fail(f"With half_open_max_calls={max_calls}, your breaker let only {counted(trials, 'trial')} "
                       "through when 20 calls arrived together.")
    return "admitted exactly the permitted trials, for 1 and 3"


@trial_limit.scenario("a failed trial re-opens, and late successes do not close it")
def _late_success(Breaker, ctx):
    _keeps_exercise_1(Breaker, ctx, (
        (_late_outcomes, "outcomes that arrive while 'open' change nothing"),
        (_reopens_on_failed_trial, "a failed trial re-opens the breaker, restarts recovery_timeout_s, and the next "
                                   "round counts its successes from 0")))
    bench = _trial_bench(Breaker, max_calls=3, success_threshold=2)
    bench.call(ok=False, duration_s=0.1)
    bench.call(ok=True, duration_s=0.3)
    bench.call(ok=True, duration_s=0.3)
    bench.wait(0.15)
    if bench.state != "open":
        raise Fail(f"One of three trials failed, and your breaker was {bench.state!r} afterwards. "
                   "A failed trial should re-open it at once.")
    bench.wait(0.3)
    if bench.state != "open" or bench.call(ok=True):
        raise Fail("After a trial failed and re-opened the breaker, two other trials from the same round "
                   "succeeded, and your breaker closed (or let calls through). Outcomes that arrive while "
                   "'open' must not count as trial successes.")
    # The second round: a full set of trial slots again, whatever the first round left behind.
    bench.wait(bench.opened_at + 10.5 - bench.sim.now if bench.opened_at is not None else 10.5)
    before = bench.reached
    for i in range(10):   # the first trial comes back alone: one success, of the 2 that close it
        bench.call(ok=True, duration_s=0.1 if i == 0 else 0.4)
    trials = bench.reached - before
    if trials != 3:
        raise Fail(f"In the first half-open round one trial failed, and two others were still in flight when it "
                   f"re-opened. When recovery_timeout_s had passed again and 10 calls arrived together, your "
                   f"breaker let {trials} through (half_open_max_calls=3). Each half-open round starts with all "
                   "its slots free: trials left over from an earlier round (failed, or finished while 'open') "
                   "must not hold one, nor free one twice.")
    bench.wait(0.2)
    if bench.state == "closed":
        raise Fail("In the first half-open round one trial failed and re-opened the breaker; two others of that "
                   "round succeeded while it was 'open'. In the next round the first successful trial closed it "
                   "(success_threshold=2): the successes that arrived while 'open' were counted towards it. They "
                   "are not trial successes: count none of them, in this round or the next.")
    bench.wait(0.3)
    if bench.state != "closed":
        raise Fail(f"In a second half-open round 3 trials succeeded (success_threshold=2), and your breaker was "
                   f"{bench.state!r}: successes of the first round's trials, or its failure, were still counted.")
    return "stayed open despite late successes; the next round had its 3 slots and closed"


@trial_limit.scenario("a finished trial frees its slot for the next one")
def _releases(Breaker, ctx):
    bench = _trial_bench(Breaker, max_calls=1, success_threshold=2)
    if not bench.call(ok=True, duration_s=0.1):
        raise Fail("The first call after recovery_timeout_s was refused." + clock_hint(ctx))
    bench.wait(0.2)
    if not bench.call(ok=True, duration_s=0.1):
        raise Fail("Your breaker let one trial through (half_open_max_calls=1), it succeeded, and then the "
                   "next call was refused: the finished trial's slot was never given back, so the breaker "
                   "is stuck in 'half_open'. Free a slot when a trial's outcome arrives.")
    bench.wait(0.2)
    if bench.state != "closed":
        raise Fail(f"Two trials succeeded (success_threshold=2) but your breaker was {bench.state!r}.")
    # One finished trial frees one slot: with 2 permitted and one still in flight, exactly one more. Three
    # successes close it, so a design that counts permits per round (resilience4j's, at least success_threshold
    # of them) still has one to give.
    bench = _trial_bench(Breaker, max_calls=2, success_threshold=3)
    bench.call(ok=True, duration_s=0.1)
    bench.call(ok=True, duration_s=1.0)
    bench.wait(0.2)
    before = bench.reached
    for _ in range(5):
        bench.call(ok=True, duration_s=0.1)
    if bench.reached - before > 1:
        raise Fail(f"With half_open_max_calls=2, two trials went through; one succeeded while the other was still "
                   f"in flight, and then 5 calls arrived together: your breaker let {bench.reached - before} of "
                   "them through, so more than 2 trials were in flight at once. A finished trial frees one slot: "
                   "give back exactly one per outcome.")
    if bench.reached == before:
        raise Fail("With half_open_max_calls=2, two trials went through; one succeeded while the other was still "
                   "in flight, and then 5 calls arrived together: your breaker let none of them through, so only "
                   "1 trial was in flight where 2 are allowed. The trial that finished freed no slot because "
                   "another was still out: every outcome gives back its trial's slot, whichever trial it was and "
                   "whatever else is in flight.")
    return "trials ran one after another and closed it; a finished trial freed exactly one slot"


# Eight seeds whose outages end at eight different phases of a trial cycle (26 to 33 s), so no
# recovery_timeout_s passes by happening to line a trial up with the end of one outage. Recovery
# is judged on the average over the runs: one run's recovery is a lottery (where the outage
# ends in the cycle, whether the first trial meets one of the ordinary 10 % errors), and a
# worst case over a few seeds graded that luck. tests/test_tuning_seeds.py checks that each
# verdict holds on 20 more seeds, and where the margins are.
TUNING_SEEDS = (11, 12, 13, 14, 15, 16, 17, 18)
TUNING_TARGETS = dict(rate_rps=50.0, error_rate=0.10, outage_start_s=20.0,
                      outages_s=(30.0, 26.0, 33.0, 28.0, 31.0, 27.0, 32.0, 29.0),
                      duration_s=70.0, max_outage_calls=120, recover_within_s=4.0)
_TUNING_KEYS = ("failure_threshold", "recovery_timeout_s", "success_threshold")
FALSE_ALARM_EVERY_S = 600.0   # a healthy service's breaker may open on bad luck at most this often

tuning = register(Exercise(
    "03.3", "tune a breaker for an outage", answer="TUNING",
    hints=(
        "Ordinary errors come at 10 %: how likely are k failures in a row at 50 calls per second? "
        "Too small a failure_threshold trips on bad luck.",
        "Each trial during the outage costs one call to the dead service and one second of waiting; "
        "recovery_timeout_s sets both how many trials the dead service sees and how soon you notice it is back.",
        "Use the Play widget: set the same outage and rate and watch the table's rows '... of them during the "
        "outage' and 'recovered after the outage in'.",
    )))


_tuned: dict = {}  # TUNING -> its three runs: the three scenarios below judge the same runs


def _tuned_runs(tuning_answer):
    if not isinstance(tuning_answer, dict) or set(tuning_answer) != set(_TUNING_KEYS):
        raise Fail(f"TUNING should be a dict with exactly the keys {', '.join(_TUNING_KEYS)}; "
                   f"got {tuning_answer!r}.")
    # The runs are seeded, so one TUNING always gives the same runs: simulate them once, not once
    # per scenario (they are most of the grader's time on this lesson). Only plain values are
    # cached: the grader serves many submissions, and an object's repr could imitate another's.
    if not all(type(v) in (int, float, bool, str) for v in tuning_answer.values()):
        return _simulate_tuned(tuning_answer)
    key = tuple(sorted((k, type(v).__name__, repr(v)) for k, v in tuning_answer.items()))
    if key not in _tuned:
        if len(_tuned) >= 8:
            _tuned.clear()
        _tuned[key] = _simulate_tuned(tuning_answer)
    return _tuned[key]


def _simulate_tuned(tuning_answer):
    t = TUNING_TARGETS
    runs = []
    for seed, outage_s in zip(TUNING_SEEDS, t["outages_s"]):
        try:
            run = simulate(seed=seed, duration_s=t["duration_s"], rate_rps=t["rate_rps"],
                                 error_rate=t["error_rate"], outage_start_s=t["outage_start_s"],
                                 outage_s=outage_s,
                                 breaker=lambda clock: CircuitBreaker(clock, **tuning_answer))
        except (TypeError, ValueError) as exc:
            raise Fail(f"labkit's breaker rejected your TUNING: {exc}") from None
        runs.append(run)
    return runs


def _outage_s(run) -> float:
    return run.outage[1] - run.outage[0]


def _reopened_after_outage(run) -> list[float]:
    """When the breaker opened again after it first closed once the outage was over."""
    end = run.outage[1]
    closed = [e.time_s for e in run.trace.select("breaker", "state", state="closed") if e.time_s >= end]
    return [e.time_s for e in run.trace.select("breaker", "state", state="open") if closed and e.time_s > closed[0]]


@tuning.scenario("no false alarms: stays closed through ordinary 10 % errors")
def _no_false_alarm(answer, ctx):
    for run in _tuned_runs(answer):
        opened = [e.time_s for e in run.trace.select("breaker", "state", state="open")
                  if e.time_s < TUNING_TARGETS["outage_start_s"]]
        if opened:
            raise Fail(f"With seed {run.settings['seed']} the breaker opened at t={opened[0]:.1f} s, before the "
                       "outage, on ordinary 10 % errors: failure_threshold="
                       f"{answer['failure_threshold']} trips on bad luck. Callers got fallbacks for nothing.")
    # Eight runs see 160 s of healthy traffic; luck decides a threshold that trips every few minutes.
    # The expected wait for k failures in a row at error rate p decides it instead.
    k, p, rate = answer["failure_threshold"], TUNING_TARGETS["error_rate"], TUNING_TARGETS["rate_rps"]
    every_s = (1 - p ** k) / ((1 - p) * p ** k) / rate
    if every_s < FALSE_ALARM_EVERY_S:
        raise Fail(f"None of the {len(TUNING_SEEDS)} runs opened before the outage, but that was luck: at "
                   f"{rate:g} calls/s with {100 * p:g} % ordinary errors, {k} failures in a row come by chance "
                   f"about every {every_s / 60:.0f} minutes, so failure_threshold={k} would open a healthy "
                   f"service's breaker that often (the target: not more than once every "
                   f"{FALSE_ALARM_EVERY_S / 60:g} minutes).")
    return f"never opened before the outage ({len(TUNING_SEEDS)} seeds; by chance about every {_duration(every_s)})"


def _duration(seconds: float) -> str:
    if seconds < 3600:
        return f"{seconds / 60:.0f} minutes"
    if seconds < 2 * 86400:
        return f"{seconds / 3600:.0f} hours"
    return f"{seconds / 86400:,.0f} days"


@tuning.scenario(f"protects the dead service: at most {TUNING_TARGETS['max_outage_calls']} calls reach it")
def _protects(answer, ctx):
    run = max(_tuned_runs(answer), key=lambda r: r.summary()["calls_during_outage"])
    worst = run.summary()["calls_during_outage"]
    if worst > TUNING_TARGETS["max_outage_calls"]:
        raise Fail(f"Up to {worst} calls reached the dead service during its outage (seed {run.settings['seed']}, a "
                   f"{_outage_s(run):g} s outage; the target is at most {TUNING_TARGETS['max_outage_calls']}). "
                   "A high failure_threshold lets "
                   "many calls in before opening; a short recovery_timeout_s sends many trials.")
    return f"at most {worst} calls reached it ({len(TUNING_SEEDS)} seeds)"


@tuning.scenario(f"recovers: callers back to normal within {TUNING_TARGETS['recover_within_s']:g} s, on average")
def _recovers(answer, ctx):
    runs = _tuned_runs(answer)
    times = [run.recovery_s() for run in runs]
    never = sum(math.isinf(t) for t in times)
    mean = sum(times) / len(times)
    if mean > TUNING_TARGETS["recover_within_s"]:
        flapping = [(len(reopened), run, reopened) for run in runs if (reopened := _reopened_after_outage(run))]
        if flapping:
            _, run, reopened = max(flapping, key=lambda f: f[0])
            late = (f"in {never} of {len(times)} runs they never got back to normal" if never else
                    f"they took {mean:.1f} s on average to get back to normal")
            raise Fail(f"After the service came back, your breaker closed and then opened again "
                       f"{counted(len(reopened), 'time')} (seed {run.settings['seed']}, first at "
                       f"t={reopened[0]:.1f} s) on the ordinary 10 % errors of a healthy service, and each time "
                       f"callers got fallbacks: {late} (target {TUNING_TARGETS['recover_within_s']:g} s). "
                       f"failure_threshold={answer['failure_threshold']} trips on bad luck, and every needless "
                       "opening costs a recovery_timeout_s of fallbacks.")
        slowest = max(runs, key=lambda r: r.recovery_s())
        shown = (f"did not return to normal before the run ended in {never} of {len(times)} runs, seed "
                 f"{slowest.settings['seed']} among them" if never else
                 f"took {mean:.1f} s on average to return to normal (the slowest, seed "
                 f"{slowest.settings['seed']}, {max(times):.0f} s)")
        raise Fail(f"After the service came back, callers' success rate {shown}; the target is "
                   f"{TUNING_TARGETS['recover_within_s']:g} s on average. The breaker only finds out the "
                   "service is back when a trial succeeds: recovery_timeout_s and success_threshold set "
                   "how long that takes.")
    return f"recovered within {mean:.1f} s on average, at worst {max(times):.0f} s ({len(times)} seeds)"


_CHOICES = {
    "a": (False, "No: reading an attribute runs none of the breaker's code. Reading .state does not move it from "
                 "'open' to anything, however often the dashboard looks: .state is a plain value."),
    "b": (True, "Right: the move to 'half_open' happens inside allow_request(), and the dashboard never "
                "calls it while the breaker is open, so it stays open for good. Send calls through the "
                "breaker and let it refuse them."),
    "c": (False, "No: labkit's breaker, like pybreaker's, starts no timer and no thread of its own: nothing fires "
                 "when recovery_timeout_s ends. Look at which of its methods hold code that changes the state, "
                 "and who calls them."),
    "d": (False, "No: an open breaker never closes straight from 'open'. Closing takes successful trials, and a "
                 "quiet spell with no calls is not a success."),
}

concept = concept_question("03.4", "the lazy transition trap", _CHOICES,
                           hints=("Where, in labkit's breaker and in resilience4j's, does 'open' become 'half_open'?",))
