"""Callers, retries and circuit breakers in front of a `Service` (lesson 03)."""
from __future__ import annotations

import functools
import math
from bisect import bisect_left
from dataclasses import dataclass, field

from labkit import validate
from labkit.clock import Sim
from labkit.service import Outage, Service
from labkit.trace import SimRun, bin_cuts, bins, latency_summary, percentile

CLOSED, OPEN, HALF_OPEN = "closed", "open", "half_open"
STATES = (CLOSED, OPEN, HALF_OPEN)


class CircuitBreaker:
    """labkit's reference circuit breaker, in resilience4j's vocabulary (lesson 03).

    closed: calls flow; `failure_threshold` consecutive failures open it (or, when
    `failure_rate_threshold` is set, a failure rate >= that share over the last
    `window_size` calls, once `minimum_calls` have been seen).
    open: calls are rejected at once. The first call after `recovery_timeout_s` moves it
    to half_open; nothing happens without a call (lazy, as resilience4j and Polly do).
    half_open: at most `half_open_max_calls` trial calls in flight; `success_threshold`
    successes close it; any failed trial re-opens it and restarts the timeout.
    """

    def __init__(self, clock, *, failure_threshold: int = 5, recovery_timeout_s: float = 10.0,
                 success_threshold: int = 1, half_open_max_calls: int = 1,
                 failure_rate_threshold: float | None = None, window_size: int = 20,
                 minimum_calls: int = 10):
        if not hasattr(clock, "now"):
            raise ValueError(f"clock must have a .now attribute (a labkit Sim), got {clock!r}")
        self.clock = clock
        self.failure_threshold = validate.number("failure_threshold", failure_threshold, lo=1, integer=True)
        self.recovery_timeout_s = validate.number("recovery_timeout_s", recovery_timeout_s, lo=0, lo_open=True)
        self.success_threshold = validate.number("success_threshold", success_threshold, lo=1, integer=True)
        self.half_open_max_calls = validate.number("half_open_max_calls", half_open_max_calls, lo=1, integer=True)
        if failure_rate_threshold is not None:
            validate.number("failure_rate_threshold", failure_rate_threshold, lo=0, hi=1, lo_open=True)
        self.failure_rate_threshold = failure_rate_threshold
        self.window_size = validate.number("window_size", window_size, lo=1, integer=True)
        self.minimum_calls = validate.number("minimum_calls", minimum_calls, lo=1, hi=window_size, integer=True)
        self.state = CLOSED
        self._failures = 0            # consecutive failures while closed
        self._window: list[bool] = []  # recent outcomes (True = failure), rate mode only
        self._opened_at = 0.0
        self._trials_in_flight = 0
        self._trial_successes = 0

    def allow_request(self) -> bool:
        """Ask before each call: True means go ahead, False means fail fast (use a fallback)."""
        if self.state == OPEN:
            if self.clock.now - self._opened_at < self.recovery_timeout_s:
                return False
            self.state, self._trials_in_flight, self._trial_successes = HALF_OPEN, 0, 0
        if self.state == HALF_OPEN:
            if self._trials_in_flight >= self.half_open_max_calls:
                return False
            self._trials_in_flight += 1
        return True

    def on_success(self) -> None:
        """Report that an admitted call succeeded."""
        if self.state == CLOSED:
            self._failures = 0
            self._remember(False)
            # resilience4j re-evaluates after every outcome: a success can still leave the rate above.
            if self.failure_rate_threshold is not None and self._should_open():
                self._open()
        elif self.state == HALF_OPEN:
            self._trials_in_flight = max(0, self._trials_in_flight - 1)
            self._trial_successes += 1
            if self._trial_successes >= self.success_threshold:
                self.state, self._failures, self._window = CLOSED, 0, []
        # A late success from before the breaker opened changes nothing.

    def on_failure(self) -> None:
        """Report that an admitted call failed (an error or a timeout)."""
        if self.state == CLOSED:
            self._failures += 1
            self._remember(True)
            if self._should_open():
                self._open()
        elif self.state == HALF_OPEN:
            self._open()

    def _remember(self, failed: bool) -> None:
        if self.failure_rate_threshold is not None:
            self._window.append(failed)
            if len(self._window) > self.window_size:
                del self._window[0]

    def _should_open(self) -> bool:
        if self.failure_rate_threshold is None:
            return self._failures >= self.failure_threshold
        calls = len(self._window)
        # resilience4j: below minimum_calls no rate is computed; at the threshold it opens (>=).
        return calls >= self.minimum_calls and sum(self._window) / calls >= self.failure_rate_threshold

    def _open(self) -> None:
        self.state, self._opened_at = OPEN, self.clock.now

    def __repr__(self) -> str:
        return f"CircuitBreaker(state={self.state!r}, failure_threshold={self.failure_threshold})"


