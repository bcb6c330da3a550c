"""A downstream service mock with latency, errors, limited concurrency and scheduled faults (lesson 03)."""
from __future__ import annotations

import heapq
import math
from collections import deque
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
        if not (type(time_s) is float and -math.inf < time_s < math.inf):  # else the careful check
            validate.number("time_s", time_s)
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
        validate.number("factor", self.factor, lo=0, lo_open=True, hi=1000)


class Response(NamedTuple):
    """What a caller sees: success, how long it waited, and the error if any."""

    ok: bool
    latency_s: float
    error: str | None = None


class WorkerPool:
    """`workers` identical workers serving requests first come, first served, with an optional bound on waiting (lessons 03, 04).

    The one place where a request is admitted to workers: `Service` queues its calls here,
    a bulkhead is one of these per partition, and a simulation with its own service times
    can use one too. A request-level model: a request's start and end are known the moment
    it arrives, `start = max(now, earliest free worker)`, so no event is needed per worker,
    and a worker is released at `end` whatever the outcome (success, error, or a caller
    that timed out and walked away).

    Admission is two steps, so that a caller can shape the work by when it starts (a fault
    window, a slow spell): `next_start(now)` says when a worker would take a request, and
    `admit(now, service_s)` queues it, or refuses it (returns None) when it would wait more
    than `max_wait_s` (0: reject unless a worker is free now, as resilience4j's default
    `maxWaitDuration` does) or find `queue_capacity` requests already waiting. Waiters are
    served in arrival order (FIFO, a fair semaphore). Admit requests in time order.
    """

    MAX_WORKERS = 100_000  # the pool keeps one float per worker

    def __init__(self, workers: int, *, max_wait_s: float | None = None, queue_capacity: int | None = None):
        self.workers = validate.number("workers", workers, lo=1, hi=self.MAX_WORKERS, integer=True)
        # None: wait as long as it takes (kept as infinity, so the admission test stays one comparison).
        self.max_wait_s = math.inf if max_wait_s is None else validate.number("max_wait_s", max_wait_s, lo=0, hi=3600)
        if queue_capacity is not None:
            validate.number("queue_capacity", queue_capacity, lo=0, hi=10_000_000, integer=True)
        self.queue_capacity = queue_capacity
        self.rejected = 0  # requests refused so far
        self._free_at = [0.0] * workers  # a heap: when each worker is next free
        self._waiting: deque = deque()  # start times of admitted requests not started yet (with a queue_capacity)

    @property
    def max_concurrent_calls(self) -> int:
        """resilience4j's name for `workers`: at most this many calls hold a worker at once."""
        return self.workers

    def next_start(self, now: float) -> float:
        """When a request arriving at `now` would start, without admitting it."""
        if not (type(now) is float and 0 <= now < math.inf):
            validate.number("now", now, lo=0)
        free = self._free_at[0]
        return free if free > now else now

    def admit(self, now: float, service_s: float) -> tuple[float, float] | None:
        """Queue a request that arrives at `now` and needs `service_s` of work; returns (start, end), or None if refused."""
        if not (type(service_s) is float and 0 <= service_s < math.inf and type(now) is float and 0 <= now < math.inf):
            validate.number("service_s", service_s, lo=0)
            validate.number("now", now, lo=0)
        start = self._free_at[0]   # next_start(now), inlined: admit runs once per simulated call
        if start > now:
            if start - now > self.max_wait_s:
                self.rejected += 1
                return None
            if self.queue_capacity is not None:
                waiting = self._waiting
                while waiting and waiting[0] <= now:
                    waiting.popleft()
                if len(waiting) >= self.queue_capacity:
                    self.rejected += 1
                    return None
                waiting.append(start)
        else:
            start = now
        end = start + service_s
        heapq.heapreplace(self._free_at, end)
        return start, end

    def refusal_wait_s(self, now: float) -> float:
        """How long a request refused at `now` waited before hearing so: `max_wait_s`, or 0 when the queue was full."""
        start = self.next_start(now)
        return self.max_wait_s if start - now > self.max_wait_s else 0.0

    def busy(self, now: float) -> int:
        """How many workers are busy at `now` (queued work included up to the pool size)."""
        validate.number("now", now, lo=0)
        return sum(1 for t in self._free_at if t > now)

    def __repr__(self) -> str:
        bound = "" if self.max_wait_s == math.inf else f", max_wait_s={self.max_wait_s:g}"
        queue = "" if self.queue_capacity is None else f", queue_capacity={self.queue_capacity}"
        return f"WorkerPool({self.workers}{bound}{queue})"


