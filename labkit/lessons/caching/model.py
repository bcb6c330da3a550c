"""Lesson 02's model: a slow database, L1s and a shared L2, a hot key's stampede and the stale-set race.

- `SlowDatabase` is a `Database` whose queries take `query_s` of virtual time when asked
  through `load(key, callback)`, that writes batches in one round trip (`write_many`), and
  that can be down for a while (its calls then raise `DatabaseDown`).
- `simulate` runs read/write traffic through app servers that each have an
  in-process L1 and share an L2 (the Play panel's model).
- `simulate_hot_key` sends a hot key's traffic through app servers built from any class
  with the lesson's `get(key, reply)` protocol; `CacheAside` is the plain version whose
  expiry stampedes. `stale_set_race` scripts the cache-aside race on the virtual clock.
"""
from __future__ import annotations

import functools
import math
import numbers
from dataclasses import dataclass, field

from labkit import validate
from labkit.cache import LRUCache, RedisCache
from labkit.clock import Sim
from labkit.db import Database
from labkit.knobs import Knob, Knobs
from labkit.mode import arguments_checked, made_when_read
from labkit.plots import not_drawn_while_grading
from labkit.run import Run, as_runs
from labkit.widgets import Table
from labkit.workload import Steady, Zipf, arrivals, drive_workload, make_workload

KNOBS = Knobs(
    Knob("ttl_s", 1.0, 120.0, 1.0, 30.0, unit="s", label="L2 ttl s"),
    Knob("l1_items", 0, 500, 10, 50, label="L1 items"),
    Knob("l1_ttl_s", 0.5, 30.0, 0.5, 2.0, unit="s", label="L1 ttl s"),
    Knob("zipf_s", 0.0, 1.6, 0.1, 1.0),
    Knob("write_ratio", 0.0, 0.5, 0.05, 0.05),
    Knob("servers", 1, 16, 1, 4),
)


class DatabaseDown(RuntimeError):
    """Raised by a `SlowDatabase` call made while the database is down (lesson 02)."""


