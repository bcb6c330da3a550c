"""Exercises of lesson 04, bulkhead: scenarios and the messages each mistake earns.

04.1 drives the learner's semaphore bulkhead with scripted calls on a fresh seeded `Sim` and
judges it by when each call's work started and what its caller was told. 04.2 compares the
learner's timeline with labkit's `ThreadPool`, which follows Java's `ThreadPoolExecutor.execute`.
04.3 simulates the learner's partition sizes on 20 seeds. 04.4 is a concept question. 04.5 (a stretch)
puts the learner's AIMD limiter in front of servers of two sizes.
"""
from __future__ import annotations

import math

from labkit.checking import (Exercise, Fail, SentArgsSim, clock_hint, concept_question, construct, number,
                             percent_short_of, refuse_reference, register)
from labkit.clock import Sim
from labkit.lessons.bulkhead.model import TOTAL_WORKERS, simulate
from labkit.service import TASK_ACTIONS, Service, WorkerPool, executor_timeline

# What a learner's bulkhead may use of the grader's objects: the clock (exposed for every lesson
# in labkit.grading.expose: now, at, after). The work and reply callables are plain functions.

OUTCOMES = ("ok", "error", "timeout")


class _Bench:
    """One learner bulkhead on a fresh Sim, and per call: when its work started and what its caller heard."""

    def __init__(self, Bulkhead, *, max_concurrent_calls, max_wait_s, seed=0):
        refuse_reference(Bulkhead, WorkerPool, "lk.WorkerPool", "pool")
        self.sim = SentArgsSim(seed)   # what after(delay, fn, *args) does when graded, here too
        self.settings = dict(max_concurrent_calls=max_concurrent_calls, max_wait_s=max_wait_s)
        self.bulkhead = construct(Bulkhead, self.sim, shown=f"clock, max_concurrent_calls={max_concurrent_calls}, "
                                  f"max_wait_s={max_wait_s!r}", **self.settings)
        self.calls: list[dict] = []
        self.running = 0
        self.peak = 0
        self.problem: str | None = None

    def call(self, duration_s=1.0, outcome="ok", raises=False, done_twice=False, instant=False,
             on_reply=None, done_then_raise=False) -> dict:
        """Send one call now: its work lasts `duration_s` (or calls done inside work, `instant`), then reports
        `outcome` (or raises at once); `on_reply(result)` runs inside the caller's reply (a caller that sends
        its next call the moment it hears)."""
        rec = {"sent": self.sim.now, "started": None, "replies": [], "finished": False}
        self.calls.append(rec)

        def work(done=None, *extra):
            if rec["started"] is not None:
                self._problem("Your bulkhead started the same call's work twice.")
            if extra or not callable(done):
                given = ", ".join(repr(a) for a in (done, *extra)) if done is not None or extra else ""
                self._problem(f"Your bulkhead called a call's work as work({given}); it takes one argument, a done "
                              "function of yours that the work calls with its outcome when it is finished. The "
                              "caller hears the outcome (or 'rejected') through reply, never through work.")
            rec["started"] = self.sim.now
            self.running += 1
            self.peak = max(self.peak, self.running)
            if raises:
                self.running -= 1
                raise RuntimeError("the dependency's client raised")

            def finish():
                self.running -= 1
                rec["finished"] = True
                done(outcome)
                if done_twice:
                    done(outcome)

            if instant or done_then_raise:
                finish()
                if done_then_raise:
                    raise RuntimeError("the dependency's client raised after it had answered")
            else:
                self.sim.after(duration_s, finish)

        def reply(result):
            rec["replies"].append((self.sim.now, result))
            if on_reply is not None:
                on_reply(result)

        try:
            self.bulkhead.call(work, reply)
        except Fail:
            raise
        except RuntimeError as exc:
            if raises or done_then_raise:
                raise Fail("The call's work raised an exception, and it came out of your bulkhead's call(): "
                           "catch it, give the permit back, and reply('error').") from None
            raise exc
        self._raise_problem()
        return rec

    def _problem(self, message):
        """A mistake seen inside a callback: raised there, and again later in case the learner's code swallowed it."""
        self.problem = self.problem or message
        raise Fail(message)

    def _raise_problem(self):
        if self.problem:
            raise Fail(self.problem)

    def wait(self, delay_s):
        try:
            self.sim.advance(delay_s)
        except Exception as exc:
            if not self.sim.copied_args:
                raise
            raise Fail(f"Your code raised {type(exc).__name__} in a callback it had given arguments through "
                       "clock.after(delay_s, fn, ...): when your work is graded they arrive as copies (the clock is "
                       "in another process), and so they do here. Hand after a function of yours that closes over "
                       "what it needs: clock.after(delay_s, lambda: self._give_up(waiter)).") from None
        self._raise_problem()

    def within_limit(self, what: str):
        """A Fail if more calls' work ever ran at once than max_concurrent_calls."""
        limit = self.settings["max_concurrent_calls"]
        if self.peak > limit:
            raise Fail(f"{what}, your bulkhead had {self.peak} calls' work running at once with "
                       f"max_concurrent_calls={limit}: a permit was counted back that was never taken, or a call "
                       "started without one.")

    def heard(self, rec, what: str):
        """The one reply a call got; a Fail naming the call if it got none or several."""
        self._raise_problem()
        if not rec["replies"]:
            raise Fail(f"The call sent at t={rec['sent']:.2f} s ({what}) never got a reply: call reply(...) exactly "
                       "once for every call, with 'rejected' if it never got a permit."
                       + clock_hint(self._ctx, ask=False))
        if len(rec["replies"]) > 1:
            raise Fail(f"The call sent at t={rec['sent']:.2f} s ({what}) got {len(rec['replies'])} replies "
                       f"({', '.join(repr(r) for _, r in rec['replies'])}): reply exactly once.")
        return rec["replies"][0]

    _ctx = None


def _bench(Bulkhead, ctx, **settings):
    bench = _Bench(Bulkhead, **settings)
    bench._ctx = ctx
    return bench


semaphore = register(Exercise(
    "04.1", "a semaphore bulkhead", answer="Bulkhead",
    hints=(
        "Keep a count of permits in use and a FIFO list of waiting calls (collections.deque).",
        "call(): a free permit and nobody waiting -> start the work now. Otherwise, with max_wait_s > 0, "
        "append the call to the waiters and set a timer, clock.after(max_wait_s, lambda: ...), that rejects it "
        "if it is still waiting then; with max_wait_s == 0, reply('rejected') at once.",
        "Starting a call: count the permit, then call work(done) inside try/except. done(outcome) gives the "
        "permit back only the first time it is called (a flag), replies with the outcome, and starts the "
        "oldest waiter that is still waiting. An exception from work() is done('error').",
    )))