class Service:
    """A downstream dependency that every resilience lesson calls (lessons 03, 04).

    Each call waits for one of `max_concurrency` workers (first come, first served),
    then takes a lognormal time with median `latency_s`. A caller that gives up at
    its timeout does not free the worker: the service finishes the wasted work, which
    is how retry storms keep a recovered service drowning.

    `pool` replaces the service's own workers with a `WorkerPool` the caller owns: a
    bulkhead (one pool per dependency) or one pool shared by several dependencies. A pool
    that refuses a call (`max_wait_s`, `queue_capacity`) makes it a rejection, recorded as
    (name, "rejected") and returned as error "rejected". `caller_threads` is the calling
    server's own pool of request threads, which a call holds while it waits for `pool` and
    while it runs (a semaphore bulkhead runs on the caller's thread): many services may
    share it.
    """

    def __init__(self, sim: Sim, name: str = "backend", *, latency_s: float = 0.05,
                 latency_sigma: float = 0.5, error_rate: float = 0.0,
                 max_concurrency: int = 20, faults=(), pool: WorkerPool | None = None,
                 caller_threads: WorkerPool | None = None):
        self.sim = validate.instance("sim", sim, Sim, "a labkit Sim")
        self.name = validate.text("name", name)
        self.latency_s = validate.number("latency_s", latency_s, lo=0, lo_open=True, hi=3600)
        self.latency_sigma = validate.number("latency_sigma", latency_sigma, lo=0, hi=3)
        self.error_rate = validate.number("error_rate", error_rate, lo=0, hi=1)
        if isinstance(faults, (Outage, ErrorBurst, LatencySpike)):
            raise validate.ArgumentTypeError(f"faults must be a list of faults, got the single fault {faults!r}: use [fault]")
        self.faults = tuple(validate.items("faults", faults, (Outage, ErrorBurst, LatencySpike),
                                           "Outage, ErrorBurst or LatencySpike"))
        self._mu = math.log(latency_s)
        if pool is None:
            self.max_concurrency = validate.number("max_concurrency", max_concurrency, lo=1,
                                                   hi=WorkerPool.MAX_WORKERS, integer=True)
            self.pool = WorkerPool(max_concurrency)
        else:
            self.pool = validate.instance("pool", pool, WorkerPool, "a labkit WorkerPool")
            self.max_concurrency = pool.workers
        if caller_threads is not None:
            validate.instance("caller_threads", caller_threads, WorkerPool, "a labkit WorkerPool")
            if caller_threads.max_wait_s != math.inf or caller_threads.queue_capacity is not None:
                raise ValueError("caller_threads must not refuse requests (no max_wait_s, no queue_capacity): "
                                 "a server's threads queue what they cannot take yet")
        self.caller_threads = caller_threads
        self._record = sim.trace.recorder(name, "call")
        self._record_rejected = sim.trace.recorder(name, "rejected")

    def _work(self, start: float) -> tuple[bool, str | None, float]:
        """Draw one call's outcome and service time, for work that starts at `start` (faults apply by start)."""
        rng = self.sim.rng
        # exp(normal) is what random.lognormvariate returns, one call fewer: this runs once per simulated call.
        service_s = math.exp(rng.normalvariate(self._mu, self.latency_sigma)) if self.latency_sigma else self.latency_s
        ok, error = True, None
        if self.error_rate and rng.random() < self.error_rate:
            ok, error = False, "error"
        for fault in self.faults:
            if not fault.start_s <= start < fault.end_s:   # fault.active(start), for a start known to be a float
                continue
            if isinstance(fault, Outage):
                ok, error, service_s = False, "outage", fault.hang_s
                break
            if isinstance(fault, ErrorBurst) and rng.random() < fault.error_rate:
                ok, error = False, "error"
            elif isinstance(fault, LatencySpike):
                service_s *= fault.factor
        return ok, error, service_s

    def call(self, timeout_s: float | None = None) -> Response:
        """Send one request now; returns what the caller will see and after how long."""
        if timeout_s is not None and not (type(timeout_s) is float and 0 < timeout_s < math.inf):
            validate.number("timeout_s", timeout_s, lo=0, lo_open=True)  # the float test is the fast path
        now, pool, threads = self.sim.now, self.pool, self.caller_threads
        begin = now if threads is None else threads.next_start(now)  # when a caller's thread takes it
        ok, error, service_s = self._work(pool.next_start(begin))
        slot = pool.admit(begin, service_s)
        if slot is None:
            end = begin + pool.refusal_wait_s(begin)
            ok, error = False, "rejected"
            self._record_rejected(now, {"waited_s": end - now})
        else:
            start, end = slot
            self._record(now, {"ok": ok, "queued_s": start - now, "service_s": service_s})
        if threads is not None:
            threads.admit(now, end - begin)
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


