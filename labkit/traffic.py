"""Callers that send Poisson traffic to a `Service`, with retries and an optional breaker, and their run (lessons 00, 03).

`drive_traffic` schedules the requests; `simulate_calls` is a whole scenario (a service
that dies for a while, callers in front of it) and returns a `CallsRun`, which reads
success, load, latency and the breaker's states from the trace.
"""
from __future__ import annotations

import math
from bisect import bisect_left
from dataclasses import dataclass, field

from labkit import validate
from labkit.clock import Sim
from labkit.mode import arguments_checked
from labkit.resilience import CLOSED
from labkit.run import Run
from labkit.trace import latency_summary
from labkit.service import Outage, Service

# Bounds that keep a run finite in time and memory: 5,000 requests/s for an hour is 18 M requests.
MAX_RATE_RPS = 5000
MAX_DURATION_S = 3600

@dataclass
class CallsRun(Run):
    """The result of `simulate_calls`: the simulation, its settings, and summaries read from the trace (lesson 00)."""

    sim: Sim
    duration_s: float
    outage: tuple[float, float] | None
    settings: dict = field(default_factory=dict)

    def series(self, bin_s: float = 1.0) -> dict:
        """Per-bin time series: callers' success rate, load on the service (calls/s) and callers' p99 (ms)."""
        validate.number("bin_s", bin_s, lo=0, lo_open=True)
        return self._once(("series", bin_s), lambda: self._series(bin_s))

    def _series(self, bin_s):
        requests = self.per_bin("client", "request", bin_s)
        ok = self.per_bin("client", "request", bin_s, "outcome", reduce=_count_ok)
        return {"time_s": self.bin_starts(bin_s),
                "success_rate": [k / n if n else math.nan for k, n in zip(ok, requests)],
                "service_load_rps": self.rate("backend", "call", bin_s),
                "p99_ms": self.latency_series(bin_s)["p99_ms"]}

    def latency_series(self, bin_s: float = 1.0) -> dict:
        """Per-bin p50/p95/p99 latency of callers' requests, in ms."""
        validate.number("bin_s", bin_s, lo=0, lo_open=True)

        def compute():
            by_bin = self.percentiles("client", "request", "latency_s", bin_s, scale=1000)
            return {**{f"{q}_ms": v for q, v in by_bin.items()}, "time_s": self.bin_starts(bin_s)}

        return self._once(("latency", bin_s), compute)

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
        validate.number("bin_s", bin_s, lo=0, lo_open=True)
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
        """Callers' p50/p95/p99 latency in ms, of the requests that finished within the run.

        The same requests as the per-bin series (a request is recorded when it finishes), so a
        table's p99 and the plotted p99 agree; requests still in flight when the run ends are
        settled, but not counted.
        """
        def compute():
            ended = bisect_left(self.times("client", "request"), self.duration_s)
            return latency_summary(self.column("client", "request", "latency_s")[:ended])

        return dict(self._once("latency", compute))

    def _summary(self) -> dict:
        outcomes = self.column("client", "request", "outcome")
        n = len(outcomes) or 1
        calls = self.times("backend", "call")
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


def _count_ok(outcomes: list) -> int:
    return outcomes.count("ok")


def simulate_calls(*, seed: int = 1, duration_s: float = 90.0, rate_rps: float = 25.0,
                   outage_start_s: float = 20.0, outage_s: float = 30.0, timeout_s: float = 1.0,
                   retries: int = 0, breaker=None, latency_s: float = 0.05,
                   error_rate: float = 0.0, max_concurrency: int = 10, faults=None) -> CallsRun:
    """Callers at `rate_rps` hit a service that dies for `outage_s`; returns the run (lesson 03).

    `breaker` is a factory called with the simulation's clock (for example
    `lambda clock: lk.CircuitBreaker(clock, failure_threshold=5)`), or None for no breaker.
    Failed calls are retried at once up to `retries` times, as naive clients do.
    """
    validate.number("seed", seed, integer=True)
    validate.number("duration_s", duration_s, lo=1, hi=3600)
    validate.number("rate_rps", rate_rps, lo=0, hi=MAX_RATE_RPS, lo_open=True)
    validate.number("outage_s", outage_s, lo=0, hi=duration_s)
    validate.number("outage_start_s", outage_start_s, lo=0, hi=duration_s, hi_open=outage_s > 0)
    validate.number("timeout_s", timeout_s, lo=0, lo_open=True, hi=60)
    validate.number("retries", retries, lo=0, hi=10, integer=True)
    if breaker is not None and not callable(breaker):
        raise TypeError(f"breaker must be a factory called with the clock (lambda clock: ...), got {breaker!r}")
    sim = Sim(seed)
    outage = (outage_start_s, min(outage_start_s + outage_s, duration_s)) if outage_s > 0 else None
    if faults is None:
        faults = [Outage(outage[0], outage[1], hang_s=max(timeout_s, 1.0))] if outage else []
    service = Service(sim, "backend", latency_s=latency_s, error_rate=error_rate,
                      max_concurrency=max_concurrency, faults=faults)
    arguments_checked()
    cb = breaker(sim) if breaker is not None else None
    drive_traffic(sim, service, rate_rps=rate_rps, until_s=duration_s, timeout_s=timeout_s,
                  retries=retries, breaker=cb)
    sim.run(until=duration_s + timeout_s * (retries + 1) + 1)
    settings = dict(seed=seed, rate_rps=rate_rps, retries=retries, timeout_s=timeout_s,
                    latency_s=latency_s, max_concurrency=max_concurrency, capacity_rps=service.capacity_rps)
    return CallsRun(sim, duration_s, outage, settings)


