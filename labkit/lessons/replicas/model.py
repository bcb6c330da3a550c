"""Lesson 01's model: read/write splitting over a primary and its replicas.

`ReplicaRouter` is labkit's reference router: writes and strong reads go to the primary,
other reads rotate over the replicas that are up and not too far behind, and a user's
own writes can be made visible to them (a sticky window or a session token).
`simulate` runs a read-heavy profile service on a `ReplicaSet` through a
router; `ReplicasRun` reads per-node load, replica lag and stale reads from the trace.
"""
from __future__ import annotations

import functools
import heapq
import math
import numbers
from dataclasses import dataclass, field

from labkit import validate
from labkit.clock import Sim
from labkit.db import ExponentialLag, LagSpike, ReplicaSet, UniformLag
from labkit.knobs import Choice, Knob, Knobs
from labkit.mode import arguments_checked, made_when_read
from labkit.run import Run
from labkit.workload import Op, Steady, Zipf, arrivals, drive_workload

KNOBS = Knobs(
    Knob("replicas", 0, 6, 1, 3),
    Knob("lag_s", 0.0, 3.0, 0.1, 0.2, unit="s"),
    Knob("write_ratio", 0.0, 0.3, 0.02, 0.1),
    Knob("read_rate_rps", 50.0, 400.0, 25.0, 200.0, unit="reads/s"),
    Knob("max_lag_s", 0.1, 5.0, 0.1, 1.0, unit="s"),
    Choice("read_your_writes", {"off": None, "sticky": "sticky", "token": "token"}),
)

WHEN_ALL_LAGGING = ("primary", "least_behind")
READ_YOUR_WRITES = (None, "sticky", "token")


class ReplicaRouter:
    """labkit's reference read/write splitter over a `ReplicaSet` (lesson 01).

    Writes and `strong=True` reads go to the primary. Other reads rotate (round robin)
    over the replicas that are up and, when `max_lag_s` is set, at most `max_lag_s`
    seconds behind. When replicas exist but none qualifies, the read goes to the primary
    (`when_all_lagging="primary"`, what ProxySQL does once it shuns lagging replicas) or
    to the two least-behind replicas that are up (`"least_behind"`, Vitess's choice:
    stale rather than collapsed onto one node); either way it is counted in `degraded_reads`
    and recorded as ("router", "degraded").

    `read_your_writes` makes a user's own writes visible to them: `"sticky"` sends the
    user's reads to the primary for `sticky_s` after their last write (Rails'
    DatabaseSelector); `"token"` remembers the log position of the user's last write
    and reads from a replica that has applied it, else from the primary (ProxySQL's
    GTID-consistent reads, MaxScale's causal_reads).
    """

    MIN_SERVING = 2   # replicas kept serving under "least_behind", as Vitess's default

    def __init__(self, replica_set: ReplicaSet, *, max_lag_s: float | None = None,
                 when_all_lagging: str = "primary", read_your_writes: str | None = None,
                 sticky_s: float = 2.0, clock=None):
        validate.instance("replica_set", replica_set, ReplicaSet, "a labkit ReplicaSet")
        if max_lag_s is not None:
            validate.number("max_lag_s", max_lag_s, lo=0, lo_open=True)
        validate.choice("when_all_lagging", when_all_lagging, WHEN_ALL_LAGGING)
        validate.choice("read_your_writes", read_your_writes, READ_YOUR_WRITES)
        validate.number("sticky_s", sticky_s, lo=0)
        self.replica_set = replica_set
        self.clock = replica_set.sim if clock is None else validate.clock("clock", clock)
        self.max_lag_s, self.when_all_lagging = max_lag_s, when_all_lagging
        self.read_your_writes, self.sticky_s = read_your_writes, sticky_s
        self.degraded_reads = 0
        self._turn = 0             # round-robin position over the replicas that qualify
        self._last_write: dict = {}  # user -> (time of their last write, its log position)

    def write(self, key, user=None, **fields) -> int:
        """Write row `key` on the primary; returns its log position (the user's session token)."""
        position = self.replica_set.primary.write(key, **fields)
        if user is not None:
            self._last_write[user] = (self.clock.now, position)
        return position

    def read(self, key, user=None, strong: bool = False):
        """Read row `key` from the node this router picks for `user` (see the class docstring)."""
        return self.pick(user, strong).read(key)

    def pick(self, user=None, strong: bool = False):
        """The node a read by `user` goes to now."""
        validate.instance("strong", strong, bool, "True or False")
        rs = self.replica_set
        if strong or not rs.replicas:
            return rs.primary
        wrote = self._last_write.get(user) if self.read_your_writes else None
        if wrote is not None and self.read_your_writes == "sticky" and self.clock.now - wrote[0] < self.sticky_s:
            return rs.primary
        up = [r for r in rs.replicas if r.is_up]
        limit = self.max_lag_s
        fresh = up if limit is None else [r for r in up if r.lag_s <= limit]
        if not fresh:
            self.degraded_reads += 1
            if self.when_all_lagging == "primary" or not up:
                rs.sim.record("router", "degraded", node=rs.primary.name)
                return rs.primary
            # Vitess keeps min_number_serving_vttablets (2) serving: the least behind, stale or not.
            fresh = sorted(up, key=lambda r: r.lag_s)[:self.MIN_SERVING]
            rs.sim.record("router", "degraded", node="replicas")
        if wrote is not None and self.read_your_writes == "token":
            fresh = [r for r in fresh if r.position >= wrote[1]]
            if not fresh:
                return rs.primary   # no replica has the user's write yet: that is the guarantee working
        node = fresh[self._turn % len(fresh)]
        self._turn += 1
        return node

    def __repr__(self) -> str:
        return (f"ReplicaRouter(max_lag_s={self.max_lag_s}, when_all_lagging={self.when_all_lagging!r}, "
                f"read_your_writes={self.read_your_writes!r}, degraded_reads={self.degraded_reads})")