@semaphore.scenario("at most max_concurrent_calls at once; with max_wait_s=0 the rest are rejected at once")
def _limits(Bulkhead, ctx):
    for limit in (1, 4):
        bench = _bench(Bulkhead, ctx, max_concurrent_calls=limit, max_wait_s=0)
        recs = [bench.call(duration_s=1.0) for _ in range(limit + 3)]
        started = sum(r["started"] is not None for r in recs)
        if started > limit:
            raise Fail(f"{limit + 3} calls arrived together (max_concurrent_calls={limit}) and your bulkhead started "
                       f"{started} of them at once. Count the permits in use and refuse a call when all are taken.")
        if started < limit:
            raise Fail(f"{limit + 3} calls arrived together (max_concurrent_calls={limit}) and your bulkhead started "
                       f"only {started}: it should run {limit} at once. Check < against <= where you compare.")
        for r in recs[limit:]:
            if not r["replies"] and r["started"] is None:
                bench.wait(0)   # a reply from a timer of 0 s comes now, but after call() has returned
                if r["replies"]:
                    raise Fail(f"With every permit taken and max_wait_s=0, a call sent at t={r['sent']:.2f} s heard "
                               f"{r['replies'][0][1]!r} only after call() had returned, from a timer: a zero wait "
                               "still queued it. Zero wait means fail fast: reply('rejected') inside call(), "
                               "before it returns.")
                raise Fail(f"With every permit taken and max_wait_s=0, a call sent at t={r['sent']:.2f} s got no "
                           "reply when call() returned, nor from any timer due then: it was left waiting. Zero "
                           "wait means fail fast: reply('rejected') inside call(), at once.")
            t, result = bench.heard(r, "all permits taken, max_wait_s=0")
            if result != "rejected" or t > r["sent"] + 1e-9:
                raise Fail(f"With every permit taken and max_wait_s=0, a call should be told 'rejected' at once; "
                           f"yours heard {result!r} at t={t:.2f} s. Zero wait means fail fast.")
        bench.wait(1.5)
        second = [bench.call(duration_s=1.0) for _ in range(limit)]
        if not all(r["started"] is not None for r in second):
            n = sum(r["started"] is None for r in second)
            raise Fail(f"After the first {limit} calls finished, {n} of {limit} new calls were refused: the permits "
                       "of finished calls did not come back. Give the permit back when the work reports done.")
    return "ran exactly max_concurrent_calls at once (1 and 4), rejected the rest at once, and reused the permits"


@semaphore.scenario("waiters get a permit in arrival order, or 'rejected' when max_wait_s runs out")
def _waits(Bulkhead, ctx):
    bench = _bench(Bulkhead, ctx, max_concurrent_calls=2, max_wait_s=1.0)
    a = bench.call(duration_s=0.5)
    b = bench.call(duration_s=0.8)
    bench.wait(0.1)
    c = bench.call(duration_s=1.0)
    bench.wait(0.1)
    d = bench.call(duration_s=1.0)
    bench.wait(0.1)
    e = bench.call(duration_s=1.0)
    if any(r["replies"] for r in (c, d, e)) and not any(r["started"] is not None for r in (c, d, e)):
        raise Fail("Both permits were taken and three more calls arrived (max_wait_s=1.0): your bulkhead rejected "
                   "them at once. With max_wait_s > 0 a call waits up to max_wait_s for a permit.")
    bench.wait(1.1)
    g = bench.call(duration_s=0.5)   # t=1.40 s: both permits held (until 1.50 and 1.80 s), one waiter just rejected
    bench.wait(0.9)
    if e["started"] is not None and (c["started"] is None or e["started"] < c["started"]):
        raise Fail(f"Three calls waited (sent at t=0.10, 0.20 and 0.30 s) while both permits were taken, and the "
                   f"last of them got a permit first, at t={e['started']:.2f} s. Serve waiters first come, first "
                   "served: the oldest waiter gets the next permit.")
    if c["started"] is None or d["started"] is None:
        raise Fail("Two calls waited while both permits were taken; the permits came back at t=0.50 s and 0.80 s "
                   "and a waiter did not get one. When a call is done, start the oldest waiter at once.")
    if abs(c["started"] - 0.5) > 1e-6 or abs(d["started"] - 0.8) > 1e-6:
        if d["started"] < c["started"] - 1e-6:
            raise Fail(f"Calls sent at t=0.10 s and 0.20 s, while both permits were taken, started at "
                       f"t={_at(c['started'])} s and {_at(d['started'])} s: the later one went first. Serve "
                       "waiters first come, first served: the oldest waiter gets the next permit.")
        seen, early, late = [], False, False
        for r, back in ((c, 0.5), (d, 0.8)):
            start = r["started"]
            if start < back - 1e-6:
                early = True
                seen.append(f"the one sent at t={r['sent']:.2f} s started at t={_at(start)} s, before its permit "
                            f"came back at t={back:.2f} s")
            elif start > back + 1e-6:
                late = True
                seen.append(f"the one sent at t={r['sent']:.2f} s started at t={_at(start)} s, "
                            f"{1000 * (start - back):.0f} ms after its permit came back at t={back:.2f} s")
            else:
                seen.append(f"the one sent at t={r['sent']:.2f} s started at t={back:.2f} s, as its permit came back")
        advice = []
        if early:
            advice.append("A call that starts while every permit is taken is one call too many: it may start only "
                          "while in_use < max_concurrent_calls.")
        if late:
            advice.append(_late_wake(Bulkhead, ctx) or "A waiter was not started when a permit came back: when a "
                          "call is done, start the oldest waiter at once.")
        raise Fail("Both permits were taken until t=0.50 s and 0.80 s, and two calls arrived meanwhile: "
                   + "; ".join(seen) + ". " + " ".join(advice))
    if e["started"] is not None:
        raise Fail(f"A call sent at t=0.30 s with max_wait_s=1.0 started at t={e['started']:.2f} s, after waiting "
                   "longer than max_wait_s: once its wait is over it must be rejected, not run later"
                   + (" (it was never told 'rejected': does a timer, clock.after(max_wait_s, ...), end its wait?)."
                      if not any(result == "rejected" for _, result in e["replies"]) else "."))
    t, result = bench.heard(e, "waited while both permits were busy")
    if result != "rejected" or abs(t - 1.3) > 1e-6:
        raise Fail(f"A call sent at t=0.30 s could not get a permit within max_wait_s=1.0; it heard {result!r} "
                   f"at t={t:.2f} s. It should hear 'rejected' at t=1.30 s, when its wait runs out.")
    for r, what in ((a, "ran first"), (b, "ran second"), (c, "waited"), (d, "waited")):
        t, result = bench.heard(r, what)
        if result != "ok":
            raise Fail(f"A call whose work reported 'ok' heard {result!r}: pass the work's outcome to reply.")
    if g["started"] is not None and g["started"] < 1.5 - 1e-6:
        raise Fail(f"A call sent at t=1.40 s, while both permits were held (until t=1.50 s and 1.80 s), started at "
                   f"t={g['started']:.2f} s, just after a waiter was rejected at t=1.30 s: the rejected waiter gave "
                   "back a permit it never held. A waiter whose wait runs out leaves the line; the permits stay "
                   "with the calls that hold them.")
    t, result = bench.heard(g, "sent at t=1.40 s, after a waiter was rejected")
    if g["started"] is None or abs(g["started"] - 1.5) > 1e-6 or result != "ok":
        raise Fail(f"A call sent at t=1.40 s, after a waiter was rejected at t=1.30 s, should have waited for the "
                   f"permit that came back at t=1.50 s and run; it heard {result!r} at t={t:.2f} s. A rejected "
                   "waiter must leave the line, so that the next waiter gets the next permit.")
    bench.wait(1.0)
    f = bench.call(duration_s=0.1)
    if f["started"] is None:
        raise Fail("After every earlier call was done or rejected, a new call was refused: the rejected waiter "
                   "still held a place. Remove a waiter when its wait runs out.")
    bench.within_limit("With waiters served and one rejected")
    return "served waiters FIFO as permits came back and rejected the one whose wait ran out, on time"