class SlowDatabase(Database):
    """A `Database` whose queries take `query_s` of virtual time, with batched writes and outages (lesson 02).

    - `read(key)` answers at once (as lesson 01's nodes do); `load(key, callback)` is the
      same query taking time: it reads a snapshot now and calls `callback(row)` `query_s`
      seconds later, while other requests go on. `queries` counts both.
    - `write(key, **fields)` commits one row; `write_many([(key, fields), ...])` commits
      several in one round trip and returns the last log position. `round_trips` counts
      every call that reached the database, reads and writes, failed ones included.
    - During an outage (`outages=[(start_s, end_s), ...]`) every call raises `DatabaseDown`
      and changes nothing; `is_up` says whether the database answers now.
    """

    def __init__(self, sim: Sim, name: str = "db", *, query_s: float = 0.2, outages=(), table: str = "items",
                 path: str | None = None):
        super().__init__(sim, name, path=path, table=table)
        self.query_s = validate.number("query_s", query_s, lo=0)
        windows = []
        for window in validate.items("outages", outages, object, "(start_s, end_s) pairs"):
            validate.instance("outages", window, (tuple, list), "(start_s, end_s) pairs")   # a TypeError
            if len(window) != 2:   # the right kind, the wrong length: a ValueError
                raise ValueError(f"outages must be (start_s, end_s) pairs, got {window!r}")
            start = validate.number("outage start_s", window[0], lo=0)
            validate.number("outage end_s", window[1], lo=start, lo_open=True)
            windows.append((float(window[0]), float(window[1])))
        self.outages = tuple(sorted(windows))
        self.queries = 0
        self.round_trips = 0

    @property
    def is_up(self) -> bool:
        """False during an outage: every call then raises DatabaseDown."""
        now = self.sim.now
        return not any(start <= now < end for start, end in self.outages)

    def _arrive(self, op: str) -> None:
        # Every call is a round trip, answered or refused; a refused one changes nothing.
        self.round_trips += 1
        if not self.is_up:
            self.sim.record(self.name, "refused", op=op)
            raise DatabaseDown(f"{self.name} is down (t={self.sim.now:g} s): nothing was read or written; "
                               "try again later")

    def read(self, key) -> dict | None:
        """The row `key` as a dict, or None; answered at once."""
        self._arrive("read")
        self.queries += 1
        return super().read(key)

    def load(self, key, callback) -> None:
        """Query row `key`: the row as it is now is passed to `callback(row)` `query_s` seconds later."""
        validate.callable_("callback", callback, "a function that takes the row")
        self._arrive("load")
        self.queries += 1
        row = super().read(key)  # the query's snapshot: what it will answer, whatever commits meanwhile
        self.sim.after(self.query_s, callback, row)

    def write(self, key, **fields) -> int:
        """Insert or update row `key` with `fields` in one round trip; returns the commit's log position."""
        self._arrive("write")
        return super().write(key, **fields)

    def write_many(self, rows) -> int:
        """Insert or update several rows, [(key, fields_dict), ...], in one round trip; returns the last position."""
        rows = validate.items("rows", rows, object, "(key, fields_dict) pairs")
        for row in rows:
            validate.instance("rows", row, (tuple, list), "(key, fields_dict) pairs")
            if not (len(row) == 2 and isinstance(row[1], dict)):
                raise ValueError(f"rows must be (key, fields_dict) pairs, got {row!r}")
            # Field names become column names in the SQL, as write(**fields) keyword names do.
            bad = [name for name in row[1] if not (isinstance(name, str) and name.isidentifier())]
            if bad:
                raise ValueError(f"field names must be Python identifiers, got {bad[0]!r}")
        self._arrive("write_many")
        self.sim.record(self.name, "batch", rows=len(rows))
        position = self.position
        for key, fields in rows:
            position = super().write(key, **fields)
        return position

    def _check_up(self) -> None:
        # Raw SQL (query, execute) is refused during an outage too, though it is not counted.
        if not self.is_up:
            raise DatabaseDown(f"{self.name} is down (t={self.sim.now:g} s)")

    _check_writable = _check_up

    def __repr__(self) -> str:
        return f"SlowDatabase({self.name!r}, position={self.position}, query_s={self.query_s:g}, up={self.is_up})"


# --------------------------------------------------------------------------------------------
# Play: app servers with an L1 each, one shared L2, one database

# Rough costs of one lookup, for the latency row: an in-process dict, a Redis round trip in
# one data centre, an indexed query on a busy database.
LATENCY_MS = {"l1": 0.05, "l2": 0.5, "db": 5.0}
LEVELS = ("l1", "l2", "db")