@dataclass
class ReplicasRun(Run):
    """The result of `lk.replicas.simulate`: the simulation, its replica set and router, and summaries read from the trace (lesson 01)."""

    sim: Sim
    replica_set: ReplicaSet
    router: object
    duration_s: float
    settings: dict = field(default_factory=dict)

    @property
    def node_names(self) -> list[str]:
        return [n.name for n in self.replica_set.nodes]

    def series(self, bin_s: float = 0.5) -> dict:
        """Per-bin series: load per node (queries/s), each replica's lag (s), stale-read shares (%)."""
        # Before the memo: True must not find 1.0's series.
        validate.number("bin_s", bin_s, lo=0, lo_open=True, hi=self.duration_s)
        key = ("series", bin_s)
        return self._once(key, lambda: self._series(bin_s))

    def _series(self, bin_s: float) -> dict:
        n = len(self.bin_starts(bin_s))
        names = self.node_names
        trace = self.trace
        reads = {name: [0] * n for name in names}
        stale, total = [0] * n, [0] * n
        for node in trace.components("read"):
            served = self.per_bin(node, "read", bin_s)
            reads[node] = [a + b for a, b in zip(reads[node], served)]
            total = [a + b for a, b in zip(total, served)]
            stale = [a + b for a, b in zip(stale, self.per_bin(node, "read", bin_s, "stale"))]
        writes = [0] * n
        for writer in trace.components("write"):
            writes = [a + b for a, b in zip(writes, self.per_bin(writer, "write", bin_s))]
        own, own_stale = self.per_bin("app", "own_read", bin_s), self.per_bin("app", "own_read", bin_s, "stale")
        lag = {name: [0.0] * n for name in names[1:]}
        for t, f in trace.timed("monitor", "status"):
            # The monitor's samples fall on bin edges: one belongs to the bins on both sides.
            i = int(t // bin_s)
            for j in {min(i, n - 1), min(max(math.ceil(t / bin_s) - 1, 0), n - 1)}:
                lag[f["node"]][j] = max(lag[f["node"]][j], f["lag_s"])
        # A replica replays every write. Applying is instant in the simulation, so a backlog
        # would land as one impossible burst; counting each write when it commits gives the
        # steady replay load a real replica carries instead.
        load = {name: [(r + w) / bin_s for r, w in zip(reads[name], writes)] for name in names}
        pct = lambda part, whole: [100 * p / w if w else math.nan for p, w in zip(part, whole)]  # noqa: E731
        return {
            "time_s": [i * bin_s for i in range(n)],
            "load_qps": load,
            "reads_qps": {name: [r / bin_s for r in reads[name]] for name in names},
            "lag_s": lag,
            "stale_pct": pct(stale, total),
            "own_stale_pct": pct(own_stale, own),
        }

    def summary(self) -> dict:
        """The headline numbers a learner compares between runs."""
        return dict(self._once("summary", self._summary))

    def _summary(self) -> dict:
        per_s = self.series(1.0)
        capacity = self.settings["node_capacity_qps"]
        trace = self.trace
        names = self.node_names
        served = {name: 0 for name in names}
        stale_reads = 0
        for node in trace.components("read"):
            stale_reads += sum(f["stale"] for f in trace.fields(node, "read"))
            served[node] += trace.count(node, "read")
        reads = sum(served.values())
        own = trace.fields("app", "own_read")
        writes = sum(trace.count(writer, "write") for writer in trace.components("write"))
        mean = {name: (served[name] + writes) / self.duration_s / capacity for name in names}
        peak = {name: max(v) / capacity for name, v in per_s["load_qps"].items()}
        busiest = max(names[1:], key=lambda name: (mean[name], peak[name])) if names[1:] else None
        lags = [f["lag_s"] for f in trace.fields("monitor", "status")]
        return {
            "reads": reads,
            "writes": writes,
            "primary_read_share": served["primary"] / (reads or 1),
            "primary_utilisation": mean["primary"],
            "primary_peak_utilisation": peak["primary"],
            "busiest_replica": busiest,
            "replica_utilisation": mean[busiest] if busiest else math.nan,
            "replica_peak_utilisation": peak[busiest] if busiest else math.nan,
            "stale_share": stale_reads / (reads or 1),
            "own_reads": len(own),
            "own_stale": sum(f["stale"] for f in own),
            "degraded_reads": trace.count("router", "degraded"),
            "max_lag_s": max(lags, default=0.0),
        }


@functools.lru_cache(maxsize=32)
def _workload(seed, duration_s, read_rate_rps, write_ratio, n_users, zipf_s, reread_after_s: tuple) -> tuple:
    """Visitors' reads of Zipf-popular profiles, users saving their own profile, and their re-reads."""
    # The ops depend only on the traffic knobs, so a Play panel that moves a replication
    # knob reuses them; they come from their own Sim so the replication run draws from an
    # RNG in the same state whether or not the ops were cached.
    rng = Sim(seed).rng
    popular = Zipf(n_users, zipf_s)
    ops, follow = [], []
    for t in arrivals(rng, Steady(read_rate_rps / (1 - write_ratio)), 0.0, duration_s):
        if rng.random() < write_ratio:
            # Anyone may save their profile, popular or not; popularity shapes the reads.
            user = rng.randint(1, n_users)
            ops.append(Op(t, "write", user))
            follow += [Op(t + d, "read", user, True) for d in reread_after_s if t + d < duration_s]
        else:
            ops.append(Op(t, "read", popular.sample(rng)))
    follow.sort(key=lambda op: op.time_s)
    return tuple(heapq.merge(ops, follow, key=lambda op: op.time_s))


@made_when_read(ReplicasRun)
def simulate(*, seed: int = 1, duration_s: float = 30.0, replicas: int = 3, lag_s=0.2,
                      read_rate_rps: float = 200.0, write_ratio: float = 0.1, n_users: int = 10_000,
                      zipf_s: float = 1.0, reread_after_s=(0.5,), spikes=(), max_lag_s: float | None = None,
                      when_all_lagging: str = "primary", read_your_writes: str | None = None,
                      sticky_s: float = 2.0, router=None, node_capacity_qps: float = 150.0,
                      bin_s: float = 0.5) -> ReplicasRun:
    """A read-heavy profile service on a primary and `replicas` replicas, through a router (lesson 01).

    Visitors read profiles at `read_rate_rps`, popular ones more often (Zipf, `zipf_s`); a
    `write_ratio` share of all queries are users saving their own profile, and each such
    user reads it back `reread_after_s` seconds later (one entry per re-read). `lag_s` is the
    replication lag in seconds, or an `ExponentialLag` / `UniformLag`; `spikes` are
    `LagSpike` windows. The router is labkit's `ReplicaRouter` with the given settings,
    or `router(replica_set)` if a factory is given: any object with
    `write(key, user=..., **fields)` and `read(key, user=...)`.
    """
    validate.number("seed", seed, integer=True)
    validate.number("duration_s", duration_s, lo=1, hi=600)
    for name, value in (("replicas", replicas), ("read_rate_rps", read_rate_rps), ("write_ratio", write_ratio)):
        KNOBS[name].check(value)
    read_your_writes = KNOBS["read_your_writes"].check(read_your_writes)   # "off" means None
    if max_lag_s is not None:
        KNOBS["max_lag_s"].check(max_lag_s)
    if not isinstance(lag_s, (ExponentialLag, UniformLag)):
        KNOBS["lag_s"].check(lag_s)
    validate.number("n_users", n_users, lo=1, hi=1_000_000, integer=True)
    validate.number("zipf_s", zipf_s, lo=0, hi=5)
    validate.callable_("router", router, "a factory called with the replica set (a class or function)", optional=True)
    validate.number("node_capacity_qps", node_capacity_qps, lo=0, lo_open=True)
    validate.number("bin_s", bin_s, lo=0.1, hi=duration_s)
    if isinstance(reread_after_s, numbers.Real):
        reread_after_s = (reread_after_s,)
    spikes = validate.items("spikes", spikes, LagSpike, "LagSpike windows")
    reread_after_s = validate.items("reread_after_s", reread_after_s, numbers.Real, "delays in seconds")
    for d in reread_after_s:
        validate.number("reread_after_s", d, lo=0, hi=duration_s)
    if isinstance(lag_s, (ExponentialLag, UniformLag)):
        lag = lag_s
    else:
        lag = float(lag_s)
    sim = Sim(seed)
    rs = ReplicaSet(sim, replicas=replicas, lag=lag, spikes=spikes, capacity_qps=node_capacity_qps)
    if router is None:
        rt = ReplicaRouter(rs, max_lag_s=max_lag_s, when_all_lagging=when_all_lagging,
                           read_your_writes=read_your_writes, sticky_s=sticky_s)
    arguments_checked()
    if router is not None:
        rt = router(rs)
    ops = _workload(seed, float(duration_s), float(read_rate_rps), float(write_ratio), n_users,
                    float(zipf_s), reread_after_s)
    trace, record = sim.trace, sim.record
    saved = [0]

    def handle(op):
        if op.op == "write":
            saved[0] += 1
            rt.write(op.key, user=op.key, bio=f"v{saved[0]}")
        elif op.after_write:
            before = len(trace)
            rt.read(op.key, user=op.key)
            # The node's read event says where it went and whether it missed a write;
            # the owner is the only writer of their profile, so stale means "my own save".
            done = trace.last("read", since=before)
            if done is not None:
                record("app", "own_read", node=done.component, stale=done.fields["stale"])
        else:
            rt.read(op.key)

    def monitor():
        for r in rs.replicas:
            record("monitor", "status", node=r.name, position=r.position, lag_s=r.lag_s)

    # Every sample scheduled up front (a closure that re-schedules itself is a reference
    # cycle holding the Sim), at the times repeated `after(bin_s)` calls would give.
    t = 0.0
    while True:
        sim.at(t, monitor, priority=-1)
        if not t + bin_s <= duration_s + 1e-9:
            break
        t += bin_s
    drive_workload(sim, ops, handle)
    sim.run(until=duration_s)
    settings = dict(seed=seed, replicas=replicas, lag_s=lag_s, read_rate_rps=read_rate_rps,
                    write_ratio=write_ratio, max_lag_s=max_lag_s, when_all_lagging=when_all_lagging,
                    read_your_writes=read_your_writes, sticky_s=sticky_s,
                    node_capacity_qps=node_capacity_qps, bin_s=bin_s, spikes=spikes)
    return ReplicasRun(sim, rs, rt, float(duration_s), settings)