@semaphore.scenario("a permit comes back exactly once, whatever the outcome")
def _releases(Bulkhead, ctx):
    for outcome in ("error", "timeout"):
        bench = _bench(Bulkhead, ctx, max_concurrent_calls=1, max_wait_s=0)
        r = bench.call(duration_s=0.2, outcome=outcome)
        bench.wait(0.5)
        t, result = bench.heard(r, f"its work reported {outcome!r}")
        if result != outcome:
            raise Fail(f"A call whose work reported {outcome!r} heard {result!r}: pass the outcome on to reply.")
        nxt = bench.call(duration_s=0.2)
        if nxt["started"] is None:
            raise Fail(f"After a call that ended with {outcome!r}, the next call was refused (max_concurrent_calls=1): "
                       f"the permit was only given back on success. Give it back on every outcome.")
    bench = _bench(Bulkhead, ctx, max_concurrent_calls=1, max_wait_s=0)
    r = bench.call(raises=True)
    t, result = bench.heard(r, "its work raised an exception")
    if result != "error":
        raise Fail(f"A call whose work raised an exception heard {result!r}; it should hear 'error'.")
    nxt = bench.call(duration_s=0.2)
    if nxt["started"] is None:
        raise Fail("After a call whose work raised an exception, the next call was refused: the exception leaked "
                   "the permit. Give it back in the except branch (or a finally).")
    bench = _bench(Bulkhead, ctx, max_concurrent_calls=2, max_wait_s=0)
    bench.call(duration_s=0.2, done_twice=True)
    bench.wait(0.5)
    recs = [bench.call(duration_s=1.0) for _ in range(4)]
    started = sum(r["started"] is not None for r in recs)
    if started > 2:
        raise Fail(f"A call's work reported done twice, and afterwards your bulkhead ran {started} calls at once "
                   "with max_concurrent_calls=2: the second done() gave back a permit that was not held. Give a "
                   "permit back only the first time done() is called for a call.")
    # Work that answers, then raises: the except branch must see that done already gave the permit back.
    bench = _bench(Bulkhead, ctx, max_concurrent_calls=1, max_wait_s=0)
    r = bench.call(done_then_raise=True)
    if len(r["replies"]) > 1:
        raise Fail(f"A call's work called done('ok') and then raised an exception; its caller heard "
                   f"{', '.join(repr(x) for _, x in r['replies'])}: reply exactly once. The call was already done when it "
                   "raised, so the except branch has no permit to give back and nothing to reply.")
    recs = [bench.call(duration_s=1.0) for _ in range(3)]
    started = sum(x["started"] is not None for x in recs)
    if started > 1:
        raise Fail(f"A call's work called done('ok') and then raised an exception, and afterwards your bulkhead ran "
                   f"{started} calls at once with max_concurrent_calls=1: the except branch gave back a permit "
                   "that done() had already returned. Give it back only if the call is not done yet.")
    return "gave the permit back on ok, error, timeout and an exception, and only once per call"


def _at(t: float) -> str:
    """A time in seconds: to the hundredth, or finer when the hundredth would hide a difference (0.501, 0.4005)."""
    for digits in (2, 3):
        if abs(10 ** digits * t - round(10 ** digits * t)) < 1e-6:
            return f"{t:.{digits}f}"
    return f"{t:.4f}"


def _late_wake(Bulkhead, ctx) -> str | None:
    """If a waiter starts after the permit it waits for comes back: what that looks like, and whether a new
    call sent in between takes the free permit (barges past the waiter); None if the waiter starts on time."""
    def probe(newcomer_at=None):
        bench = _bench(Bulkhead, ctx, max_concurrent_calls=1, max_wait_s=1.0)
        bench.call(duration_s=0.4)
        bench.wait(0.1)
        waiter = bench.call(duration_s=0.1)
        newcomer = None
        if newcomer_at is not None:
            bench.wait(newcomer_at - bench.sim.now)
            newcomer = bench.call(duration_s=0.1)
        bench.wait(2.0)
        return waiter["started"], newcomer and newcomer["started"]

    started, _ = probe()
    if started is None or started <= 0.4 + 1e-6:
        return None
    said = (f"A waiter is not started when the permit comes back: with the only permit held until t=0.40 s, a "
            f"call waiting since t=0.10 s started at t={_at(started)} s.")
    midway = (0.4 + started) / 2
    waiter, newcomer = probe(midway)
    if newcomer is not None and (waiter is None or newcomer < waiter):
        return said + (f" Meanwhile the permit was free, and a new call sent at t={_at(midway)} s got it first: it "
                       "barged past a call that was already waiting. Start the oldest waiter in done(), the moment "
                       "the permit comes back, and let a new call wait behind those already waiting.")
    return said + " Start the oldest waiter in done(), the moment the permit comes back, not later from a timer."