RUN, QUEUE, EXTRA, REJECT = "run", "queue", "extra", "reject"
TASK_ACTIONS = (RUN, QUEUE, EXTRA, REJECT)


class ThreadPool:
    """Java's `ThreadPoolExecutor` on the virtual clock: `core` threads, a bounded queue, up to `max_threads` (lesson 04).

    The rule, from `ThreadPoolExecutor.execute` (resilience4j's thread-pool bulkhead and
    Hystrix's thread pools inherit it): a task that arrives while fewer than `core`
    threads exist starts a new thread (even if others are idle); otherwise it goes into
    the queue; only when the queue is full does a thread beyond `core` start, and it runs
    the NEW task, not the oldest queued one; when the queue is full and `max_threads`
    exist, the task is rejected. `queue_capacity=0` is a `SynchronousQueue`: a hand-off
    to an idle thread or nothing. A finished thread takes the oldest queued task; a
    thread beyond `core` that stays idle for `keep_alive_s` ends.

    `submit(service_s, on_done)` returns the action ("run", "queue", "extra" or
    "reject") and calls `on_done(start_s, end_s)` when the task finishes (not for a
    rejection); each submission is recorded as (name, "task").
    """

    def __init__(self, sim: Sim, name: str = "pool", *, core: int, max_threads: int, queue_capacity: int,
                 keep_alive_s: float | None = None):
        self.sim = validate.instance("sim", sim, Sim, "a labkit Sim")
        self.name = validate.text("name", name)
        # core >= 1: with no core threads Java also starts one when a task is queued and none exist,
        # a rule this model leaves out.
        self.core = validate.number("core", core, lo=1, hi=WorkerPool.MAX_WORKERS, integer=True)
        self.max_threads = validate.number("max_threads", max_threads, lo=core, hi=WorkerPool.MAX_WORKERS,
                                           integer=True)
        self.queue_capacity = validate.number("queue_capacity", queue_capacity, lo=0, hi=10_000_000, integer=True)
        # None: threads beyond core never end (kept as infinity: one comparison when a thread idles).
        self.keep_alive_s = math.inf if keep_alive_s is None else validate.number(
            "keep_alive_s", keep_alive_s, lo=0, hi=86_400)
        self.threads = 0  # threads alive, busy or idle
        self._idle: dict[int, float] = {}  # idle thread id -> since when (insertion order: longest idle first)
        self._ids = 0
        self._queue: deque = deque()
        self._record = sim.trace.recorder(name, "task")

    @property
    def queued(self) -> int:
        """Tasks waiting in the queue now."""
        return len(self._queue)

    @property
    def busy(self) -> int:
        """Threads running a task now."""
        return self.threads - len(self._idle)

    def submit(self, service_s: float, on_done=None) -> str:
        """Hand the pool a task that needs `service_s` of work; returns what the pool did with it."""
        validate.number("service_s", service_s, lo=0)
        validate.callable_("on_done", on_done, optional=True)
        now = self.sim.now
        if self.threads < self.core:
            action = RUN
            self._run(self._new_thread(), now, service_s, on_done)
        elif self._idle:                      # the queue is empty and a thread is waiting on it: a hand-off
            action = RUN
            thread = next(iter(self._idle))
            del self._idle[thread]
            self._run(thread, now, service_s, on_done)
        elif len(self._queue) < self.queue_capacity:
            action = QUEUE
            self._queue.append((now, service_s, on_done))
        elif self.threads < self.max_threads:
            action = EXTRA
            self._run(self._new_thread(), now, service_s, on_done)
        else:
            action = REJECT
        self._record(now, {"action": action, "service_s": service_s, "queued": len(self._queue),
                           "threads": self.threads})
        return action

    def _new_thread(self) -> int:
        self.threads += 1
        self._ids += 1
        return self._ids

    def _run(self, thread, start, service_s, on_done):
        self.sim.at(start + service_s, self._finish, thread, start, on_done, priority=-1)

    def _finish(self, thread, start, on_done):
        now = self.sim.now
        if on_done is not None:
            on_done(start, now)
        if self._queue:
            _, service_s, nxt = self._queue.popleft()
            self._run(thread, now, service_s, nxt)
            return
        self._idle[thread] = now
        if self.keep_alive_s != math.inf:
            self.sim.at(now + self.keep_alive_s, self._expire, thread, now, priority=-1)

    def _expire(self, thread, since):
        if self._idle.get(thread) == since and self.threads > self.core:
            del self._idle[thread]
            self.threads -= 1

    def __repr__(self) -> str:
        return (f"ThreadPool({self.name!r}, core={self.core}, max_threads={self.max_threads}, "
                f"queue_capacity={self.queue_capacity}, threads={self.threads}, queued={self.queued})")