@dataclass
class CachingRun(Run):
    """The result of `lk.caching.simulate`: the simulation, its settings, and summaries read from the trace (lesson 02)."""

    sim: Sim
    duration_s: float
    settings: dict = field(default_factory=dict)

    def series(self, bin_s: float | None = None) -> dict:
        """Per-bin series: reads served per level (% and per second, writes in the database's), queries/s, stale %."""
        bin_s = self.settings["bin_s"] if bin_s is None else validate.number("bin_s", bin_s, lo=0, lo_open=True)
        key = ("series", bin_s)
        return self._once(key, lambda: self._series(bin_s))

    def _series(self, bin_s: float) -> dict:
        # The app records one event per request: per bin, who served each read, and how many were stale.
        levels = self.per_bin("app", "read", bin_s, "level", reduce=list)
        served = {level: [group.count(level) for group in levels] for level in LEVELS}
        stale = self.per_bin("app", "read", bin_s, "stale")
        writes = self.per_bin("app", "write", bin_s)
        reads = [sum(v) for v in zip(*served.values())]
        pct = lambda part: [100 * p / r if r else math.nan for p, r in zip(part, reads)]  # noqa: E731
        # Per second: the database answers its reads and every write.
        rps = {"l1": served["l1"], "l2": served["l2"], "db": [r + w for r, w in zip(served["db"], writes)]}
        return {
            "time_s": self.bin_starts(bin_s),
            "served_pct": {lv: pct(served[lv]) for lv in LEVELS},
            "served_rps": {lv: [v / bin_s for v in rps[lv]] for lv in LEVELS},
            # The database runs every read that missed both caches, and every write.
            "db_qps": [(r + w) / bin_s for r, w in zip(served["db"], writes)],
            "stale_pct": pct(stale),
            "_counts": {"served": served, "stale": stale, "writes": writes},
        }

    def summary(self) -> dict:
        """The headline numbers a learner compares between runs."""
        return dict(self._once("summary", self._summary))

    def _summary(self) -> dict:
        s = self.series(1.0)
        counts = s["_counts"]
        served = {lv: sum(counts["served"][lv]) for lv in LEVELS}
        reads, writes, stale = sum(served.values()), sum(counts["writes"]), sum(counts["stale"])
        l1_lookups = reads if self.settings["l1_items"] else 0
        l2_lookups = served["l2"] + served["db"] if self.settings["l2"] else 0
        settings = self.settings
        return {
            "reads": reads,
            "writes": writes,
            # Hit ratios follow from who served each read: an L1 is asked first, the L2 only on an L1 miss.
            "l1_hit_ratio": served["l1"] / l1_lookups if l1_lookups else math.nan,
            "l2_hit_ratio": served["l2"] / l2_lookups if l2_lookups else math.nan,
            **{f"{level}_share": served[level] / (reads or 1) for level in LEVELS},
            "db_qps": (served["db"] + writes) / self.duration_s,
            "db_peak_qps": max(s["db_qps"], default=0.0),
            "uncached_qps": (reads + writes) / self.duration_s,
            "stale_share": stale / (reads or 1),
            "l2_ops_per_s": (l2_lookups + (served["db"] + writes if settings["l2"] else 0)) / self.duration_s,
            "mean_latency_ms": sum(served[lv] * self._latency_ms(lv) for lv in LEVELS) / (reads or 1),
            "ideal_l1_hit_ratio": Zipf(settings["n_keys"], settings["zipf_s"]).top_share(settings["l1_items"]),
        }

    def _latency_ms(self, level: str) -> float:
        # A read pays for every level it asked on the way down (levels the run has, that is).
        present = {"l1": bool(self.settings["l1_items"]), "l2": bool(self.settings["l2"]), "db": True}
        return sum(LATENCY_MS[lv] for lv in LEVELS[:LEVELS.index(level) + 1] if present[lv])


@functools.lru_cache(maxsize=32)
def _caching_ops(seed, duration_s, rate_rps, n_keys, zipf_s, write_ratio) -> tuple:
    """The run's reads and writes; they depend only on the traffic knobs, so a cache knob reuses them.

    Drawn from their own Sim: the caching run draws nothing, so cached or not, the numbers are the same.
    """
    return tuple(make_workload(Sim(seed), duration_s=duration_s, rate=rate_rps, n_keys=n_keys, zipf_s=zipf_s,
                               write_fraction=write_ratio))