@dataclass
class CallsRun(SimRun):
    """The result of `simulate_calls`: the simulation, its settings, and summaries read from the trace."""

    sim: Sim
    duration_s: float
    outage: tuple[float, float] | None
    settings: dict = field(default_factory=dict)

    def requests(self):
        return self._once("requests", lambda: self.trace.select("client", "request"))

    def _columns(self) -> dict:
        """The requests' times, latencies (s) and outcomes as lists, read once for every summary and series."""

        def compute():
            fields = self.trace.fields("client", "request")
            return {"time_s": self.trace.times("client", "request"), "latency_s": [f["latency_s"] for f in fields],
                    "outcome": [f["outcome"] for f in fields]}

        return self._once("columns", compute)

    def series(self, bin_s: float = 1.0) -> dict:
        """Per-bin time series: success rate, service load and p99 latency."""
        return self._once(("series", bin_s), lambda: self._series(bin_s))

    def _binned(self, bin_s):
        """Callers' requests by time bin: (bin starts, sorted latencies in s, ok counts)."""

        def compute():
            edges = bins(0, self.duration_s, bin_s)
            columns = self._columns()   # in time order, as the trace is
            cuts = bin_cuts(columns["time_s"], 0, bin_s, len(edges), len(edges) * bin_s)
            latency, outcome = columns["latency_s"], columns["outcome"]
            pairs = list(zip(cuts, cuts[1:]))
            return edges, [sorted(latency[a:b]) for a, b in pairs], [outcome[a:b].count("ok") for a, b in pairs]

        return self._once(("binned", bin_s), compute)

    def _call_times(self) -> list[float]:
        return self._once("call_times", lambda: self.trace.times("backend", "call"))

    def _series(self, bin_s):
        t, latencies, ok = self._binned(bin_s)
        cuts = bin_cuts(self._call_times(), 0, bin_s, len(t), self.duration_s)
        load = [(b - a) / bin_s for a, b in zip(cuts, cuts[1:])]
        success = [k / len(g) if g else math.nan for k, g in zip(ok, latencies)]
        p99 = [percentile(g, 99) * 1000 if g else math.nan for g in latencies]
        return {"time_s": t, "success_rate": success, "service_load_rps": load, "p99_ms": p99}

    def latency_series(self, bin_s: float = 1.0) -> dict:
        """Per-bin p50/p95/p99 latency of callers' requests, in ms."""
        return self._once(("latency", bin_s), lambda: self._latency_series(bin_s))

    def _latency_series(self, bin_s):
        t, latencies, _ = self._binned(bin_s)
        out = {f"p{q}_ms": [percentile(g, q) * 1000 if g else math.nan for g in latencies] for q in (50, 95, 99)}
        out["time_s"] = t
        return out

    def state_intervals(self) -> list[tuple[float, float, str]]:
        """The breaker's states as (start_s, end_s, state) intervals; empty without a breaker."""
        return list(self._once("states", self._state_intervals))

    def _state_intervals(self):
        changes = self.trace.select("breaker", "state")
        if not changes:
            return []
        out, state, since = [], CLOSED, 0.0
        for e in changes:
            if e.time_s >= self.duration_s:
                break  # calls in flight at the end settle after it; the plot stops at duration_s
            if e.fields["state"] != state:
                if e.time_s > since:
                    out.append((since, e.time_s, state))
                state, since = e.fields["state"], e.time_s
        out.append((since, self.duration_s, state))
        return out

    def recovery_s(self, bin_s: float = 1.0) -> float:
        """Seconds from the end of the outage to the first bin whose success rate is back to
        90 % of the pre-outage rate (inf if it never gets there; NaN without an outage)."""
        if self.outage is None:
            return math.nan
        s = self.series(bin_s)
        before = [r for t, r in zip(s["time_s"], s["success_rate"]) if t + bin_s <= self.outage[0] and r == r]
        target = 0.9 * (sum(before) / len(before) if before else 1.0)
        end = self.outage[1]
        for t, rate in zip(s["time_s"], s["success_rate"]):
            if t >= end and rate >= target:
                return t - end
        return math.inf

    def summary(self) -> dict:
        """The headline numbers a learner compares between runs."""
        return dict(self._once("summary", self._summary))

    def latency(self) -> dict:
        """Callers' p50/p95/p99 latency in ms over the whole run."""
        return dict(self._once("latency", lambda: latency_summary(self._columns()["latency_s"])))

    def _summary(self) -> dict:
        outcomes = self._columns()["outcome"]
        n = len(outcomes) or 1
        calls = self._call_times()
        in_outage = bisect_left(calls, self.outage[1]) - bisect_left(calls, self.outage[0]) if self.outage else 0
        return {
            "requests": len(outcomes),
            "success_rate": outcomes.count("ok") / n,
            "fallback_rate": outcomes.count("fallback") / n,
            "failed_rate": outcomes.count("failed") / n,
            "service_calls": len(calls),
            "calls_during_outage": in_outage,
            "p99_ms": self.latency()["p99_ms"],
            "recovery_s": self.recovery_s(),
        }