def _waiters_went_wrong(Bulkhead, ctx, recs) -> str | None:
    """What the trace of three waiters (sent at 0.1, 0.2, 0.3 s behind a call holding the only permit until
    0.5 s) shows besides the instant call: rejected at once, served out of order, or one permit too many."""
    if all(r["started"] is None and r["replies"] and r["replies"][0][1] == "rejected"
           and r["replies"][0][0] <= r["sent"] + 1e-9 for r in recs):
        return ("None of them waited: each was told 'rejected' the moment it arrived. With max_wait_s > 0 a "
                "call waits up to max_wait_s for a permit.")
    second, third = recs[1]["started"], recs[2]["started"]
    if third is not None and (second is None or third < second):
        return ("The last waiter got a permit before the one sent ahead of it: serve waiters first come, first "
                "served (the oldest waiter gets the next permit).")
    probe = _bench(Bulkhead, ctx, max_concurrent_calls=1, max_wait_s=0)
    for _ in range(2):
        probe.call(duration_s=1.0)
    if probe.peak > 1:
        return (f"A fresh bulkhead with max_concurrent_calls=1 also ran {probe.peak} calls of 1 s at once: the permit "
                "count lets one call too many through. A call may start only while in_use < max_concurrent_calls.")
    return _late_wake(Bulkhead, ctx)


@semaphore.scenario("callbacks at awkward moments: work done at once, the next call sent from a reply")
def _reentrant(Bulkhead, ctx):
    # Work that calls done inside work(done) (an answer from a local cache): the permit is back at once.
    bench = _bench(Bulkhead, ctx, max_concurrent_calls=1, max_wait_s=0)
    for n in range(3):
        r = bench.call(instant=True)
        t, result = bench.heard(r, "its work called done('ok') at once")
        if r["started"] is None or result != "ok":
            raise Fail(f"Calls whose work calls done('ok') before work() returns (max_concurrent_calls=1): call "
                       f"{n + 1} heard {result!r}. Take the permit before you call work(done), and let done give it "
                       "back, even while work() is still running.")
    # The same while calls wait: the instant call's done starts the next waiter from inside work().
    bench = _bench(Bulkhead, ctx, max_concurrent_calls=1, max_wait_s=1.0)
    bench.call(duration_s=0.5)
    recs = []
    for instant in (True, False, False):
        bench.wait(0.1)
        recs.append(bench.call(duration_s=0.5, instant=instant))
    bench.wait(2.0)
    late = recs[2]["started"]
    if bench.peak > 1 or late is None or abs(late - 1.0) > 1e-6:
        seen = (f"ran {bench.peak} calls' work at once" if bench.peak > 1 else
                "never started the last of them" if late is None else f"started the last of them at t={late:.2f} s")
        cause = _waiters_went_wrong(Bulkhead, ctx, recs)
        if cause:
            raise Fail("Three calls, sent at t=0.10, 0.20 and 0.30 s, waited for the only permit "
                       "(max_concurrent_calls=1, max_wait_s=1.0), held by a call until t=0.50 s. " + cause)
        raise Fail("Three calls waited for the only permit (max_concurrent_calls=1, max_wait_s=1.0); the first "
                   "of them, started at t=0.50 s, called done('ok') inside work(), and your bulkhead then "
                   f"{seen} (the permits came back at t=0.50 s and 1.00 s). Take the permit before you call "
                   "work(done): done may come at once, while work() is still running.")
    # A caller that sends its next call the moment it hears (a closed-loop client), two rounds.
    bench = _bench(Bulkhead, ctx, max_concurrent_calls=1, max_wait_s=0)
    chain = []

    sends = [0]

    def then_send(result):
        if sends[0] < 2:
            sends[0] += 1
            chain.append(bench.call(duration_s=0.5, on_reply=then_send))

    first = bench.call(duration_s=0.5, on_reply=then_send)
    bench.wait(2.0)
    bench.heard(first, "the first call")
    for r in chain:
        t, result = bench.heard(r, "sent from the previous call's reply")
        if result == "rejected":
            raise Fail(f"A caller sent its next call from its reply callback, the moment it heard 'ok' "
                       f"(max_concurrent_calls=1, max_wait_s=0), and your bulkhead rejected it at t={t:.2f} s: the "
                       "permit of the call that had just finished was not back yet. Give the permit back before "
                       "you reply.")
    # The same caller while another call is already waiting: the waiter is older, so it goes first.
    bench = _bench(Bulkhead, ctx, max_concurrent_calls=1, max_wait_s=1.0)
    sent = []
    a = bench.call(duration_s=0.5, on_reply=lambda result: sent.append(bench.call(duration_s=0.5)))
    bench.wait(0.25)
    b = bench.call(duration_s=0.5)
    bench.wait(2.0)
    bench.heard(a, "ran first")
    c = sent[0]
    if c["started"] is not None and (b["started"] is None or c["started"] < b["started"]):
        raise Fail("A call waited for the only permit (sent at t=0.25 s); when the call ahead of it finished at "
                   "t=0.50 s, a new call sent at that moment from the finished call's reply got the permit first. "
                   "A free permit goes to the oldest waiter: a new call waits behind those already waiting.")
    if b["started"] is None or abs(b["started"] - 0.5) > 1e-6:
        when = "never" if b["started"] is None else f"at t={b['started']:.2f} s"
        raise Fail(f"A call that waited for the only permit (sent at t=0.25 s) started {when}; the permit came "
                   "back at t=0.50 s. When a call is done, start the oldest waiter at once.")
    for r, what in ((b, "waited"), (c, "sent from a reply while another call waited")):
        t, result = bench.heard(r, what)
        if result != "ok":
            raise Fail(f"A call sent from the reply of the call ahead of it, while another call waited "
                       f"(max_wait_s=1.0), heard {result!r} at t={t:.2f} s; it should have waited its turn and run.")
    bench.within_limit("With a new call sent from each reply")
    return "kept the permit count right when work finished at once and when callers sent calls from their replies"


# --------------------------------------------------------------------------------------------
# 04.2: Java's ThreadPoolExecutor rule.

_EXECUTOR_CASES = (
    # (core, max_threads, queue_capacity, tasks, what the case shows)
    (2, 4, 3, [(i * 0.001, 0.1) for i in range(10)], "a burst of 10 tasks"),
    (1, 8, 100, [(i * 0.001, 0.1) for i in range(6)], "core=1, max=8 and a roomy queue"),
    (1, 3, 0, [(i * 0.001, 1.0) for i in range(5)], "no queue (queue_capacity=0)"),
    (2, 3, 1, [(0.0, 0.2), (0.05, 0.2), (0.1, 0.5), (0.12, 0.5), (0.13, 0.5), (0.5, 0.1), (0.52, 0.1),
               (0.53, 0.1), (2.0, 0.1), (2.01, 0.1)], "a second burst after threads went idle"),
    (1, 2, 1, [(0.0, 0.5), (0.25, 0.25), (0.5, 0.25), (1.0, 0.25)],
     "a thread frees at the moment a task arrives: it takes the oldest queued task first"),
    (1, 1, 5, [(0.0, 0.1), (0.01, 0.1), (0.02, 0.1), (0.5, 0.1)],
     "one thread drains a queue of two between arrivals, oldest first, one task after another"),
)

