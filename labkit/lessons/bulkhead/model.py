"""Lesson 04's model: one web service, three kinds of work, each calling its own dependency, and the workers they share.

The front is a server with `SERVER_THREADS` request threads (Tomcat's default `maxThreads`)
and an unbounded accept queue. Every request calls one dependency, and a call needs one of
the front's dependency workers: either one shared pool of `TOTAL_WORKERS` (the incident) or a
partition per kind of work (bulkheads). A call holds its request thread while it waits for a
worker and while it runs, as resilience4j's semaphore bulkhead does. Recommendations slows
down for a while (a `LatencySpike`); the other dependencies stay healthy.
"""
from __future__ import annotations

import math
from bisect import bisect_right
from dataclasses import dataclass, field

from labkit import validate
from labkit.clock import Sim
from labkit.knobs import Choice, Knob, Knobs
from labkit.mode import arguments_checked, made_when_read
from labkit.run import Run
from labkit.service import LatencySpike, Service, WorkerPool
from labkit.traffic import drive_traffic

SERVER_THREADS = 200   # Tomcat's default maxThreads
TOTAL_WORKERS = 40     # the workers the kinds of work share, or split into partitions
TIMEOUT_S = 1.0        # callers (the load balancer) give up after this long
DURATION_S = 60.0
INCIDENT = (15.0, 45.0)  # recommendations is slow from 15 s to 45 s

# Kind of work -> (dependency, its median latency in s). Each kind calls only its own dependency.
KINDS = {
    "checkout": ("payments", 0.08),
    "product": ("recommendations", 0.05),
    "reporting": ("reports-db", 0.25),
}
SLOW = "product"  # the kind whose dependency slows down
RATES = {"checkout": 40.0, "product": 100.0, "reporting": 10.0}

KNOBS = Knobs(
    Knob("slow_latency_s", 0.05, 4.0, 0.05, 2.0, unit="s", label="incident latency"),
    Knob("product_rps", 10.0, 200.0, 10.0, 100.0, unit="requests/s", label="product pages"),
    Knob("checkout_rps", 10.0, 100.0, 10.0, 40.0, unit="requests/s", label="checkouts"),
    Knob("checkout_workers", 1, 38, 1, 12, label="checkout partition"),
    Knob("product_workers", 1, 38, 1, 14, label="product partition"),
    Knob("reporting_workers", 1, 38, 1, 14, label="reporting partition"),
    Knob("max_wait_s", 0.0, 2.0, 0.05, 0.0, unit="s", label="max wait for a worker"),
    Choice("queue_capacity", {"unbounded": None, "0": 0, "5": 5, "20": 20, "100": 100}, default=None,
           label="queue capacity"),
)
PARTITION_KNOBS = ("checkout_workers", "product_workers", "reporting_workers")
SHARED_KNOBS = tuple(n for n in KNOBS.names if n not in PARTITION_KNOBS)