def summarize_calls(runs: dict):
    """A table comparing `simulate_calls` runs side by side, one column per label (lesson 03)."""
    from labkit.widgets import Table

    validate.runs(runs, CallsRun, "simulate_calls")
    sums = {label: run.summary() for label, run in runs.items()}
    pct = lambda v: f"{100 * v:.1f} %"  # noqa: E731
    secs = lambda v: "not yet" if math.isinf(v) else "no outage" if math.isnan(v) else f"{v:.0f} s"  # noqa: E731
    rows = {
        "callers' success": [pct(s["success_rate"]) for s in sums.values()],
        "fallbacks (refused fast)": [pct(s["fallback_rate"]) for s in sums.values()],
        "failed after waiting": [pct(s["failed_rate"]) for s in sums.values()],
        "calls that reached the service": [s["service_calls"] for s in sums.values()],
        "... of them during the outage": [s["calls_during_outage"] for s in sums.values()],
        "callers' p99 latency": [f"{s['p99_ms']:,.0f} ms" for s in sums.values()],
        "recovered after the outage in": [secs(s["recovery_s"]) for s in sums.values()],
    }
    return Table(rows, columns=list(runs))


@functools.lru_cache(maxsize=64)
def _without_breaker(rate_rps, outage_s, retries, seed) -> CallsRun:
    """breaker_playground's run without a breaker: it depends only on the traffic, so it is kept."""
    return simulate_calls(seed=seed, rate_rps=rate_rps, outage_s=outage_s, retries=retries)


def breaker_playground(*, rate_rps: float = 25.0, outage_s: float = 30.0, retries: int = 3,
                       failure_threshold: int = 5, recovery_timeout_s: float = 5.0,
                       success_threshold: int = 1, half_open_max_calls: int = 1, seed: int = 1) -> dict:
    """The same outage without and with labkit's breaker, for the Play widget (lesson 03).

    The run without a breaker depends only on the traffic, so it is cached: moving a
    breaker knob re-simulates one run, not two.
    """
    def breaker(clock):
        return CircuitBreaker(clock, failure_threshold=failure_threshold, recovery_timeout_s=recovery_timeout_s,
                              success_threshold=success_threshold, half_open_max_calls=half_open_max_calls)

    with_breaker = simulate_calls(seed=seed, rate_rps=rate_rps, outage_s=outage_s, retries=retries, breaker=breaker)
    return {"without breaker": _without_breaker(rate_rps, outage_s, retries, seed), "with breaker": with_breaker}


def show_calls(runs: dict):
    """(table, chart) for a dict of labelled runs: what the Play widget displays (lesson 03)."""
    from labkit.plots import plot_calls

    return summarize_calls(runs), plot_calls(list(runs.values()), list(runs))


def simulate_calls(*, seed: int = 1, duration_s: float = 90.0, rate_rps: float = 25.0,
                   outage_start_s: float = 20.0, outage_s: float = 30.0, timeout_s: float = 1.0,
                   retries: int = 0, breaker=None, latency_s: float = 0.05,
                   error_rate: float = 0.0, max_concurrency: int = 10, faults=None) -> CallsRun:
    """Callers at `rate_rps` hit a service that dies for `outage_s`; returns the run (lesson 03).

    `breaker` is a factory called with the simulation's clock (for example
    `lambda clock: lk.CircuitBreaker(clock, failure_threshold=5)`), or None for no breaker.
    Failed calls are retried at once up to `retries` times, as naive clients do.
    """
    validate.number("duration_s", duration_s, lo=1, hi=3600)
    validate.number("rate_rps", rate_rps, lo=0, hi=5000, lo_open=True)
    validate.number("outage_s", outage_s, lo=0, hi=duration_s)
    validate.number("outage_start_s", outage_start_s, lo=0, hi=duration_s, hi_open=outage_s > 0)
    validate.number("timeout_s", timeout_s, lo=0, lo_open=True)
    validate.number("retries", retries, lo=0, hi=10, integer=True)
    sim = Sim(seed)
    outage = (outage_start_s, min(outage_start_s + outage_s, duration_s)) if outage_s > 0 else None
    if faults is None:
        faults = [Outage(outage[0], outage[1], hang_s=max(timeout_s, 1.0))] if outage else []
    service = Service(sim, "backend", latency_s=latency_s, error_rate=error_rate,
                      max_concurrency=max_concurrency, faults=faults)
    cb = breaker(sim) if breaker is not None else None
    drive_traffic(sim, service, rate_rps=rate_rps, until_s=duration_s, timeout_s=timeout_s,
                  retries=retries, breaker=cb)
    sim.run(until=duration_s + timeout_s * (retries + 1) + 1)
    settings = dict(seed=seed, rate_rps=rate_rps, retries=retries, timeout_s=timeout_s,
                    latency_s=latency_s, max_concurrency=max_concurrency, capacity_rps=service.capacity_rps)
    return CallsRun(sim, duration_s, outage, settings)