@KNOBS.validates
@made_when_read(CachingRun)
def simulate(*, seed: int = 1, duration_s: float = 60.0, rate_rps: float = 50.0, n_keys: int = 1000,
                     zipf_s: float = 1.0, write_ratio: float = 0.05, servers: int = 4, l1_items: int = 50,
                     l1_ttl_s: float = 2.0, l2: bool = True, ttl_s: float = 30.0, l2_backend: str = "model",
                     bin_s: float = 2.0) -> CachingRun:
    """Profile reads and writes through app servers with an L1 each, a shared L2 and one database (lesson 02).

    Requests arrive at `rate_rps` (Poisson) and take turns over the servers; keys follow
    `Zipf(n_keys, zipf_s)`; a `write_ratio` share are writes. A read asks its server's L1
    (`l1_items` entries, LRU, `l1_ttl_s`; 0 items: no L1), then the L2 (`ttl_s`; `l2=False`:
    none), then the database, and fills the levels it missed on the way back (cache-aside).
    A write commits to the database, then deletes the key from the L2 and from its own
    server's L1; the other servers' L1s cannot be reached, so they serve the old value
    until their entry expires: those reads count as stale.

    `l2_backend="redis"` uses a `RedisCache`; the default is an in-process stand-in with
    the same get/set/delete/TTL semantics (an `LRUCache` larger than the key space), so a
    Play panel stays live. labkit's tests check that both give the same run.
    """
    validate.number("seed", seed, integer=True)
    validate.number("duration_s", duration_s, lo=1, hi=600)
    validate.number("rate_rps", rate_rps, lo=1, hi=2000)
    validate.number("n_keys", n_keys, lo=1, hi=100_000, integer=True)
    validate.instance("l2", l2, bool, "True or False (whether there is a shared L2)")
    validate.choice("l2_backend", l2_backend, ("model", "redis"))
    validate.number("bin_s", bin_s, lo=0.1, hi=duration_s)
    arguments_checked()
    ops = _caching_ops(seed, float(duration_s), float(rate_rps), n_keys, float(zipf_s), float(write_ratio))
    sim = Sim(seed)
    db = Database(sim, "db", table="profiles")
    # Every profile exists at version 0: one statement, not n_keys round trips.
    db.write(1, version=0)
    db.execute("INSERT OR IGNORE INTO [profiles] (id, version) "
               "WITH RECURSIVE k(i) AS (SELECT 2 UNION ALL SELECT i + 1 FROM k WHERE i < ?) SELECT i, 0 FROM k",
               (n_keys,), table="profiles")
    l1s = [LRUCache(sim, l1_items, ttl_s=l1_ttl_s, name=f"l1-{i + 1}") if l1_items else None
           for i in range(servers)]
    if not l2:
        shared = None
    elif l2_backend == "redis":
        shared = RedisCache(sim, "l2", default_ttl_s=ttl_s)
    else:
        shared = LRUCache(sim, n_keys + 1, ttl_s=ttl_s, name="l2")
    version = [0] * (n_keys + 1)     # the database's current version of each profile
    record = sim.record
    turn = [0]

    def handle(op):
        server = turn[0] % servers
        turn[0] += 1
        l1, key = l1s[server], op.key
        if op.op == "write":
            version[key] += 1
            db.write(key, version=version[key])
            if shared is not None:
                shared.delete(key)
            if l1 is not None:
                l1.delete(key)
            record("app", "write", key=key, server=server)
            return
        row = l1.get(key) if l1 is not None else None
        level = "l1"
        if row is None:
            row = shared.get(key) if shared is not None else None
            level = "l2"
            if row is None:
                row = db.read(key)
                level = "db"
                if shared is not None:
                    shared.set(key, row)
            if l1 is not None:
                l1.set(key, row)
        record("app", "read", key=key, server=server, level=level, stale=row["version"] < version[key])

    drive_workload(sim, ops, handle)
    try:
        sim.run(until=duration_s)
    finally:
        if isinstance(shared, RedisCache):
            shared.flush()   # a run leaves nothing behind on a shared server
    settings = dict(seed=seed, duration_s=duration_s, rate_rps=rate_rps, n_keys=n_keys, zipf_s=zipf_s,
                    write_ratio=write_ratio, servers=servers, l1_items=l1_items, l1_ttl_s=l1_ttl_s, l2=l2,
                    ttl_s=ttl_s, l2_backend=l2_backend, bin_s=bin_s)
    return CachingRun(sim, float(duration_s), settings)


# --------------------------------------------------------------------------------------------
# Break it: the lesson's protocol, the hot-key stampede and the stale-set race
#
# An app server object is built as `App(cache, db, clock, ttl_s=...)` and answers
# `get(key, reply)` by calling `reply(row)` once, now (a hit) or when a query returns;
# `update(key, **fields)` commits a change. Queries take time (`db.load`), so requests
# overlap, and both races need exactly that.