@dataclass
class BulkheadRun(Run):
    """The result of `simulate`: per kind of work, its requests' outcomes and its workers in use, read from the trace (lesson 04)."""

    sim: Sim
    duration_s: float
    incident: tuple[float, float]
    design: str
    settings: dict = field(default_factory=dict)

    kinds = tuple(KINDS)

    def outcomes(self, kind: str, window: tuple[float, float] | None = None) -> dict:
        """Counts of a kind's requests that finished in `window` (default: the whole run): ok, rejected, timeout, error."""
        self._kind(kind)
        window = self._window(window)

        def compute():
            lo, hi = self._finished_in(kind, window)
            errors = self.column(kind, "request", "error")[lo:hi]
            out = {"requests": hi - lo, "ok": errors.count(None), "rejected": errors.count("rejected"),
                   "timeout": errors.count("timeout")}
            out["error"] = out["requests"] - out["ok"] - out["rejected"] - out["timeout"]
            return out

        return dict(self._once(("outcomes", kind, window), compute))

    def latency_ms(self, kind: str, window: tuple[float, float] | None = None, q: float = 99) -> float:
        """The q-th percentile of a kind's request latency (ms), over requests that finished in `window`."""
        from labkit.trace import percentile

        self._kind(kind)
        window = self._window(window)
        validate.number("q", q, lo=0, hi=100)

        def compute():
            lo, hi = self._finished_in(kind, window)
            data = sorted(self.column(kind, "request", "latency_s")[lo:hi])
            return 1000 * percentile(data, q) if data else math.nan

        return self._once(("latency", kind, window, q), compute)

    def _kind(self, kind) -> None:
        validate.choice("kind", kind, self.kinds)

    def _window(self, window) -> tuple[float, float] | None:
        return None if window is None else validate.interval("window", window, lo=0, hi=self.duration_s)

    def _finished_in(self, kind, window) -> tuple[int, int]:
        """Where the requests of `kind` that finished in `window` (None: all) start and end in its columns."""
        times = self.times(kind, "request")
        if window is None:
            return 0, len(times)
        return bisect_right(times, window[0] - 1e-12), bisect_right(times, window[1])

    def _bin(self, bin_s) -> float:
        """`bin_s` as a float: from a thousandth of the run (so a series stays small) to the whole run."""
        return float(validate.number("bin_s", bin_s, lo=self.duration_s / 1000, hi=self.duration_s))

    def summary(self) -> dict:
        """Per kind: during the incident, success, rejections, timeouts and p99; outside it, success."""
        def compute():
            out = {}
            for kind in self.kinds:
                during = self.outcomes(kind, self.incident)
                n = during["requests"] or 1
                out[kind] = {"requests": during["requests"], "success_rate": during["ok"] / n,
                             "rejected_rate": during["rejected"] / n, "timeout_rate": during["timeout"] / n,
                             "p99_ms": self.latency_ms(kind, self.incident),
                             "rejected_p99_ms": self.rejection_wait_ms(kind)}
            return out

        return {k: dict(v) for k, v in self._once("summary", compute).items()}

    def rejection_wait_ms(self, kind: str) -> float:
        """p99 of how long a kind's rejected calls waited before being refused (ms; NaN without rejections)."""
        from labkit.trace import percentile

        self._kind(kind)
        waited = sorted(self.column(KINDS[kind][0], "rejected", "waited_s"))
        return 1000 * percentile(waited, 99) if waited else math.nan

    def series(self, kind: str, bin_s: float = 1.0) -> dict:
        """Per bin: a kind's success rate, p99 latency (ms), rejections per second and mean workers in use."""
        self._kind(kind)
        bin_s = self._bin(bin_s)

        def compute():
            requests = self.per_bin(kind, "request", bin_s)
            ok = self.per_bin(kind, "request", bin_s, "error", reduce=_count_none)
            return {"time_s": self.bin_starts(bin_s),
                    "success_rate": [k / n if n else math.nan for k, n in zip(ok, requests)],
                    "p99_ms": self.percentiles(kind, "request", "latency_s", bin_s, scale=1000)["p99"],
                    "rejected_rps": self.rate(KINDS[kind][0], "rejected", bin_s),
                    "workers": self.workers_in_use(kind, bin_s)}

        return self._once(("series", kind, bin_s), compute)

    def workers_in_use(self, kind: str, bin_s: float = 1.0, samples: int = 10) -> list[float]:
        """A kind's workers in use (its dependency calls in progress), averaged over `samples` instants per bin."""
        self._kind(kind)
        bin_s = self._bin(bin_s)
        validate.number("samples", samples, lo=1, hi=100, integer=True)
        dep = KINDS[kind][0]
        arrivals = self.times(dep, "call")
        queued, service = self.column(dep, "call", "queued_s"), self.column(dep, "call", "service_s")
        starts = sorted(t + q for t, q in zip(arrivals, queued))
        ends = sorted(s + d for s, d in zip((t + q for t, q in zip(arrivals, queued)), service))
        out = []
        for t0 in self.bin_starts(bin_s):
            total = 0
            for i in range(samples):
                t = t0 + (i + 0.5) * bin_s / samples
                total += bisect_right(starts, t) - bisect_right(ends, t)
            out.append(total / samples)
        return out


def _count_none(values) -> int:
    return values.count(None)