def drive_traffic(sim: Sim, service: Service, *, rate_rps: float, until_s: float,
                  timeout_s: float | None = 1.0, retries: int = 0, breaker=None) -> None:
    """Schedule Poisson arrivals of requests that call `service`, through `breaker` if given (lesson 03).

    Each request is recorded once, when it finishes, as ("client", "request") with its
    outcome ("ok", "fallback" when the breaker refused, "failed"), latency and attempts.
    The breaker's state is recorded as ("breaker", "state") whenever it changes.
    """
    callers = _Callers(sim, service, rate_rps, until_s, timeout_s, retries, breaker)
    sim.at(sim.rng.expovariate(rate_rps), callers.arrive)


class _Callers:
    """The requests `drive_traffic` schedules, as methods of one object.

    Not closures: closures that schedule one another form a reference cycle, and a cycle
    that holds the Sim kept each finished run and its whole trace in memory until the
    garbage collector's next pass (a 50-90 ms pause in the middle of a slider move).
    """

    __slots__ = ("sim", "service", "rate_rps", "until_s", "timeout_s", "retries", "breaker", "last_state",
                 "record_request")

    def __init__(self, sim, service, rate_rps, until_s, timeout_s, retries, breaker):
        self.sim, self.service, self.rate_rps, self.until_s = sim, service, rate_rps, until_s
        self.timeout_s, self.retries, self.breaker = timeout_s, retries, breaker
        self.last_state = getattr(breaker, "state", None)
        self.record_request = sim.trace.recorder("client", "request")

    def note_state(self):
        state = self.breaker.state
        if state != self.last_state:
            self.last_state = state
            self.sim.record("breaker", "state", state=state)

    def finish(self, started, outcome, attempts):
        now = self.sim.now
        self.record_request(now, {"outcome": outcome, "latency_s": now - started, "attempts": attempts})

    def attempt(self, started, attempts):
        breaker = self.breaker
        if breaker is not None:
            allowed = breaker.allow_request()
            self.note_state()
            if not allowed:
                self.finish(started, "fallback", attempts)
                return
        response = self.service.call(self.timeout_s)
        self.sim.after(response.latency_s, self.settle, started, attempts + 1, response.ok)

    def settle(self, started, attempts, ok):
        breaker = self.breaker
        if breaker is not None:
            breaker.on_success() if ok else breaker.on_failure()
            self.note_state()
        if ok:
            self.finish(started, "ok", attempts)
        elif attempts <= self.retries:
            self.attempt(started, attempts)
        else:
            self.finish(started, "failed", attempts)

    def arrive(self):
        sim = self.sim
        self.attempt(sim.now, 0)
        nxt = sim.now + sim.rng.expovariate(self.rate_rps)
        if nxt < self.until_s:
            sim.at(nxt, self.arrive)


def queue_playground(*, rate_rps: float = 200.0, max_concurrency: int = 20, latency_ms: float = 50.0,
                     seed: int = 1) -> CallsRun:
    """Steady traffic into a healthy service with a fixed worker pool, for lesson 00's Play panel."""
    validate.number("latency_ms", latency_ms, lo=1, hi=10_000)
    return simulate_calls(seed=seed, duration_s=30.0, rate_rps=rate_rps, outage_s=0, timeout_s=30.0,
                          latency_s=latency_ms / 1000, max_concurrency=max_concurrency)


def show_latency(run: CallsRun):
    """(table, chart) of a healthy-service run: latency percentiles and load (lesson 00)."""
    from labkit.plots import plot_latency
    from labkit.widgets import Table

    s, lat = run.summary(), run.latency()
    capacity = run.settings["capacity_rps"]
    table = Table({
        "offered load": f"{run.settings['rate_rps']:,.0f} requests/s",
        "capacity (workers / mean latency)": f"{capacity:,.0f} requests/s",
        "utilisation": f"{100 * run.settings['rate_rps'] / capacity:.0f} %",
        "p50 / p95 / p99 latency": " / ".join(f"{lat[k]:,.0f}" for k in ("p50_ms", "p95_ms", "p99_ms")) + " ms",
        "requests served": s["requests"],
    })
    return table, plot_latency(run)