_ACTION_HINTS = {
    ("extra", "queue"): "Java starts a thread beyond core only when the queue is full; while the queue has room, "
                        "a new task waits in it.",
    ("queue", "extra"): "The queue was full and fewer than max_threads threads existed: Java starts a new thread "
                        "for this task.",
    ("queue", "run"): "A thread was free (or fewer than core threads existed): the task runs at once.",
    ("run", "queue"): "Every thread was busy and at least core threads existed: the task goes into the queue.",
    ("reject", "queue"): "The queue had room for this task.",
    ("reject", "extra"): "The queue was full, but fewer than max_threads threads existed: a new thread starts.",
    ("queue", "reject"): "The queue was full and max_threads threads were busy: the task is rejected.",
    ("extra", "reject"): "The queue was full and max_threads threads were busy: the task is rejected.",
    ("run", "extra"): "No thread was free and the queue was full: this needs a thread beyond core.",
    ("extra", "run"): "A thread was idle, or fewer than core threads existed: no extra thread is needed.",
}

executor = register(Exercise(
    "04.2", "predict Java's ThreadPoolExecutor", answer="timeline",
    hints=(
        "Keep the threads (when each is next free), how many exist, and the queue of waiting tasks.",
        "Before each arrival, let every thread that is free by then take the oldest queued task, in time order "
        "(a thread that finishes at t takes the head of the queue at t).",
        "Then for the new task, in this order: fewer than core threads -> new thread, 'run'; an idle thread -> "
        "'run'; room in the queue -> 'queue'; fewer than max_threads -> new thread running THIS task, 'extra'; "
        "else 'reject'. A queued task's start is when a thread takes it.",
    )))


def _judge_timeline(answer, core, mx, cap, tasks, what):
    expected = executor_timeline(core, mx, cap, tasks)
    try:
        got = answer(core, mx, cap, list(tasks))
    except Fail:
        raise
    except Exception as exc:  # the learner's function crashed on this input: say which
        raise Fail(f"timeline({core}, {mx}, {cap}, tasks) raised {type(exc).__name__}: {exc} ({what}).") from None
    got = list(got) if isinstance(got, (list, tuple)) else got
    if not isinstance(got, list) or len(got) != len(tasks):
        raise Fail(f"timeline({core}, {mx}, {cap}, tasks) should return one (action, start_s) pair per task "
                   f"({len(tasks)}); got {got!r:.120}.")
    for i, pair in enumerate(got):
        if not (isinstance(pair, (list, tuple)) and len(pair) == 2):
            raise Fail(f"Task {i}'s entry should be a pair (action, start_s); got {pair!r}.")
        if pair[0] not in TASK_ACTIONS:
            raise Fail(f"Task {i}'s action should be one of {', '.join(map(repr, TASK_ACTIONS))}; got {pair[0]!r}.")
    mine, theirs = [str(p[0]) for p in got], [a for a, _ in expected]
    if mine != theirs and sorted(mine) == sorted(theirs) and any(
            t == "extra" and m == "queue" for m, t in zip(mine, theirs)):
        raise Fail(f"With core={core}, max_threads={mx}, queue_capacity={cap} ({what}), your timeline has as many "
                   "tasks running, queued, on extra threads and rejected as Java's, but not the same tasks: a "
                   "thread beyond core runs the task whose arrival found the queue full, not the oldest queued one.")
    for i, (pair, (want_action, want_start)) in enumerate(zip(got, expected)):
        action = pair[0]
        if action != want_action:
            arrival = tasks[i][0]
            crowded = ("run", "queue", "extra", "reject")   # the answer placed the task as if a thread were busy
            frees_now = str(action) in crowded and crowded.index(str(action)) > crowded.index(want_action) and any(
                start is not None and j < i and abs(start + tasks[j][1] - arrival) < 1e-9
                            for j, (_, start) in enumerate(expected))
            raise Fail(f"With core={core}, max_threads={mx}, queue_capacity={cap} ({what}), your timeline says task "
                       f"{i} (arriving at t={arrival:g} s) is {action!r}; it is not. "
                       + (f"A thread finishes at t={arrival:g} s, the instant task {i} arrives: a thread free at t "
                          "is free for an arrival at t (it takes the oldest queued task first, then the arrival "
                          "is placed). Treat finish <= arrival as free, not <."
                          if frees_now else _ACTION_HINTS.get((action, want_action), "")))
    for i, (pair, (want_action, want_start)) in enumerate(zip(got, expected)):
        start = pair[1]
        if want_start is None:
            if start is not None:
                raise Fail(f"Task {i} was rejected, so its start_s should be None; yours was {start!r}.")
            continue
        if not isinstance(start, (int, float)) or isinstance(start, bool) or abs(start - want_start) > 1e-6:
            extra = (" A thread beyond core runs the task that made it start, at once; the queued tasks wait for "
                     "the next free thread." if want_action == "extra" else
                     " A queued task starts when the first thread becomes free, oldest task first."
                     if want_action == "queue" else "")
            raise Fail(f"With core={core}, max_threads={mx}, queue_capacity={cap} ({what}), task {i} is "
                       f"{want_action!r} as you said, but your start_s was {start!r}; it is not." + extra)
    return what


@executor.scenario("a burst into core=2, max_threads=4, queue_capacity=3")
def _burst(answer, ctx):
    return _judge_timeline(answer, *_EXECUTOR_CASES[0])


@executor.scenario("the surprise: threads beyond core start only when the queue is full")
def _surprise(answer, ctx):
    return _judge_timeline(answer, *_EXECUTOR_CASES[1])


@executor.scenario("no queue at all, threads reused after a burst, a queue drained between arrivals, and a thread "
                   "that frees as a task arrives")
def _sync_and_rounds(answer, ctx):
    _judge_timeline(answer, *_EXECUTOR_CASES[2])
    _judge_timeline(answer, *_EXECUTOR_CASES[3])
    _judge_timeline(answer, *_EXECUTOR_CASES[5])
    return _judge_timeline(answer, *_EXECUTOR_CASES[4])


# --------------------------------------------------------------------------------------------
# 04.3: size the partitions.