class CacheAside:
    """Plain cache-aside in the lesson's get(key, reply) protocol: the naive baseline of lesson 02's Break it.

    A hit replies at once. A miss queries the database (`db.load`) and, when the row
    arrives, stores it for `ttl_s` and replies. `update` commits to the database, then
    deletes the key from the cache. Concurrent misses all query the database (the
    stampede at a hot key's expiry), and a fill that lands after an update's delete puts
    the old row back (the stale set).
    """

    def __init__(self, cache, db, clock, ttl_s: float = 30.0):
        self.ttl_s = validate.number("ttl_s", ttl_s, lo=0, lo_open=True)
        self.cache = validate.instance("cache", cache, (LRUCache, RedisCache), "a labkit LRUCache or RedisCache")
        self.db = validate.instance("db", db, SlowDatabase, "a lk.caching.SlowDatabase (its load(key, callback))")
        self.clock = validate.clock("clock", clock)

    def get(self, key, reply) -> None:
        """Call `reply(row)` with row `key`: from the cache, or from the database on a miss."""
        validate.callable_("reply", reply, "a function called with the row")
        row = self.cache.get(key)
        if row is not None:
            reply(row)
            return

        def arrived(row):
            if row is not None:
                self.cache.set(key, row, ttl_s=self.ttl_s)
            reply(row)

        self.db.load(key, arrived)

    def update(self, key, **fields) -> None:
        """Commit the change to the database, then delete the cached copy."""
        self.db.write(key, **fields)
        self.cache.delete(key)


def _app_factory(app):
    validate.callable_("app", app, "a class (or factory) called as app(cache, db, clock, ttl_s=...)", optional=True)
    return CacheAside if app is None else app


@dataclass
class HotKeyRun(Run):
    """The result of `simulate_hot_key`: the simulation, its settings, and what the trace shows (lesson 02)."""

    sim: Sim
    duration_s: float   # the traffic's; queries still in flight then land in the 2 s after, outside the bins
    settings: dict = field(default_factory=dict)
    answers: list = field(default_factory=list, repr=False)   # per request: (sent_s, [(answered_s, row), ...])

    def query_times(self) -> list[float]:
        """When each database query for the hot key started."""
        db, key = self.settings["db_name"], self.settings["key"]
        return self._once("queries", lambda: [e.time_s for e in self.trace.select(db, "read") if e.fields["key"] == key])

    def in_flight(self) -> tuple[list[float], list[int]]:
        """(times, queries in flight from then on): how many database queries for the key run at once."""
        query_s = self.settings["query_s"]
        changes = sorted([(t, 1) for t in self.query_times()] + [(t + query_s, -1) for t in self.query_times()],
                         key=lambda c: (c[0], c[1]))   # an end before a start at the same instant
        times, counts, now = [0.0], [0], 0
        for t, delta in changes:
            now += delta
            if times[-1] == t:
                counts[-1] = now
            else:
                times.append(t)
                counts.append(now)
        return times, counts

    def expiries(self) -> list[float]:
        """When a read found the hot key's entry expired (what the cache saw, whatever the app stores)."""
        cache, key = self.settings["cache_name"], str(self.settings["key"])
        return [e.time_s for e in self.trace.select(cache, "miss") if e.fields["expired"] and str(e.fields["key"]) == key]

    def summary(self) -> dict:
        """The headline numbers: queries, the most at once, answers and waits."""
        return dict(self._once("summary", self._summary))

    def _summary(self) -> dict:
        waits = [got[0][0] - sent for sent, got in self.answers if got]
        return {
            "requests": len(self.answers),
            "answered": sum(1 for _, got in self.answers if got),
            "answered_twice": sum(1 for _, got in self.answers if len(got) > 1),
            "db_queries": len(self.query_times()),
            "peak_in_flight": max(self.in_flight()[1]),
            "expiries": len(self.expiries()),
            "max_wait_s": max(waits, default=math.nan),
            "mean_wait_ms": 1000 * sum(waits) / len(waits) if waits else math.nan,
        }


