"""labkit: the simulation kit behind the Scaling Patterns & Anti-patterns course.

Notebooks `import labkit as lk`. The top level holds what every lesson builds on: the
virtual clock and trace, the components (a service, circuit breakers, databases and
replicas, caches, workloads) and the course tools (`check`, `hints`, `Table`). Each lesson
is a module of its own, named for its topic, that speaks the same verbs:
`lk.breaker.simulate(...)`, `lk.breaker.summarize(runs)`, `lk.breaker.plot(runs)` and
`lk.breaker.play()`. Everything runs on a virtual clock with a seeded RNG, so the same
seed gives the same numbers.
"""
from labkit.clock import Sim
from labkit.trace import Event, Trace, percentile
from labkit.run import Run
from labkit.service import ErrorBurst, LatencySpike, Outage, Response, Service, WorkerPool
from labkit.resilience import CircuitBreaker
from labkit.traffic import CallsRun, drive_traffic, simulate_calls
from labkit.db import Database, ExponentialLag, LagSpike, Replica, ReplicaDown, ReplicaSet, UniformLag
from labkit.cache import LRUCache, RedisCache
from labkit.workload import Bursty, Diurnal, Op, Steady, Zipf, arrivals, drive_workload, make_workload
from labkit.checking import Fail, check
from labkit.plots import Chart
from labkit.widgets import Table, hints

__version__ = "0.1.0"

__all__ = ["Bursty", "CallsRun", "Chart", "CircuitBreaker", "Database", "Diurnal", "ErrorBurst", "Event", "ExponentialLag",
           "Fail", "LRUCache", "LagSpike", "LatencySpike", "Op", "Outage", "RedisCache", "Replica", "ReplicaDown",
           "ReplicaSet", "Response", "Run", "Service", "Sim", "Steady", "Table", "Trace", "UniformLag", "WorkerPool",
           "Zipf", "arrivals", "check", "drive_traffic", "drive_workload", "hints", "make_workload", "percentile",
           "simulate_calls"]


def __getattr__(name: str):
    """`lk.<topic>`: a lesson's module (`lk.breaker`, `lk.replicas`, ...), found by discovery and imported on first use."""
    import importlib

    lessons = importlib.import_module("labkit.lessons")   # `from labkit import lessons` would come back here
    if name in lessons.topics():
        return lessons.lesson(name)
    raise AttributeError(f"module 'labkit' has no attribute {name!r}")


def __dir__():
    import importlib

    lessons = importlib.import_module("labkit.lessons")
    return sorted({*globals(), *lessons.topics()})