SIZING_TARGETS = dict(budget=TOTAL_WORKERS, seeds=tuple(range(100, 120)), duration_s=40.0, incident=(10.0, 35.0),
                      checkout_success=0.995, checkout_p99_ms=300.0, product_normal_success=0.99,
                      product_rejected_share=0.90, product_reject_ms=100.0, reporting_success=0.98)
_SIZING_KEYS = ("checkout_workers", "product_workers", "reporting_workers", "max_wait_s")

sizing = register(Exercise(
    "04.3", "size the partitions", answer="SIZING",
    hints=(
        "Little's law: workers busy on average = arrival rate x mean time a call holds a worker. Work it out for "
        "each kind when healthy (payments 80 ms, recommendations 50 ms, reports 250 ms, each a little more on "
        "average because of the spread).",
        "Average is not enough: Poisson arrivals bunch up, so give each partition headroom above its average. "
        "During the incident the product partition is full whatever its size; what matters is how its callers "
        "fail.",
        "Checkout and reporting need their average times about 3, plus a few; product gets what is left, but no "
        "more than it needs when healthy. A product call that waits for a worker in the incident waits for "
        "nothing: keep max_wait_s small.",
    )))

_sized: dict = {}


def _sized_runs(answer):
    if not isinstance(answer, dict) or set(answer) != set(_SIZING_KEYS):
        raise Fail(f"SIZING should be a dict with exactly the keys {', '.join(_SIZING_KEYS)}; got {answer!r}.")
    sizes = [number(answer[k], f"SIZING[{k!r}] is", whole=True,
                    should="it should be a whole number of workers, at least 1") for k in _SIZING_KEYS[:3]]
    for k, size in zip(_SIZING_KEYS, sizes):
        if size < 1:
            raise Fail(f"SIZING[{k!r}] should be a whole number of workers, at least 1; got {answer[k]!r}.")
    wait = number(answer["max_wait_s"], "SIZING['max_wait_s'] is", should="it should be a number of seconds from 0 to 2")
    if not 0 <= wait <= 2:
        raise Fail(f"SIZING['max_wait_s'] should be a number of seconds from 0 to 2; got {wait!r}.")
    if sum(sizes) > SIZING_TARGETS["budget"]:
        raise Fail(f"The partitions add up to {sum(sizes)} workers; the budget is {SIZING_TARGETS['budget']}.")
    key = tuple(sorted((k, type(v).__name__, repr(v)) for k, v in answer.items()))
    if key not in _sized:
        if len(_sized) >= 8:
            _sized.clear()
        t = SIZING_TARGETS
        _sized[key] = [simulate(design="bulkheads", seed=s, duration_s=t["duration_s"], incident=t["incident"],
                                checkout_workers=sizes[0], product_workers=sizes[1], reporting_workers=sizes[2],
                                max_wait_s=wait)
                       for s in t["seeds"]]
    return _sized[key]


@sizing.scenario("checkout keeps 99.5 % success and p99 <= 300 ms during the incident (20 seeds)")
def _checkout(answer, ctx):
    t = SIZING_TARGETS
    worst = min((run.summary()["checkout"]["success_rate"], run.settings["seed"]) for run in _sized_runs(answer))
    if worst[0] < t["checkout_success"]:
        short = percent_short_of(worst[0], t["checkout_success"])
        raise Fail(f"With seed {worst[1]}, checkout succeeded for only {short} of its requests during "
                   f"the incident (target {100 * t['checkout_success']:.1f} %): its partition of "
                   f"{answer['checkout_workers']} is too small for its bursts. Little's law gives the average; add "
                   "headroom.")
    p99 = max(run.summary()["checkout"]["p99_ms"] for run in _sized_runs(answer))
    if p99 > t["checkout_p99_ms"]:
        raise Fail(f"Checkout's p99 during the incident reached {p99:,.0f} ms (target {t['checkout_p99_ms']:.0f} ms): "
                   "its calls wait for workers. More workers for checkout, or less waiting.")
    return f"checkout: at least {100 * worst[0]:.1f} % success, p99 at most {p99:,.0f} ms"


@sizing.scenario("product pages: healthy before the incident, fast rejections during it (20 seeds)")
def _product(answer, ctx):
    t = SIZING_TARGETS
    runs = _sized_runs(answer)
    before = [(run.outcomes("product", (0.0, t["incident"][0])), run.settings["seed"]) for run in runs]
    worst, seed = min((d["ok"] / max(1, d["requests"]), s) for d, s in before)
    if worst < t["product_normal_success"]:
        raise Fail(f"Before the incident, with recommendations healthy, product pages succeeded only "
                   f"{percent_short_of(worst, t['product_normal_success'])} of the time with seed {seed} (target "
                   f"{100 * t['product_normal_success']:.0f} %): "
                   f"a partition of {answer['product_workers']} rejects its own ordinary bursts.")
    share, wait_ms = 1.0, 0.0
    for run in runs:
        d = run.outcomes("product", run.incident)
        failed = d["requests"] - d["ok"]
        if failed:
            share = min(share, d["rejected"] / failed)
        wait_ms = max(wait_ms, run.summary()["product"]["rejected_p99_ms"] if d["rejected"] else 0.0)
    if wait_ms > t["product_reject_ms"]:
        raise Fail(f"During the incident, product pages' rejected calls waited up to {wait_ms:,.0f} ms before being "
                   f"told no (p99; target {t['product_reject_ms']:.0f} ms): a long max_wait_s holds a request thread "
                   "for nothing while the dependency is slow.")
    if share < t["product_rejected_share"]:
        raise Fail(f"During the incident only {100 * share:.0f} % of product pages' failures were fast rejections "
                   f"(target {100 * t['product_rejected_share']:.0f} %); the rest waited for the 2 s dependency and "
                   f"timed out. A partition of {answer['product_workers']} admits more slow calls than it needs.")
    return f"product: healthy before, {100 * share:.0f} % of its incident failures were fast rejections"


@sizing.scenario("reporting keeps 98 % success (20 seeds)")
def _reporting(answer, ctx):
    outcomes = [(run.outcomes("reporting"), run.settings["seed"]) for run in _sized_runs(answer)]
    worst, seed = min((d["ok"] / max(1, d["requests"]), s) for d, s in outcomes)
    if worst < SIZING_TARGETS["reporting_success"]:
        short = percent_short_of(worst, SIZING_TARGETS["reporting_success"])
        raise Fail(f"Reporting succeeded only {short} of the time with seed {seed} (target "
                   f"{100 * SIZING_TARGETS['reporting_success']:.0f} %): its slow queries need more than "
                   f"{answer['reporting_workers']} workers.")
    return f"reporting: at least {100 * worst:.1f} % success"