@made_when_read(HotKeyRun)
def simulate_hot_key(app=None, *, servers: int = 4, rate_rps: float = 200.0, ttl_s: float = 5.0,
                     query_s: float = 0.2, duration_s: float = 16.0, seed: int = 1, key=1) -> HotKeyRun:
    """One hot key read at `rate_rps` through `servers` app servers built from `app` (default `CacheAside`) (lesson 02).

    The servers share one `RedisCache` and a `SlowDatabase` whose queries take `query_s`.
    One request at t=0 warms the cache; from t=1 s requests arrive (Poisson) and take
    turns over the servers. Each server is `app(cache, db, clock, ttl_s=ttl_s)` and
    answers `get(key, reply)`. The run records every query for the key and every answer.
    """
    make = _app_factory(app)
    validate.number("servers", servers, lo=1, hi=64, integer=True)
    validate.number("rate_rps", rate_rps, lo=1, hi=2000)
    validate.number("ttl_s", ttl_s, lo=0, lo_open=True)
    validate.number("query_s", query_s, lo=0, lo_open=True, hi=10)
    validate.number("duration_s", duration_s, lo=2, hi=120)
    arguments_checked()
    sim = Sim(seed)
    cache = RedisCache(sim, "cache")
    db = SlowDatabase(sim, "db", query_s=query_s)
    try:
        db.write(key, story="Front page", version=1)
        apps = [make(cache, db, sim, ttl_s=ttl_s) for _ in range(servers)]
        answers = []

        def request(server):
            got = []
            answers.append((sim.now, got))

            def reply(row=None):
                got.append((sim.now, row))

            apps[server].get(key, reply)

        sim.at(0.0, request, 0)
        for i, t in enumerate(arrivals(sim.rng, Steady(rate_rps), 1.0, duration_s)):
            sim.at(t, request, i % servers)
        sim.run(until=duration_s + 2.0)   # queries in flight at the end still land
    finally:
        cache.flush()
    settings = dict(servers=servers, rate_rps=rate_rps, ttl_s=ttl_s, query_s=query_s, duration_s=duration_s,
                    seed=seed, key=key, db_name=db.name, cache_name=cache.name,
                    app=getattr(make, "__name__", type(make).__name__))
    return HotKeyRun(sim, float(duration_s), settings, answers)


@made_when_read(Table)
def summarize_hot_key(runs):
    """A table comparing `simulate_hot_key` runs side by side, one column per label (lesson 02)."""
    runs = as_runs(runs, HotKeyRun, "lk.caching.simulate_hot_key")
    arguments_checked()
    sums = [run.summary() for run in runs.values()]
    rows = {
        "requests for the hot key": [s["requests"] for s in sums],
        "... answered": [s["answered"] for s in sums],
        "times a read found it expired": [s["expiries"] for s in sums],
        "database queries for it": [s["db_queries"] for s in sums],
        "most queries in flight at once": [s["peak_in_flight"] for s in sums],
        "slowest answer": ["n/a" if s["max_wait_s"] != s["max_wait_s"] else f"{1000 * s['max_wait_s']:,.0f} ms"
                           for s in sums],
    }
    return Table(rows, columns=list(runs))


@not_drawn_while_grading
def plot_hot_key(runs, title: str | None = None):
    """Database queries in flight for the hot key over time, one line per run: a run, or a dict of label -> run (lesson 02).

    A single run is labelled with the name of its app class."""
    from matplotlib.ticker import MaxNLocator

    from labkit.plots import Chart, PALETTE, fmt, new_figure, round_up

    if isinstance(runs, HotKeyRun):
        runs = {runs.settings["app"]: runs}
    runs = validate.runs(runs, HotKeyRun, "lk.caching.simulate_hot_key")
    labels, runs = list(runs), list(runs.values())
    fig, (ax,) = new_figure(1, 2.4)
    end = max(run.settings["duration_s"] for run in runs)
    for i, (run, label) in enumerate(zip(runs, labels)):
        times, counts = run.in_flight()
        colour = PALETTE[(5, 0, 2, 3)[i % 4]]
        ax.step([*times, end], [*counts, counts[-1]], where="post", color=colour, linewidth=1.6, label=label)
    for t in runs[0].expiries():
        ax.axvline(t, color=PALETTE[7], linestyle=":", linewidth=0.8)
    ax.set_xlim(0, end)
    ax.set_ylim(0, round_up(max(2, 1.15 * max(run.summary()["peak_in_flight"] for run in runs))))
    ax.yaxis.set_major_locator(MaxNLocator(5, integer=True))
    ax.set_ylabel("database queries\nin flight for the key")
    ax.set_xlabel("time (s, simulated); dotted: a read found the entry expired" if runs[0].expiries()
                  else "time (s, simulated)")
    ax.legend(loc="upper left", fontsize=8, framealpha=0.9)
    if title is None:
        last = runs[-1].summary()
        title = (f"{labels[-1]}: {fmt(last['db_queries'])} queries for one row, up to "
                 f"{fmt(last['peak_in_flight'])} at once")
    fig.suptitle(title, fontsize=11)
    return Chart(fig)