def executor_timeline(core: int, max_threads: int, queue_capacity: int, tasks) -> list[tuple[str, float | None]]:
    """What a `ThreadPool` does with `tasks`, a list of (arrival_s, service_s) in time order: per task
    (action, start_s), start_s None for a rejection (lesson 04). A task finishing at the moment
    another arrives frees its thread first."""
    tasks = validate.items("tasks", tasks, (tuple, list), "(arrival_s, service_s) pairs")
    for task in tasks:
        if len(task) != 2:
            raise ValueError(f"tasks must be (arrival_s, service_s) pairs, got {task!r}")
        validate.number("arrival_s", task[0], lo=0), validate.number("service_s", task[1], lo=0)
    sim = Sim(0)
    pool = ThreadPool(sim, core=core, max_threads=max_threads, queue_capacity=queue_capacity)
    out: list = [None] * len(tasks)

    def arrive(i, service_s):
        action = pool.submit(service_s, lambda start, end: out.__setitem__(i, (out[i][0], start)))
        out[i] = (action, None)

    last = -math.inf
    for i, (arrival_s, service_s) in enumerate(tasks):
        if arrival_s < last:
            raise ValueError(f"tasks must be in time order, got {arrival_s:g} s after {last:g} s")
        last = arrival_s
        sim.at(arrival_s, arrive, i, service_s)
    sim.run()
    return out