# --------------------------------------------------------------------------------------------
# 04.4: when a bulkhead hurts.

_CHOICES = {
    "a": (False, "No: two kinds of work with different dependencies and one of them prone to slow down is the "
                 "case partitions are made for; a partition costs idle capacity, but here it buys isolation."),
    "b": (True, "Right: eight identical workers for one kind of work calling one database isolate nothing (a slow "
                "database slows both halves alike), and each half of four queues during bursts while the other "
                "half sits idle: the pool got smaller and nothing got safer."),
    "c": (False, "No: sizes from measured rates and latencies by Little's law, with headroom, are how partitions "
                 "should be sized; the cost of partitioning is there, but it buys something."),
    "d": (False, "No: a connection pool per database is a bulkhead that pays its way: one database's slowness "
                 "cannot hold the connections the other needs."),
}

concept = concept_question("04.4", "when a bulkhead hurts", _CHOICES,
                           hints=("Ask of each split: what failure does it isolate, and what capacity does it leave idle?",))


# --------------------------------------------------------------------------------------------
# 04.5 (a stretch): an AIMD concurrency limiter.

# 100 requests/s overload both servers (8 workers x 0.2 s serve about 38/s, 16 about 76/s), so the
# limit has a capacity to find. The run is short because every acquire and release is a call into the
# learner's code, a round trip when the grader runs it: 3 runs x 40 s x 100/s is about 20,000 of them
# (at 300/s for 60 s it was 89,000, 19 s of grading). 25 s let a slow but honest increase (+0.1/limit)
# reach 16 workers' capacity before the limit is measured.
AIMD_TARGETS = dict(rate_rps=100.0, duration_s=40.0, settle_s=25.0, latency_s=0.2, queue_capacity=2,
                    p99_factor=2.0)
AIMD_OVERSHOOT = 2.5  # the limit's average may reach this many times what the server holds (see _judge_aimd)

aimd = register(Exercise(
    "04.5", "an AIMD concurrency limiter (stretch)", answer="AIMDLimiter",
    hints=(
        "Keep the limit (a float) and the calls in flight. acquire() admits a call while in_flight < limit.",
        "release(ok): one call fewer in flight. A success raises the limit a little (TCP's +1/limit, or the "
        "library's +1); a failure (the server refused or dropped the call) cuts it by a factor.",
        "Additive increase, multiplicative decrease: limit += 1 / limit on success; limit = max(1, limit * 0.9) on "
        "failure. Nothing else: the server's refusals tell the limiter where its capacity is.",
    )))


def _aimd_run(Limiter, *, workers, initial_limit, seed):
    """`rate_rps` requests/s at a server with `workers` workers and a short queue, through the learner's limiter."""
    t = AIMD_TARGETS
    sim = Sim(seed)
    limiter = construct(Limiter, sim, initial_limit=initial_limit,
                        shown=f"clock, initial_limit={initial_limit}")
    server = Service(sim, "server", latency_s=t["latency_s"], latency_sigma=0.3,
                     pool=WorkerPool(workers, queue_capacity=t["queue_capacity"]))
    limits, served = [], []

    def arrive():
        if limiter.acquire():
            response = server.call()
            sim.after(response.latency_s, settle, response)
        nxt = sim.now + sim.rng.expovariate(t["rate_rps"])
        if nxt < t["duration_s"]:
            sim.at(nxt, arrive)

    def settle(response):
        limiter.release(response.ok)
        if response.ok and sim.now >= t["settle_s"]:
            served.append(response.latency_s)

    def sample():
        limit = limiter.limit
        if isinstance(limit, bool) or not isinstance(limit, (int, float)) or not math.isfinite(limit):
            raise Fail(f"limiter.limit should be a finite number; yours was {limit!r} at t={sim.now:.1f} s.")
        if sim.now >= t["settle_s"]:
            limits.append(float(limit))
        if sim.now + 0.1 < t["duration_s"]:
            sim.after(0.1, sample)

    sim.at(0.0, arrive)
    sim.at(0.05, sample)
    sim.run(until=t["duration_s"] + 5)
    return limits, served


def _judge_aimd(Limiter, ctx, workers, initial_limit):
    refuse_reference(Limiter, WorkerPool, "lk.WorkerPool", "pool")
    limits, served = _aimd_run(Limiter, workers=workers, initial_limit=initial_limit, seed=40 + workers)
    t = AIMD_TARGETS
    # An AIMD limit is a sawtooth: it climbs past what the server holds until a refusal cuts it. How far it
    # climbs depends on the raise: TCP's +1/limit averages about 1.1 x (workers + queue), the cited library's
    # +1 per success (while at least half the limit is in flight, a whole-number limit) about 1.5 x, and a
    # bare +1 per success up to 2.1 x with 16 workers; +2 per success, 3 x and more, and a limit never cut
    # grows without end. So the upper bound is 2.5 x the calls the server holds (workers plus queue).
    lo, hi = workers, AIMD_OVERSHOOT * (workers + t["queue_capacity"])
    mean = sum(limits) / len(limits) if limits else math.nan
    if not lo <= mean <= hi:
        where = "above" if mean > hi else "below"
        raise Fail(f"A server with {workers} workers and a queue of {t['queue_capacity']}, {t['rate_rps']:g} requests/s, "
                   f"your limiter starting at initial_limit={initial_limit}: over the last "
                   f"{t['duration_s'] - t['settle_s']:g} s its limit averaged "
                   f"{mean:.1f}, {where} [{lo}, {hi:g}]. "
                   + ("Does a refused call (ok=False) cut the limit, and is a success's raise small (TCP's +1/limit, "
                      "or at most the library's +1)? A raise larger than that outgrows any cut."
                      if mean > hi else
                      "Does every success raise the limit a little? And is a refusal's cut gentle (a factor such "
                      "as 0.9)? Halving, or going back to 1, on every refusal keeps the limit below what the "
                      "server can take."))
    from labkit.trace import percentile

    p99 = percentile(sorted(served), 99) if served else math.inf
    unloaded = t["latency_s"] * math.exp(2.326 * 0.3)
    if p99 > t["p99_factor"] * unloaded:
        raise Fail(f"Calls the server served in the last {t['duration_s'] - t['settle_s']:g} s had a p99 of "
                   f"{1000 * p99:.0f} ms, more than twice its unloaded p99 ({1000 * unloaded:.0f} ms): the limiter lets a "
                   "queue build.")
    return f"{workers} workers from initial_limit={initial_limit}: limit averaged {mean:.1f}, p99 {1000 * p99:.0f} ms"


