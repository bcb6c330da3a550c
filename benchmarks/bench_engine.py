"""Simulation engine against SimPy: one M/M/c workload, the same pre-drawn numbers, identical latencies.

Both sides get the same interarrival and service times, drawn once from random.Random(SEED),
so every request's latency must agree to the last bit; the benchmark asserts it before it
quotes a speed.

- labkit: arrivals chained on a `labkit.Sim` (each arrival schedules the next, as
  `drive_traffic` does) and the request-level FIFO worker pool `Service` uses
  (`start = max(now, earliest free worker)`): a request's latency is known when it arrives,
  as `Service.call` returns it. One event per request. This is the budgeted figure.
- labkit with a completion event: the same, plus one event per request at its end time
  that records the latency, the way `drive_traffic` tells a caller (and its breaker) the
  outcome. Two events per request; quoted for information.
- SimPy: the textbook process model, a source process plus one process per customer
  holding a `simpy.Resource(capacity=c)` for its service time.
"""
from __future__ import annotations

import gc
import random
import time

from benchmarks.harness import ERROR, Outcome, Row, Stats, log, verdict
from benchmarks.notebooks import kernel_env

NAME = "engine"
TITLE = "Simulation engine vs SimPy (M/M/c, identical latencies)"
REQUESTS = 100_000
SERVERS = 20
SERVICE_MEAN_S = 0.050               # lesson 00's service: 20 workers, ~50 ms per request
UTILISATION = 0.9                    # busy enough that most requests queue
SEED = 2024
RATIO_BUDGET = 10.0


def draw(n: int = REQUESTS, seed: int = SEED):
    """(interarrival_s, service_s): n exponential draws each, from one seeded RNG."""
    rng = random.Random(seed)
    rate = UTILISATION * SERVERS / SERVICE_MEAN_S
    inter = [rng.expovariate(rate) for _ in range(n)]
    service = [rng.expovariate(1 / SERVICE_MEAN_S) for _ in range(n)]
    return inter, service


def run_labkit(inter, service, servers: int = SERVERS) -> list[float]:
    """Per-request latency (s) with labkit's Sim and the FIFO worker pool, fate computed on arrival."""
    from labkit import Sim, WorkerPool

    sim = Sim(seed=0)
    pool = WorkerPool(servers)
    n = len(inter)
    latency = [0.0] * n

    def arrive(i):
        now = sim.now
        _, end = pool.admit(now, service[i])
        latency[i] = end - now
        if i + 1 < n:
            sim.after(inter[i + 1], arrive, i + 1)

    sim.after(inter[0], arrive, 0)
    sim.run()
    return latency


def run_labkit_completions(inter, service, servers: int = SERVERS) -> list[float]:
    """As `run_labkit`, plus an event at each request's end that records its latency."""
    from labkit import Sim, WorkerPool

    sim = Sim(seed=0)
    pool = WorkerPool(servers)
    n = len(inter)
    latency = [0.0] * n

    def done(i, arrived):
        latency[i] = sim.now - arrived

    def arrive(i):
        now = sim.now
        _, end = pool.admit(now, service[i])
        sim.at(end, done, i, now)
        if i + 1 < n:
            sim.after(inter[i + 1], arrive, i + 1)

    sim.after(inter[0], arrive, 0)
    sim.run()
    return latency


def run_simpy(inter, service, servers: int = SERVERS) -> list[float]:
    """Per-request latency (s) with SimPy's Resource-based process model."""
    import simpy

    env = simpy.Environment()
    workers = simpy.Resource(env, capacity=servers)
    n = len(inter)
    latency = [0.0] * n

    def customer(i, arrived):
        with workers.request() as req:
            yield req
            yield env.timeout(service[i])
        latency[i] = env.now - arrived

    def source():
        for i in range(n):
            yield env.timeout(inter[i])
            env.process(customer(i, env.now))

    env.process(source())
    env.run()
    return latency