@dataclass
class RaceRun(Run):
    """The result of `stale_set_race`: what each visitor saw, and the calls behind it (lesson 02)."""

    sim: Sim
    duration_s: float   # when the script's clock stopped: after its last step, once queries have landed
    settings: dict = field(default_factory=dict)
    steps: list = field(default_factory=list, repr=False)   # (time_s, who, action, [answers])
    db: SlowDatabase | None = field(default=None, repr=False)

    def stale_answers(self) -> list[tuple[float, object]]:
        """(time, value) of each visitor's answer older than what the database held when the read started."""
        return [(t, value) for t, value, stale in self._probe_answers() if stale]

    def _probe_answers(self):
        out = []
        for t, who, action, got in self.steps:
            if action == "reads" and who.startswith("visitor"):
                for answered_s, row, current in got:
                    out.append((answered_s, _field(row, self.settings["field"]), _field(row, self.settings["field"])
                                != current))
        return out

    def summary(self) -> dict:
        """How many later reads saw the old value, and until when."""
        probes = self._probe_answers()
        stale = [t for t, _, is_stale in probes if is_stale]
        return {"reads": len(probes), "stale": len(stale), "last_stale_s": max(stale, default=math.nan),
                "unanswered": sum(1 for _, who, action, got in self.steps if action == "reads" and not got)}

    def timeline(self):
        """The run as a table: each moment, who did what, the cache and database calls it made, and what they saw."""
        calls: dict = {}
        cache, db = self.settings["cache_name"], self.settings["db_name"]
        for e in self.trace.events[self.settings.get("setup_events", 0):]:
            if e.component in (cache, db):
                calls.setdefault(round(e.time_s, 9), []).append(_describe_call(e, cache))
        rows = {}
        for t, who, action, got in self.steps:
            answers = [(answered_s, row, current) for answered_s, row, current in got]
            saw = "; ".join(f"{_show(_field(row, self.settings['field']))}"
                            + (" (stale)" if _field(row, self.settings["field"]) != current else "")
                            + ("" if abs(answered_s - t) < 1e-9 else f" at {answered_s:.2f} s")
                            for answered_s, row, current in answers) or ("" if action != "reads" else "no answer")
            made = ", ".join(calls.pop(round(t, 9), []))
            rows[f"{t:6.2f} s  {who}"] = [action, made, saw]
        for t in sorted(calls):   # calls at moments nobody started: queries landing, timers firing
            rows[f"{t:6.2f} s  (a query returns)" if any("set" in c or "lease" in c for c in calls[t])
                 else f"{t:6.2f} s  (a timer)"] = ["", ", ".join(calls[t]), ""]
        ordered = dict(sorted(rows.items(), key=lambda kv: float(kv[0].split(" s")[0])))
        return Table(ordered, columns=["does", "cache and database calls", "sees"], align="left")   # text, not numbers


def _field(row, name):
    return row.get(name) if isinstance(row, dict) else row


def _show(value) -> str:
    return repr(value) if isinstance(value, str) else str(value)