def drive_traffic(sim: Sim, service: Service, *, rate_rps: float, until_s: float,
                  timeout_s: float | None = 1.0, retries: int = 0, breaker=None, client: str = "client") -> None:
    """Schedule Poisson arrivals of requests that call `service`, through `breaker` if given (lessons 03, 04).

    Each request is recorded once, when it finishes, as (client, "request") with its
    outcome ("ok", "fallback" when the breaker refused, "failed"), the last attempt's error
    ("timeout", "rejected", "error", "outage"; None unless failed), latency and attempts.
    Several kinds of work through one front are one call each, with their own `client`
    name and their own `service`.
    The breaker's state is recorded as ("breaker", "state") whenever it changes.
    """
    if not isinstance(sim, Sim):
        raise TypeError(f"sim must be a labkit Sim, got {sim!r}")
    if not isinstance(service, Service):
        raise TypeError(f"service must be a labkit Service, got {service!r}")
    validate.number("rate_rps", rate_rps, lo=0, lo_open=True, hi=MAX_RATE_RPS)
    validate.number("until_s", until_s, lo=0, hi=MAX_DURATION_S)
    if timeout_s is not None:
        validate.number("timeout_s", timeout_s, lo=0, lo_open=True, hi=MAX_DURATION_S)
    validate.number("retries", retries, lo=0, hi=10, integer=True)
    validate.text("client", client)
    if breaker is not None and not all(callable(getattr(breaker, m, None))
                                       for m in ("allow_request", "on_success", "on_failure")):
        raise TypeError(f"breaker must have allow_request(), on_success() and on_failure(), got {breaker!r}")
    validate.text("client", client)
    callers = _Callers(sim, service, rate_rps, until_s, timeout_s, retries, breaker, client)
    sim.at(sim.rng.expovariate(rate_rps), callers.arrive)


class _Callers:
    """The requests `drive_traffic` schedules, as methods of one object.

    Not closures: closures that schedule one another form a reference cycle, and a cycle
    that holds the Sim kept each finished run and its whole trace in memory until the
    garbage collector's next pass (a 50-90 ms pause in the middle of a slider move).
    """

    __slots__ = ("sim", "service", "rate_rps", "until_s", "timeout_s", "retries", "breaker", "last_state",
                 "record_request")

    def __init__(self, sim, service, rate_rps, until_s, timeout_s, retries, breaker, client="client"):
        self.sim, self.service, self.rate_rps, self.until_s = sim, service, rate_rps, until_s
        self.timeout_s, self.retries, self.breaker = timeout_s, retries, breaker
        self.last_state = getattr(breaker, "state", None)
        self.record_request = sim.trace.recorder(client, "request")

    def note_state(self):
        state = self.breaker.state
        if state != self.last_state:
            self.last_state = state
            self.sim.record("breaker", "state", state=state)

    def finish(self, started, outcome, attempts, error=None):
        now = self.sim.now
        self.record_request(now, {"outcome": outcome, "error": error, "latency_s": now - started,
                                  "attempts": attempts})

    def attempt(self, started, attempts):
        breaker = self.breaker
        if breaker is not None:
            allowed = breaker.allow_request()
            self.note_state()
            if not allowed:
                self.finish(started, "fallback", attempts)
                return
        response = self.service.call(self.timeout_s)
        self.sim.after(response.latency_s, self.settle, started, attempts + 1, response.ok, response.error)

    def settle(self, started, attempts, ok, error=None):
        breaker = self.breaker
        if breaker is not None:
            breaker.on_success() if ok else breaker.on_failure()
            self.note_state()
        if ok:
            self.finish(started, "ok", attempts)
        elif attempts <= self.retries:
            self.attempt(started, attempts)
        else:
            self.finish(started, "failed", attempts, error)

    def arrive(self):
        sim = self.sim
        self.attempt(sim.now, 0)
        nxt = sim.now + sim.rng.expovariate(self.rate_rps)
        if nxt < self.until_s:
            sim.at(nxt, self.arrive)
