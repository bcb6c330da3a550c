"""A downstream service mock with latency, errors, limited concurrency and scheduled faults (lesson 03)."""
from __future__ import annotations

import heapq
import math
from dataclasses import dataclass
from typing import NamedTuple

from labkit import validate
from labkit.clock import Sim


@dataclass(frozen=True)
class _Window:
    start_s: float
    end_s: float

    def __post_init__(self):
        validate.number("start_s", self.start_s, lo=0)
        validate.number("end_s", self.end_s, lo=self.start_s, lo_open=True)

    def active(self, time_s: float) -> bool:
        """True while `time_s` is inside [start_s, end_s)."""
        return self.start_s <= time_s < self.end_s


@dataclass(frozen=True)
class Outage(_Window):
    """The service is dead from start_s to end_s: each call holds a worker for `hang_s`, then fails (lesson 03).

    The default models the worst kind of dead: it accepts the connection and never
    answers, so the caller's timeout decides how long each failure takes.
    """

    hang_s: float = 1.0

    def __post_init__(self):
        super().__post_init__()
        validate.number("hang_s", self.hang_s, lo=0)


@dataclass(frozen=True)
class ErrorBurst(_Window):
    """From start_s to end_s each call fails with probability `error_rate` (lesson 03)."""

    error_rate: float = 0.5

    def __post_init__(self):
        super().__post_init__()
        validate.number("error_rate", self.error_rate, lo=0, hi=1)


@dataclass(frozen=True)
class LatencySpike(_Window):
    """From start_s to end_s every call takes `factor` times longer (lesson 03)."""

    factor: float = 10.0

    def __post_init__(self):
        super().__post_init__()
        validate.number("factor", self.factor, lo=0, lo_open=True)


class Response(NamedTuple):
    """What a caller sees: success, how long it waited, and the error if any."""

    ok: bool
    latency_s: float
    error: str | None = None


class WorkerPool:
    """`workers` identical workers serving requests first come, first served (lesson 03).

    The one place where a request is admitted to workers: `Service` queues its calls here,
    and a simulation with its own service times can too. A request-level model: a request's
    start and end are known the moment it arrives, `start = max(now, earliest free worker)`,
    so no event is needed per worker.

    Admission is two steps, so that a caller can shape the work by when it starts (a fault
    window, a slow spell): `next_start(now)` says when a worker would take a request, and
    `admit(now, service_s)` queues it. A pool that bounds its queue or its wait decides in
    these two methods, and its callers need not change.
    """

    MAX_WORKERS = 100_000  # the pool keeps one float per worker

    def __init__(self, workers: int):
        self.workers = validate.number("workers", workers, lo=1, hi=self.MAX_WORKERS, integer=True)
        self._free_at = [0.0] * workers  # a heap: when each worker is next free

    def next_start(self, now: float) -> float:
        """When a request arriving at `now` would start, without admitting it."""
        free = self._free_at[0]
        return free if free > now else now

    def admit(self, now: float, service_s: float) -> tuple[float, float]:
        """Queue a request that arrives at `now` and needs `service_s` of work; returns (start, end)."""
        start = self.next_start(now)
        end = start + service_s
        heapq.heapreplace(self._free_at, end)
        return start, end

    def busy(self, now: float) -> int:
        """How many workers are busy at `now` (queued work included up to the pool size)."""
        return sum(1 for t in self._free_at if t > now)


class Service:
    """A downstream dependency that every resilience lesson calls (lesson 03).

    Each call waits for one of `max_concurrency` workers (first come, first served),
    then takes a lognormal time with median `latency_s`. A caller that gives up at
    its timeout does not free the worker: the service finishes the wasted work, which
    is how retry storms keep a recovered service drowning.
    """

    def __init__(self, sim: Sim, name: str = "backend", *, latency_s: float = 0.05,
                 latency_sigma: float = 0.5, error_rate: float = 0.0,
                 max_concurrency: int = 20, faults=()):
        self.sim = validate.instance("sim", sim, Sim, "a labkit Sim")
        self.name = validate.text("name", name)
        self.latency_s = validate.number("latency_s", latency_s, lo=0, lo_open=True, hi=3600)
        self.latency_sigma = validate.number("latency_sigma", latency_sigma, lo=0, hi=3)
        self.error_rate = validate.number("error_rate", error_rate, lo=0, hi=1)
        self.max_concurrency = validate.number("max_concurrency", max_concurrency, lo=1,
                                               hi=WorkerPool.MAX_WORKERS, integer=True)
        if isinstance(faults, (Outage, ErrorBurst, LatencySpike)):
            raise validate.ArgumentTypeError(f"faults must be a list of faults, got the single fault {faults!r}: use [fault]")
        self.faults = tuple(validate.items("faults", faults, (Outage, ErrorBurst, LatencySpike),
                                           "Outage, ErrorBurst or LatencySpike"))
        self._mu = math.log(latency_s)
        self.pool = WorkerPool(max_concurrency)
        self._record = sim.trace.recorder(name, "call")

    def call(self, timeout_s: float | None = None) -> Response:
        """Send one request now; returns what the caller will see and after how long."""
        if timeout_s is not None and not (type(timeout_s) is float and 0 < timeout_s < math.inf):
            validate.number("timeout_s", timeout_s, lo=0, lo_open=True)  # the float test is the fast path
        now, rng = self.sim.now, self.sim.rng
        start = self.pool.next_start(now)  # faults apply by when the work starts
        service_s = rng.lognormvariate(self._mu, self.latency_sigma) if self.latency_sigma else self.latency_s
        ok, error = True, None
        if self.error_rate and rng.random() < self.error_rate:
            ok, error = False, "error"
        for fault in self.faults:
            if not fault.active(start):
                continue
            if isinstance(fault, Outage):
                ok, error, service_s = False, "outage", fault.hang_s
                break
            if isinstance(fault, ErrorBurst) and rng.random() < fault.error_rate:
                ok, error = False, "error"
            elif isinstance(fault, LatencySpike):
                service_s *= fault.factor
        start, end = self.pool.admit(now, service_s)
        self._record(now, {"ok": ok, "queued_s": start - now, "service_s": service_s})
        latency = end - now
        if timeout_s is not None and latency > timeout_s:
            return Response(False, timeout_s, "timeout")
        return Response(ok, latency, error)


    @property
    def capacity_rps(self) -> float:
        """Calls per second the workers can finish when healthy: max_concurrency / mean service time."""
        return self.max_concurrency / (self.latency_s * math.exp(self.latency_sigma ** 2 / 2))

    def busy_workers(self) -> int:
        """How many workers are busy right now (queued work included up to the pool size)."""
        return self.pool.busy(self.sim.now)

    def __repr__(self) -> str:
        return (f"Service({self.name!r}, latency_s={self.latency_s:g}, "
                f"max_concurrency={self.max_concurrency}, faults={len(self.faults)})")
