"""labkit: the simulation kit behind the Scaling Patterns & Anti-patterns course.

Notebooks `import labkit as lk` and call `lk.X`. Everything runs on a virtual clock
with a seeded RNG, so the same seed gives the same numbers.
"""
from labkit.clock import Sim
from labkit.trace import Event, Trace, latency_summary, percentile, rate_per_s, time_series, fraction
from labkit.service import ErrorBurst, LatencySpike, Outage, Response, Service, WorkerPool
from labkit.resilience import (CLOSED, HALF_OPEN, OPEN, CallsRun, CircuitBreaker, breaker_playground, drive_traffic,
                               queue_playground, show_calls, show_latency, simulate_calls, summarize_calls)

__version__ = "0.1.0"
from labkit.checking import Fail, Report, Result, check
from labkit.plots import PALETTE, Chart, plot_calls, plot_latency
from labkit.widgets import Play, Table, hints, play
from labkit.db import Database, ExponentialLag, LagSpike, LogEntry, Replica, ReplicaDown, ReplicaSet, UniformLag
from labkit.cache import LRUCache, RedisCache
from labkit.workload import Bursty, Diurnal, Op, Steady, Zipf, arrivals, drive_workload, make_workload
from labkit.replication import (ReplicaRouter, ReplicasRun, plot_replicas, replicas_playground, show_replicas,
                                simulate_replicas, summarize_replicas)
from labkit.caching import (CacheAside, CachingRun, DatabaseDown, HotKeyRun, RaceRun, SlowDatabase, caching_playground,
                            plot_caching, plot_hot_key, show_caching, simulate_caching, simulate_hot_key,
                            stale_set_race, summarize_caching, summarize_hot_key)