@made_when_read(BulkheadRun)
def simulate(*, design: str = "bulkheads", seed: int = 1, slow_latency_s: float = 2.0, product_rps: float = 100.0,
             checkout_rps: float = 40.0, reporting_rps: float = RATES["reporting"], checkout_workers: int = 12,
             product_workers: int = 14, reporting_workers: int = 14, max_wait_s: float = 0.0,
             queue_capacity: int | None = None, unbounded_wait: bool = False, timeout_s: float = TIMEOUT_S,
             duration_s: float = DURATION_S, incident: tuple[float, float] = INCIDENT,
             total_workers: int = TOTAL_WORKERS, server_threads: int = SERVER_THREADS) -> BulkheadRun:
    """One web service, three kinds of work, recommendations slow during `incident`; returns a BulkheadRun (lesson 04).

    `design="shared"`: every dependency call takes one of `total_workers` shared workers.
    `design="bulkheads"`: each kind has its own partition (`checkout_workers`, ...), which
    may add up to at most `total_workers`. A call waits at most `max_wait_s` for a worker
    and finds at most `queue_capacity` calls waiting (None: no limit), else it is rejected;
    `unbounded_wait=True` lifts the wait limit. Callers give up after `timeout_s`, but the
    work they leave behind still holds its worker and its request thread until it ends.
    """
    validate.choice("design", design, ("shared", "bulkheads"))
    for name, value in (("reporting_rps", reporting_rps),):
        validate.number(name, value, lo=0, lo_open=True, hi=1000)
    for knob, value in (("slow_latency_s", slow_latency_s), ("product_rps", product_rps),
                        ("checkout_rps", checkout_rps), ("max_wait_s", max_wait_s), ("queue_capacity", queue_capacity)):
        KNOBS[knob].check(value)
    validate.number("timeout_s", timeout_s, lo=0, lo_open=True, hi=60)
    validate.number("duration_s", duration_s, lo=1, hi=600)
    validate.number("total_workers", total_workers, lo=1, hi=1000, integer=True)
    validate.number("server_threads", server_threads, lo=1, hi=10_000, integer=True)
    start, end = validate.interval("incident", incident, lo=0, hi=duration_s)
    validate.instance("unbounded_wait", unbounded_wait, bool, "True or False")
    sizes = {"checkout": checkout_workers, "product": product_workers, "reporting": reporting_workers}
    for kind, n in sizes.items():
        validate.number(f"{kind}_workers", n, lo=1, hi=total_workers, integer=True)
    if design == "bulkheads" and sum(sizes.values()) > total_workers:
        raise ValueError(f"the partitions add up to {sum(sizes.values())} workers, more than the "
                         f"{total_workers} there are: checkout_workers + product_workers + reporting_workers "
                         f"must be <= {total_workers}")
    wait = None if unbounded_wait else max_wait_s
    arguments_checked()
    sim = Sim(seed)
    threads = WorkerPool(server_threads)
    shared = WorkerPool(total_workers, max_wait_s=wait, queue_capacity=queue_capacity)
    rates = {"checkout": checkout_rps, "product": product_rps, "reporting": reporting_rps}
    for kind, (dependency, latency_s) in KINDS.items():
        pool = shared if design == "shared" else WorkerPool(sizes[kind], max_wait_s=wait, queue_capacity=queue_capacity)
        faults = [LatencySpike(start, end, factor=slow_latency_s / latency_s)] if kind == SLOW and end > start else []
        service = Service(sim, dependency, latency_s=latency_s, faults=faults, pool=pool, caller_threads=threads)
        drive_traffic(sim, service, rate_rps=rates[kind], until_s=duration_s, timeout_s=timeout_s, client=kind)
    sim.run(until=duration_s + 600)
    settings = dict(seed=seed, design=design, slow_latency_s=slow_latency_s, rates=rates, max_wait_s=wait,
                    queue_capacity=queue_capacity, timeout_s=timeout_s,
                    workers=dict(sizes) if design == "bulkheads" else {"shared": total_workers})
    return BulkheadRun(sim, duration_s, (start, end), design, settings)