def _describe_call(e, cache_name) -> str:
    f = e.fields
    if e.component == cache_name:
        if e.event == "hit":
            return "cache hit"
        if e.event == "miss":
            return "cache miss (expired)" if f.get("expired") else "cache miss"
        if e.event == "set":
            kind = "versioned set" if f.get("version") is not None else "set"
            return f"cache {kind}" + ("" if f.get("accepted", True) else " refused")
        if e.event == "delete":
            return "cache delete" + (" (tombstone)" if f.get("version") is not None else "")
        if e.event == "lease":
            return "lease granted" if f.get("granted") else "no lease: wait"
        return f"cache {e.event}"
    if e.event == "read":
        return "database query"
    if e.event == "write":
        return "database write"
    return f"database {e.event}"


def _times(name: str, values) -> tuple:
    """`values` as a tuple of moments on the virtual clock (numbers >= 0), else an error naming `name`."""
    values = validate.items(name, values, numbers.Real, "times in seconds (numbers >= 0)")
    for t in values:
        validate.number(name, t, lo=0)
    return values


@made_when_read(RaceRun)
def stale_set_race(app=None, *, ttl_s: float = 60.0, query_s: float = 0.2, reads=(1.0,), write_at: float = 1.1,
                   other_writes=(), probes=(2.0, 10.0, 30.0, 61.0, 62.0), seed: int = 0, key: int = 42) -> RaceRun:
    """The cache-aside race, scripted on the virtual clock, through app servers built from `app` (lesson 02).

    Ana's profile (`key`) says "old bio". A visitor on server 1 reads it at each time in
    `reads`; each miss queries the database, which takes `query_s`. At `write_at` Ana,
    on server 2, saves "new bio" (`update`). At each time in `other_writes` someone saves
    another profile. Later visitors on server 3 read her profile at `probes`. With
    `CacheAside` (the default) the first visitor's query returns after Ana's update and
    puts the old bio back in the cache, where it stays for `ttl_s`.
    """
    make = _app_factory(app)
    validate.number("ttl_s", ttl_s, lo=0, lo_open=True)
    validate.number("query_s", query_s, lo=0, lo_open=True, hi=10)
    reads, other_writes, probes = _times("reads", reads), _times("other_writes", other_writes), _times("probes", probes)
    validate.number("write_at", write_at, lo=0)
    validate.number("key", key, integer=True)   # its neighbours key + 1.. are the other profiles
    end_s = float(max([*probes, *reads, write_at, *other_writes]) + max(1.0, 5 * query_s))
    arguments_checked()
    sim = Sim(seed)
    cache = RedisCache(sim, "cache")
    db = SlowDatabase(sim, "db", query_s=query_s, table="profiles")
    run = RaceRun(sim, end_s, dict(ttl_s=ttl_s, query_s=query_s, key=key, field="bio", db_name=db.name,
                            cache_name=cache.name, app=getattr(make, "__name__", type(make).__name__)), db=db)
    current = {"bio": "old bio"}
    try:
        db.write(key, bio="old bio")
        for other in range(1, 4):
            db.write(key + other, bio="someone else")
        run.settings["setup_events"] = len(sim.trace)
        reader, writer, visitors = (make(cache, db, sim, ttl_s=ttl_s) for _ in range(3))

        def read(server, who):
            got = []
            run.steps.append((sim.now, who, "reads", got))
            then = current["bio"]   # a read that starts after a save must see it
            server.get(key, lambda row=None: got.append((sim.now, row, then)))

        def save():
            run.steps.append((sim.now, "Ana (server 2)", "saves 'new bio'", []))
            writer.update(key, bio="new bio")
            current["bio"] = "new bio"

        def save_other(n):
            run.steps.append((sim.now, "Bo (server 2)", "saves his own profile", []))
            writer.update(key + 1, bio=f"edit {n}")

        for i, t in enumerate(reads):
            sim.at(t, read, reader, f"visitor {i + 1} (server 1)")
        sim.at(write_at, save)
        for n, t in enumerate(other_writes):
            sim.at(t, save_other, n)
        for t in probes:
            sim.at(t, read, visitors, "visitor (server 3)")
        sim.run(until=end_s)
    finally:
        cache.flush()
    run.steps.sort(key=lambda s: s[0])
    return run