def _timed(fn, *args):
    gc.collect()
    t0 = time.perf_counter()
    result = fn(*args)
    return time.perf_counter() - t0, result


VARIANTS = {  # name -> (function, budgeted?)
    "labkit": (run_labkit, True),
    "labkit + completion events": (run_labkit_completions, False),
}


def _check_identical(name, lat, reference) -> Row | None:
    if len(lat) == len(reference) and all(a == b for a, b in zip(lat, reference)):
        return None
    bad = [i for i, (a, b) in enumerate(zip(lat, reference)) if a != b]
    first = bad[0] if bad else min(len(lat), len(reference))
    return Row(NAME, f"{name} and SimPy latencies agree", f"{len(bad):,} differ", "", "all identical", ERROR,
               f"first at request {first}: {lat[first]!r} vs {reference[first]!r}" if bad else "lengths differ")


def run(ctx) -> Outcome:
    kernel_env()
    out = Outcome()
    try:
        import simpy
    except ImportError:
        out.rows.append(Row(NAME, "requests/s, labkit vs SimPy", "", "", f">= {RATIO_BUDGET:g}x", "not run",
                            "simpy is not installed (pip install -e '.[bench]')"))
        return out
    inter, service = draw()
    # An untimed first pass checks exactness and warms every code path and allocator.
    reference = run_simpy(inter, service)
    for name, (fn, _) in VARIANTS.items():
        bad = _check_identical(name, fn(inter, service), reference)
        if bad:
            out.rows.append(bad)
            return out
    mean_ms = 1000 * sum(reference) / len(reference)
    del reference

    repeats = ctx.repeats(7, 2)
    rates = {name: [] for name in [*VARIANTS, "SimPy"]}
    for rep in range(repeats):
        # Interleaved, so a noisy neighbour slows every side rather than one.
        for name, fn in [*((n, f) for n, (f, _) in VARIANTS.items()), ("SimPy", run_simpy)]:
            rates[name].append(REQUESTS / _timed(fn, inter, service)[0])
        log(f"  [engine] run {rep + 1}/{repeats}: " + ", ".join(f"{n} {r[-1]:,.0f}/s" for n, r in rates.items()))
    span = lambda st: f"min–max {st.min:,.0f}–{st.max:,.0f}/s (n={st.n})"  # noqa: E731
    descriptions = {"labkit": "labkit Sim + FIFO worker pool, fate on arrival (1 event/request)",
                    "labkit + completion events": "labkit, plus a completion event per request (2 events/request)",
                    "SimPy": "SimPy Resource process model"}
    for name, samples in rates.items():
        st = Stats.of(samples)
        out.rows.append(Row(NAME, descriptions[name], f"{st.median:,.0f} requests/s", span(st), "", "info"))
    for name, (_, budgeted) in VARIANTS.items():
        ratio = Stats.of(a / b for a, b in zip(rates[name], rates["SimPy"]))
        out.rows.append(Row(
            NAME, f"speed-up, {name} / SimPy (same run)", f"{ratio.median:.1f}x",
            f"min–max {ratio.min:.1f}–{ratio.max:.1f}x (n={ratio.n} paired runs)",
            f">= {RATIO_BUDGET:g}x" if budgeted else "(info)",
            verdict(ratio.median >= RATIO_BUDGET) if budgeted else "info"))
    out.details += [
        f"M/M/{SERVERS}: {REQUESTS:,} requests, mean service {SERVICE_MEAN_S * 1000:g} ms, utilisation "
        f"{UTILISATION:g}, seed {SEED}; simpy {simpy.__version__}. Per-request latencies of every variant are "
        f"identical to SimPy's (asserted on an untimed first pass; mean {mean_ms:,.1f} ms).",
        "",
        f"{repeats} timed rounds, each running every variant back to back; a ratio is taken within a round, "
        "then the median over rounds is quoted.",
    ]
    return out