def _starts_at_and_cuts_by_a_factor(Limiter):
    """The limit starts at initial_limit, and a refusal's cut is proportional to the limit (multiplicative)."""
    cuts = {}
    for initial_limit in (7, 100, 20):
        limiter = construct(Limiter, Sim(0), initial_limit=initial_limit, shown=f"clock, initial_limit={initial_limit}")
        limit = _limit_of(limiter)
        if limit != initial_limit:
            raise Fail(f"A new limiter built with initial_limit={initial_limit} had limit {limit:g} before any call: "
                       "the limit starts at the initial_limit it is given.")
        if initial_limit == 7:
            continue
        if not limiter.acquire():
            raise Fail(f"A new limiter with initial_limit={initial_limit} refused the first call, with none in flight.")
        limiter.release(False)
        cuts[initial_limit] = initial_limit - _limit_of(limiter)
    if cuts[20] > 0 and cuts[100] < 3 * cuts[20]:
        raise Fail(f"One refused call cut a limit of 100 by {cuts[100]:g} and a limit of 20 by {cuts[20]:g}. "
                   "Multiplicative decrease cuts by a factor, so the cut grows with the limit (0.9 takes 10 off 100 "
                   "and 2 off 20); taking off a fixed amount is additive, and a large limit then comes down slowly.")


def _raises_by_a_little(Limiter, successes=3):
    """A success's raise is additive: at most 1 each, and no larger at a large limit than at a small one."""
    gains = {}
    for initial_limit in (10, 100):
        limiter = construct(Limiter, Sim(0), initial_limit=initial_limit, shown=f"clock, initial_limit={initial_limit}")
        # Every permitted call in flight, so a raise that waits for at least half the limit in flight comes too.
        admitted = sum(bool(limiter.acquire()) for _ in range(initial_limit))
        for _ in range(min(successes, admitted)):
            limiter.release(True)
        gains[initial_limit] = _limit_of(limiter) - initial_limit
    per_call = "TCP's +1/limit, or the library's +1"
    if gains[10] > 0 and gains[100] > 3 * gains[10]:
        raise Fail(f"{successes} successes raised a limit of 10 by {gains[10]:.2f} and a limit of 100 by "
                   f"{gains[100]:.2f}: the raise grows with the limit, so it multiplies. AIMD's increase is "
                   f"additive: each success adds a small amount ({per_call}), no more at a large limit than at a "
                   "small one, so the limit creeps up on the server's capacity instead of overshooting it.")
    for initial_limit, gain in gains.items():
        if gain > successes + 1e-9:
            raise Fail(f"{successes} successes raised a limit of {initial_limit} by {gain:.2f}, more than 1 per "
                       f"success. AIMD's increase is additive and small: each success adds at most 1 ({per_call}).")


def _admits_its_limit(Limiter, initial_limit=6, sent=9):
    """In flight means admitted and not yet released: the limit bounds that, and only release() moves the limit."""
    _starts_at_and_cuts_by_a_factor(Limiter)
    limiter = construct(Limiter, Sim(0), initial_limit=initial_limit, shown=f"clock, initial_limit={initial_limit}")
    admitted = sum(bool(limiter.acquire()) for _ in range(sent))
    limit = _limit_of(limiter)
    if limit != initial_limit:
        raise Fail(f"A new limiter with initial_limit={initial_limit} was asked for {sent} calls, none of which had "
                   f"come back, and its limit became {limit:g}: only release() should move the limit, once an "
                   "outcome is known.")
    if admitted != initial_limit:
        raise Fail(f"A new limiter with initial_limit={initial_limit} admitted {admitted} of {sent} calls sent before "
                   f"any came back; a limit of {initial_limit} means at most {initial_limit} calls in flight. "
                   "Does acquire() admit while in_flight < limit (not <=), with in_flight starting at 0?")
    for _ in range(admitted):
        limiter.release(True)
    limit = _limit_of(limiter)
    if limit < initial_limit:
        raise Fail(f"A limiter with initial_limit={initial_limit} saw {admitted} calls come back with ok=True, and "
                   f"its limit fell to {limit:.2f}. A success raises the limit (a little); a refusal cuts it.")
    again = sum(bool(limiter.acquire()) for _ in range(2 * sent))
    if again < initial_limit:
        raise Fail(f"A limiter with initial_limit={initial_limit} admitted {initial_limit} calls and refused "
                   f"{sent - initial_limit}; all {initial_limit} came back with ok=True (its limit is now {limit:.2f}), "
                   f"and then it admitted only {again} new calls. Only admitted calls are in flight: does a refused "
                   "acquire() leave in_flight alone, and does release() count each call out?")
    for _ in range(again):
        limiter.release(False)
    if _limit_of(limiter) >= limit:
        raise Fail(f"A limiter's {again} calls in flight all came back refused (ok=False), and its limit went from "
                   f"{limit:.2f} to {_limit_of(limiter):.2f}. A refusal means the server is full: cut the limit by "
                   "a factor." + (" (It did not move at all: is the limit kept in the attribute limit?)"
                                  if _limit_of(limiter) == limit else ""))
    admits = limiter.acquire()
    if not admits and _limit_of(limiter) < 1:
        raise Fail(f"Every call a limiter had admitted came back refused (ok=False), and its limit fell to "
                   f"{_limit_of(limiter):.2f}, below one call; with none in flight it refused the next call. A limit "
                   "that low admits nothing, so no success can ever raise it again: the limiter is shut for good. "
                   "Keep the cut from taking the limit below 1 (the library's floor).")
    if not admits:
        raise Fail(f"Every call a limiter had admitted came back refused (ok=False); with none in flight and its "
                   f"limit at {_limit_of(limiter):.2f}, it refused the next call. A refused call is out of flight "
                   "too: release(False) counts it out, then cuts the limit.")
    _raises_by_a_little(Limiter)   # after the in-flight checks: its probe relies on acquire and release counting


def _limit_of(limiter) -> float:
    limit = limiter.limit
    if isinstance(limit, bool) or not isinstance(limit, (int, float)) or not math.isfinite(limit):
        raise Fail(f"limiter.limit should be a finite number; yours was {limit!r}.")
    return float(limit)


@aimd.scenario("grows from a small limit to the capacity of an 8-worker server", points=0.5)
def _aimd_grows(Limiter, ctx):
    _admits_its_limit(Limiter)
    return _judge_aimd(Limiter, ctx, 8, 2)


@aimd.scenario("shrinks from a large limit; finds 16 workers as well as 8", points=0.5)
def _aimd_shrinks(Limiter, ctx):
    _judge_aimd(Limiter, ctx, 8, 100)
    return _judge_aimd(Limiter, ctx, 16, 4)
