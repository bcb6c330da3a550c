"""Exercises of lesson 01, read replicas: scenarios and the messages each mistake earns.

Every scenario builds its own `ReplicaSet` on a fresh seeded `Sim`, hands it to the
learner's router, and judges the router only by what the replica set's trace shows:
which node served each read, and what that node had applied.
"""
from __future__ import annotations

import itertools
import math

from labkit.checking import Exercise, Fail, clock_hint, construct, counted, number, refuse_reference, register
from labkit.clock import Sim
from labkit.db import Database, LagSpike, Replica, ReplicaDown, ReplicaSet, UniformLag
from labkit.checking.expose import expose
from labkit.lessons.replicas.model import ReplicaRouter

# What a learner's router may use of the grader's objects. Never `execute`/`query` (raw SQL runs
# in the grader: SQLite's ATTACH and VACUUM INTO write files), `db` (the connection),
# `down`/`up` (the scenario's faults) or `sim`.
expose(ReplicaSet, "primary", "replicas", "nodes", "position", "node", "write", "read", "caught_up")
expose(Database, "name", "table", "position", "primary", "read", "write", "lag_s", "lag_positions",
       "wait_for_position")
expose(Replica, "is_up", "lag")


class _Bench:
    """A replica set on a fresh Sim, one learner router in front of it, and what each call did."""

    def __init__(self, Router, *, clock: bool = False, replicas: int = 3, lag=0.1, spikes=(), seed: int = 0,
                 **settings):
        refuse_reference(Router, ReplicaRouter, "lk.replicas.ReplicaRouter", "router")
        self.sim = Sim(seed)
        self.rs = ReplicaSet(self.sim, replicas=replicas, lag=lag, spikes=spikes)
        # The bench keeps its own lists: a router that edits replica_set.replicas in place must
        # not change what the checks count.
        self.nodes = list(self.rs.nodes)
        self.replicas = self.nodes[1:]
        args = (self.rs, self.sim) if clock else (self.rs,)
        shown = ", ".join(["replica_set", *(["clock"] if clock else []), *(f"{k}={v!r}" for k, v in settings.items())])
        self.router = construct(Router, *args, shown=shown, **settings)
        self.events = self.sim.trace.events

    def node(self, name: str):
        return next(n for n in self.nodes if n.name == name)

    def counts(self) -> dict:
        return {n.name: 0 for n in self.nodes}

    def write(self, key, **fields) -> int:
        """One write through the router; checks it committed once on the primary; returns its position."""
        before = self.rs.position
        try:
            returned = self.router.write(key, **fields)
        except RuntimeError as exc:
            if "read-only replica" in str(exc):
                raise Fail(f"Your router sent a write to a replica ({exc}). Every write goes to the primary: "
                           "replicas only replay the primary's log.") from None
            raise
        refused = self.sim.trace.components("write_refused")
        if refused:
            raise Fail(f"Your router also sent a write to {refused[0]}, which refused it (replicas are "
                       "read-only), and carried on. Every write goes to the primary, once: replicas only replay "
                       "the primary's log, and that is how they get the write.")
        if self.rs.position != before + 1:
            raise Fail(f"After one call to write(), the primary had committed {self.rs.position - before} "
                       "writes. Send each write to the primary exactly once.")
        return returned

    def read(self, key, **kwargs):
        """One read through the router: (the node's read event, the row the router returned)."""
        before = len(self.events)
        try:
            row = self.router.read(key, **kwargs)
        except Exception as exc:  # noqa: BLE001 - matched by name: in the grader it crossed a process boundary
            if not _is_replica_down(exc):
                raise
            if not any(r.is_up for r in self.replicas):
                raise Fail(f"With every replica down, a read raised ReplicaDown out of your router ({exc}). "
                           "When no replica can answer, read from the primary: the site keeps working "
                           "while the replicas are out.") from None
            raise Fail(f"A read raised ReplicaDown out of your router ({exc}). Catch lk.ReplicaDown (or skip "
                       "replicas whose is_up is False) and try another replica: a replica going down must "
                       "not fail the user's request.") from None
        served = [e for e in self.events[before:] if e.event == "read"]
        if not served:
            raise Fail(f"read({key!r}) returned {row!r} without reading any node. Read the row from the "
                       "node you chose: node.read(key).")
        return served[-1], row

    def run_until(self, time_s: float) -> None:
        self.sim.run(until=time_s)


def _is_replica_down(exc) -> bool:
    return isinstance(exc, ReplicaDown) or getattr(exc, "type_name", type(exc).__name__) == "ReplicaDown"


def _expect_row(row, key, bio, what: str) -> None:
    if row is None or not hasattr(row, "get"):
        raise Fail(f"read({key!r}) returned {row!r} for a profile that exists on {what}. Return the row "
                   "the node gives you (a dict).")
    if row.get("bio") != bio:
        raise Fail(f"read({key!r}) returned {row!r}, but the node you read had bio={bio!r}. Return the row "
                   "the node gives you.")


def _spread(counts: dict) -> str:
    return ", ".join(f"{name} {n}" for name, n in counts.items())


# --------------------------------------------------------------------------------------------
# 01.1 the read/write splitter

splitter = register(Exercise(
    "01.1", "a read/write splitter", answer="Router",
    hints=(
        "Keep a counter of whose turn it is. Each ordinary read takes replicas[turn % len(replicas)] "
        "and moves the counter on, so consecutive reads visit every replica in turn.",
        "Skip a replica whose is_up is False (a read sent to it raises lk.ReplicaDown, which you may catch "
        "instead), moving the counter on past it too, so the replicas that are up keep taking turns evenly "
        "(or rotate over the list of replicas that are up); only when none is up, read from the primary.",
        "write() and strong reads need no choice at all: self.primary.write(key, **fields) returns the "
        "log position; return it.",
    )))


def _bench1(Router, **kwargs):
    bench = _Bench(Router, **kwargs)
    for key in range(1, 11):
        bench.rs.write(key, bio=f"profile {key}")
    bench.run_until(1.0)   # every replica has every profile
    return bench


@splitter.scenario("writes go to the primary and return its log position")
def _writes(Router, ctx):
    bench = _bench1(Router)
    for i in range(3):
        returned = bench.write(1, bio=f"edit {i}")
        if returned is None:
            raise Fail("write() returned None. Return what the primary's write returns: the log position "
                       "of the commit. Exercise 3 uses it as a session token.")
        if returned != bench.rs.position:
            raise Fail(f"write() returned {returned!r}, but the primary committed that write at log position "
                       f"{bench.rs.position}. Return the primary's write's return value.")
    return "each write committed once on the primary; write() returned its position"


@splitter.scenario("strong reads go to the primary")
def _strong(Router, ctx):
    bench = _bench1(Router)
    bench.write(3, bio="just saved")
    served = []
    for _ in range(9):
        event, row = bench.read(3, strong=True)
        served.append(event.component)
        if event.component == "primary":
            _expect_row(row, 3, "just saved", "the primary")
    elsewhere = [n for n in served if n != "primary"]
    if elsewhere:
        raise Fail(f"{len(elsewhere)} of 9 reads with strong=True were served by replicas "
                   f"({', '.join(sorted(set(elsewhere)))}), just after a write they had not applied yet. "
                   "A strong read must see every committed write: only the primary is sure to have them.")
    return "9 of 9 strong reads served by the primary"


@splitter.scenario("ordinary reads are spread evenly over the replicas")
def _balanced(Router, ctx):
    notes = []
    for replicas in (3, 4):
        notes.append(_balanced_over(Router, replicas))
        _first_reads(Router, replicas)
    return "; ".join(notes)


def _first_reads(Router, replicas: int) -> None:
    """Nine profiles read once each, on a fresh router: taking turns shares them as 600 reads are shared."""
    bench = _bench1(Router, replicas=replicas)
    counts = bench.counts()
    for key in range(2, 11):
        event, row = bench.read(key)
        _expect_row(row, key, f"profile {key}", "every node")
        counts[event.component] += 1
    if max(counts[r.name] for r in bench.replicas) > -(-9 // replicas):
        raise Fail(f"On a new router with {replicas} replicas, 9 reads of 9 different profiles, each read once, "
                   f"went: {_spread(counts)}. Is the turn kept per profile? Then every profile's first read goes to "
                   "the same replica. The router takes turns over all its reads, whatever the key: one turn, moved "
                   "on by one per read.")


def _balanced_over(Router, replicas: int) -> str:
    bench = _bench1(Router, replicas=replicas)
    counts = bench.counts()
    # Half the reads are for one popular profile, as real traffic is skewed.
    keys = [1 if i % 2 else 2 + (i // 2) % 9 for i in range(600)]
    served = []
    for key in keys:
        event, row = bench.read(key)
        _expect_row(row, key, f"profile {key}", "every node")
        counts[event.component] += 1
        served.append(event.component)
    if counts["primary"]:
        raise Fail(f"The primary served {counts['primary']} of 600 ordinary reads ({_spread(counts)}). Keep it "
                   "for writes and strong reads: the point of replicas is to take the reads off it.")
    replicas = [counts[r.name] for r in bench.replicas]
    if max(replicas) == 600:
        busy = max(counts, key=counts.get)
        raise Fail(f"All 600 ordinary reads went to {busy}; the other replicas served none. Pick a replica "
                   "per read, not once per router (that is how a DNS reader endpoint behaves when every "
                   "query reuses one connection): rotate over all the replicas.")
    idle = [r.name for r in bench.replicas if counts[r.name] == 0]
    if idle:
        raise Fail(f"With {len(bench.replicas)} replicas, 600 ordinary reads went: {_spread(counts)}. "
                   f"{' and '.join(idle)} served none: your rotation skips some replicas. Move the turn on by one "
                   "per read, and take it modulo the number of replicas.")
    if max(replicas) > 1.3 * min(replicas):
        raise Fail(f"600 reads, half of them of one popular profile, were spread unevenly: {_spread(counts)}. "
                   "Round robin gives each replica the same share whatever the keys; choosing the replica "
                   "from the key puts every read of a popular profile on the same replica.")
    burst = _uneven_burst(served, [r.name for r in bench.replicas])
    if burst:
        raise Fail(burst)
    return f"600 reads over {len(bench.replicas)} replicas: {_spread(counts)}"


def _uneven_burst(served: list, names: list) -> str:
    """Taking turns: with every replica up, any 2 x len(names) reads in a row include each replica.

    Two rounds, not one, so that a rotation whose order changes from round to round passes."""
    n = 2 * len(names)
    for start in range(len(served) - n + 1):
        window = served[start:start + n]
        idle = [name for name in names if name not in window]
        if idle:
            busy = max(names, key=window.count)
            return (f"With all {len(names)} replicas up, {n} reads in a row (the {_nth(start + 1)} to the "
                    f"{_nth(start + n)} of 600) went: {_spread({name: window.count(name) for name in names})}: "
                    f"{' and '.join(idle)} sat idle while {busy} served {window.count(busy)}. Overall the shares "
                    f"were close ({_spread({name: served.count(name) for name in names})}), but taking turns means "
                    f"every replica serves one read in every {len(names)} in a row. A random pick is even only on "
                    "average: bursts pile up on one replica while another idles. Keep a turn and move it on by one.")
    return ""


def _even_while_down(counts: dict, down: str) -> None:
    """A Fail if, while `down` was down, one replica that was up served far more reads than another."""
    up = {name: n for name, n in counts.items() if name not in ("primary", down)}
    busiest, idlest = max(up, key=up.get), min(up, key=up.get)
    if up[busiest] > 1.5 * up[idlest]:
        raise Fail(f"While {down} was down, {busiest} served {up[busiest]} of 150 reads and {idlest} "
                   f"{up[idlest]} ({_spread(counts)}): {down}'s turns all went to the replica after it, which "
                   "then carried twice the load of the others. When you skip a replica, move the turn on past "
                   "it too, so that the replicas that are up take turns evenly.")


def _nth(k: int) -> str:
    return f"{k}{'th' if 10 <= k % 100 <= 20 else {1: 'st', 2: 'nd', 3: 'rd'}.get(k % 10, 'th')}"


def _tally(bench, n: int = 150) -> dict:
    """Where `n` reads of keys 1 to 10 went, per node."""
    counts = bench.counts()
    for i in range(n):
        event, _ = bench.read(1 + i % 10)
        counts[event.component] += 1
    return counts


@splitter.scenario("a replica that is down is skipped, and used again when it is back")
def _down(Router, ctx):
    bench = _bench1(Router)
    last = bench.replicas[-1].name
    # replica2 down, back up, then the last replica down: its turn passes to the first, round the end.
    bench.node("replica2").down()
    counts = _tally(bench)
    if counts["primary"]:
        stuck = (" Nearly every read went there, not one in three: the turn stayed on replica2 while it was "
                 "down. Move the turn on past a replica that is down too." if counts["primary"] > 140 else "")
        raise Fail(f"While replica2 was down, the primary served {counts['primary']} of 150 reads "
                   f"({_spread(counts)}), although replica1 and replica3 were up. Give a dead replica's turn "
                   "to the next replica; the primary is the last resort. It is sized for the writes, not "
                   f"for a third of the reads.{stuck}")
    _even_while_down(counts, "replica2")
    bench.node("replica2").up()
    bench.run_until(2.0)
    after = _tally(bench)
    if after["replica2"] == 0:
        raise Fail(f"replica2 came back up, but your router sent it none of the next 150 reads "
                   f"({_spread(after)}). Skip a replica while it is down, not forever.")
    bench.node(last).down()
    end = _tally(bench)
    if end["primary"]:
        raise Fail(f"While {last}, the last replica in the list, was down, the primary served {end['primary']} of "
                   f"150 reads ({_spread(end)}), although replica1 and replica2 were up. (While replica2 was down, "
                   f"none did: skipping works until the end of the list.) After the last replica comes the first "
                   f"again: when {last}'s turn is skipped, go round to replica1 (take the turn modulo the number of "
                   "replicas) before you fall back to the primary.")
    _even_while_down(end, last)
    bench.node("replica1").down()
    two = _tally(bench)
    if two["primary"]:
        raise Fail(f"While replica1 and {last} were both down, the primary served {two['primary']} of 150 reads "
                   f"({_spread(two)}), although replica2 was up. A dead replica's turn passes on until a replica "
                   "that is up takes it, however many are down in a row; the primary only when none is up.")
    return (f"replica2 down: {_spread(counts)}; back up: {_spread(after)}; {last} down: {_spread(end)}; "
            f"two down: {_spread(two)}")


@splitter.scenario("with every replica down, reads go to the primary")
def _all_down(Router, ctx):
    bench = _bench1(Router)
    for r in bench.replicas:
        r.down()
    for key in range(1, 11):
        event, row = bench.read(key)
        if event.component != "primary":   # pragma: no cover - a down replica cannot serve a read
            raise Fail(f"With every replica down, a read was served by {event.component}.")
        _expect_row(row, key, f"profile {key}", "the primary")
    return "10 reads served by the primary while every replica was down"


# --------------------------------------------------------------------------------------------
# 01.2 lag-aware routing

MAX_LAG_S = 1.0

lag_aware = register(Exercise(
    "01.2", "skip lagging replicas, and say so", answer="LagAwareRouter",
    hints=(
        "Before each ordinary read, make the list of replicas that qualify: is_up, and lag_s <= max_lag_s. "
        "lag_s is in seconds; lag_positions counts log entries.",
        "Rotate over that list (list[turn % len(list)]), not over all replicas: skipping to the next one "
        "gives a lagging replica's reads to its neighbour only, which then takes twice its share.",
        "If the list is empty, read from the primary and add one to self.degraded_reads. Strong reads go to "
        "the primary by design: don't count them.",
    )))


class _LagRun:
    """Reads and writes at steady rates through a lag-aware router, logging each read's context."""

    def __init__(self, Router, spikes, seed, down=(), max_lag_s=MAX_LAG_S):
        # 20 writes/s with 0.2 s of lag keeps every replica a few log positions behind at all
        # times, so a router comparing positions with max_lag_s stands out from one reading seconds.
        self.limit = max_lag_s
        self.bench = _Bench(Router, lag=0.2, spikes=spikes, seed=seed, max_lag_s=max_lag_s)
        self.reads = []    # (time, node, {replica: lag_s or None if down}, strong, degraded_delta)
        self.positions = []   # {replica: lag_positions} at each of those reads
        sim, rs = self.bench.sim, self.bench.rs
        for key in range(1, 21):
            rs.write(key, bio="v0")
        sim.run(until=1.0)
        for i in range(int(17 / 0.05)):
            sim.at(1.0 + i * 0.05, self._write, 1 + i % 20, f"v{i}")
        for i in range(int(17 / 0.04)):
            sim.at(1.01 + i * 0.04, self._read, 1 + i % 20, i % 13 == 0)
        for name, start, end in down:
            sim.at(start, self.bench.node(name).down)
            sim.at(end, self.bench.node(name).up)
        self.degraded_value = 0
        sim.run(until=18.5)

    def _write(self, key, bio):
        self.bench.rs.write(key, bio=bio)   # background writers use the primary directly

    def degraded(self):
        """The router's degraded_reads now, or None if it has no such number."""
        value = getattr(self.bench.router, "degraded_reads", None)
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            self.degraded_value = value
            return None
        return value

    def _read(self, key, strong):
        lags = {r.name: (r.lag_s if r.is_up else None) for r in self.bench.replicas}
        positions = {r.name: r.lag_positions for r in self.bench.replicas}
        before = self.degraded()
        event, _ = self.bench.read(key, strong=True) if strong else self.bench.read(key)
        after = self.degraded()
        delta = None if before is None or after is None else after - before
        self.reads.append((self.bench.sim.now, event.component, lags, strong, delta))
        self.positions.append(positions)

    def fresh(self, lags):
        """The replicas that qualified for a read: up, and at most max_lag_s behind."""
        return [n for n, lag in lags.items() if lag is not None and lag <= self.limit]

    def limit_seen(self) -> tuple:
        """The limits the router's choices agree with: (lo, hi), any limit in [lo, hi) would explain them.

        lo is the furthest behind a replica was when it served an ordinary read; hi, the least
        behind the closest replica that was up was when an ordinary read went to the primary."""
        ordinary = [r for r in self.reads if not r[3]]
        lo = max((r[2][r[1]] for r in ordinary if r[1] != "primary"), default=0.0)
        hi = min((min(v for v in r[2].values() if v is not None) for r in ordinary
                  if r[1] == "primary" and any(v is not None for v in r[2].values())), default=math.inf)
        return lo, hi

    def positions_rule(self) -> bool:
        """True if every ordinary read went where lag_positions <= max_lag_s would have sent it."""
        for r, positions in zip(self.reads, self.positions):
            if r[3]:
                continue
            if r[1] == "primary":
                if any(r[2][n] is not None and positions[n] <= self.limit for n in positions):
                    return False
            elif positions[r[1]] > self.limit:
                return False
        return True


def _rule_of_its_own(runs) -> str:
    """A router that skips replicas by another rule than lag_s <= max_lag_s, told from what it did in `runs`.

    Two such rules are named: lag_positions compared with max_lag_s, and a limit of the
    router's own (the starter's default of 1 s written into read()): one number that explains
    what it did whatever max_lag_s it was built with, and is not the max_lag_s of a run."""
    seen = [(run.limit, *run.limit_seen()) for run in runs]
    wrong = [s for s in seen if not s[1] <= s[0] < s[2]]
    if not wrong:
        return ""
    if all(run.positions_rule() for run in runs):
        limit = wrong[0][0]
        return (f"Your router was built with max_lag_s={limit:g}, and it sent a read to a replica exactly when that "
                f"replica was at most {counted(limit, 'log position')} behind: lag_positions counts log entries, not seconds. "
                "Compare lag_s, which is in seconds, with max_lag_s.")
    lo, hi = max(s[1] for s in seen), min(s[2] for s in seen)
    if not lo < hi or math.isinf(hi) or lo == 0:
        return ""
    limit, run_lo, run_hi = wrong[0]
    as_if = "1 s (the default in the starter code)" if lo <= 1.0 < hi else f"about {(lo + hi) / 2:.1f} s"
    if run_hi <= limit:
        what = (f"it sent ordinary reads to the primary while a replica was only {run_hi:.2f} s behind, "
                "within the bound")
    else:
        what = f"a replica {run_lo:.2f} s behind, over the bound, still served reads"
    every = ""
    if len(seen) > 1:
        limits = [f"{s[0]:g}" for s in seen]
        every = (f" Built with max_lag_s of {', '.join(limits[:-1])} and {limits[-1]} s, it skipped replicas at "
                 "the same lag every time.")
    return (f"Your router was built with max_lag_s={limit:g}, but it behaved as if the limit were {as_if}: {what}."
            f"{every} Keep the max_lag_s your router is given (self.max_lag_s) and compare lag_s with it, not with "
            "a number of your own.")


# Each run's max_lag_s, with lag spikes that put replicas on both sides of it and of 1 s (the
# starter's default), so that a router with a limit of its own stands out: at 3 s it skips
# replicas it should use, at 0.3 s it uses replicas it should skip.
_SKIP_RUNS = (
    # replica2 lags from about t=6 s to t=11 s; replica3, next to it, from about t=7.5 s to t=9.5 s as well.
    dict(max_lag_s=1.0, spikes=[LagSpike(5, 8, extra_s=3.0, replica="replica2"),
                                LagSpike(6.5, 7, extra_s=2.5, replica="replica3")], seed=1,
         down=[("replica3", 14.0, 15.0)]),
    # replica2 0.8 s behind from about t=5.8 s to t=8.6 s; every replica up to 1.7 s behind from t=11.3 s to 13.7 s.
    dict(max_lag_s=0.3, spikes=[LagSpike(5, 8, extra_s=0.6, replica="replica2"), LagSpike(11, 12, extra_s=1.5)],
         seed=4),
    # Every replica 1 to 2.2 s behind from t=6 s to t=9.2 s; replica3 over 3 s behind from t=14 s to t=16.7 s.
    dict(max_lag_s=3.0, spikes=[LagSpike(5, 7, extra_s=2.0), LagSpike(11, 12, extra_s=4.5, replica="replica3")],
         seed=5),
)


@lag_aware.scenario("skips replicas more than max_lag_s behind (built with max_lag_s of 1, 0.3 and 3 s)")
def _skips(Router, ctx):
    # The boundary is probed first (a fresh router, before any run) and judged after the rules
    # of the router's own, which explain a miss at the boundary better than "<" does.
    at_boundary = ""
    for limit in (MAX_LAG_S, 0.75, 2.5):
        at_boundary = _boundary(Router, limit)
        if at_boundary:
            break
    runs = [_LagRun(Router, **kwargs) for kwargs in _SKIP_RUNS]
    for run in runs:
        strong_elsewhere = [r for r in run.reads if r[3] and r[1] != "primary"]
        if strong_elsewhere:
            raise Fail(f"{counted(len(strong_elsewhere), 'read')} with strong=True were served by replicas: strong "
                       "reads still go to the primary.")
    own = _rule_of_its_own(runs)
    if own:
        raise Fail(own)
    if at_boundary.startswith("Every replica was exactly"):
        raise Fail(at_boundary)
    for run in runs:
        _skips_in(run)
    return "no read on a replica more than max_lag_s behind, at max_lag_s of 1, 0.3 and 3 s; lagging replicas used again after catching up"


def _skips_in(run) -> None:
    limit = run.limit
    ordinary = [r for r in run.reads if not r[3]]
    behind = [r for r in ordinary if r[1] != "primary" and r[2][r[1]] > limit]
    if behind:
        worst = max(r[2][r[1]] for r in behind)
        names = sorted({r[1] for r in behind})
        nudge = "Check each replica's lag_s before you send it a read."
        pairs = {tuple(n for n, lag in r[2].items() if lag is not None and lag > limit) for r in behind}
        if not any(run.fresh(r[2]) for r in behind):
            # Only while no replica qualified: the fallback served a replica instead of the primary.
            least = all(r[2][r[1]] == min(v for v in r[2].values() if v is not None) for r in behind)
            which = "the least-behind replica" if least else "a lagging replica"
            nudge = ("Each of those reads came while no replica qualified (every one that was up was more than "
                     f"max_lag_s behind), and your router served it from {which} anyway. When no replica qualifies, the read goes to the primary, counted in degraded_reads. "
                     "(Serving the least-behind replicas is Vitess's design; this exercise uses the primary.)")
        elif all(len(pair) >= 2 for pair in pairs):
            # Only while two replicas side by side lagged: the next one in line was taken unchecked.
            both = " and ".join(sorted({n for pair in pairs for n in pair}))
            two = [r[0] for r in ordinary if sum(lag is not None and lag > limit for lag in r[2].values()) >= 2]
            nudge = (f"It happened only while {both} lagged at the same time (t={min(two):.1f} s to {max(two):.1f} s): "
                     "while one replica "
                     "lagged, your router skipped it. Moving past a lagging replica to the next one in line is not "
                     "enough when that one lags too: choose among the replicas that qualify, checking lag_s "
                     "for the one you pick.")
        raise Fail(f"With max_lag_s={limit:g}, {', '.join(names)} served {counted(len(behind), 'read')} while more "
                   f"than max_lag_s={limit:g} s behind (up to {worst:.1f} s): those users saw data that old. {nudge}")
    needless = [r for r in ordinary if r[1] == "primary" and run.fresh(r[2])]
    if needless:
        # Reads sent to the primary although every replica that was up was within the bound.
        calm = [r for r in needless if len(run.fresh(r[2])) == len(r[2])]
        nudge = " Skip only the replicas that are too far behind (or down)."
        skipping = [r for r in ordinary if run.fresh(r[2]) and len(run.fresh(r[2])) < len(r[2])]
        if not calm and len(needless) >= 0.6 * len(skipping):
            nudge = (" Each time, another replica was down or too far behind, and your router sent all those reads "
                     "to the primary. Skip only the replicas that are too far behind (or down): the others still "
                     "qualify.")
        elif not calm:
            # Only while some replica was down or behind, and not for every such read: its turn went to the primary.
            nudge = (" Each time, another replica was down or too far behind, and the read whose turn it was went to "
                     "the primary. A skipped replica's turn goes to a replica that qualifies; the primary only when "
                     "none does.")
        if calm:
            t, worst = calm[0][0], max(v for v in calm[0][2].values() if v is not None)
            nudge = (f" At t={t:.1f} s, for example, every replica was within the bound (the furthest "
                     f"{worst:.2f} s behind). Compare lag_s, which is in seconds, with max_lag_s; lag_positions "
                     "counts log entries, not seconds.")
        raise Fail(f"The primary served {len(needless)} of {len(ordinary)} ordinary reads while at least one "
                   f"replica was up and within max_lag_s={limit:g} s.{nudge}")
    for name in sorted({n for r in ordinary for n, lag in r[2].items() if lag is not None and lag > limit}):
        # A replica that lagged past the bound and then caught up: used before, and again a second after.
        over = [r[0] for r in ordinary if r[2][name] is not None and r[2][name] > limit]
        used_before = any(r[1] == name for r in ordinary if r[0] < over[0])
        late = [r for r in ordinary if r[0] > over[-1] + 1.0 and r[1] == name]
        if used_before and not late:   # (a router that never uses it hears about it from the next check)
            raise Fail(f"With max_lag_s={limit:g}, {name} caught up again at about t={over[-1]:.0f} s, but your "
                       f"router never sent it another read. Skip a replica while it is behind, not forever: check "
                       "lag_s at every read.")


@lag_aware.scenario("the replicas that qualify share the reads evenly (max_lag_s=2.5 s)")
def _shares(Router, ctx):
    # replica2 is more than 2.5 s behind from about t=7.5 s to t=11.2 s.
    run = _LagRun(Router, spikes=[LagSpike(5, 8, extra_s=3.0, replica="replica2")], seed=2, max_lag_s=2.5)
    own = _rule_of_its_own([run])
    if own:
        raise Fail(own)
    for label, keep in (("all three replicas were within the bound",
                         lambda r: len(run.fresh(r[2])) == 3),
                        ("replica2 was too far behind",
                         lambda r: run.fresh(r[2]) == ["replica1", "replica3"])):
        chosen = [r[1] for r in run.reads if not r[3] and keep(r)]
        names = sorted({n for r in run.reads if not r[3] and keep(r) for n in run.fresh(r[2])})
        counts = {n: chosen.count(n) for n in names}
        shown = {n: chosen.count(n) for n in ["primary", *names] if n != "primary" or chosen.count(n)}
        if len(chosen) < 50:   # pragma: no cover - the schedule guarantees hundreds
            continue
        if min(counts.values()) == 0 or max(counts.values()) > 1.5 * min(counts.values()):
            raise Fail(f"While {label}, {len(chosen)} ordinary reads went: {_spread(shown)}. The replicas "
                       f"that qualify ({', '.join(names)}) should share them evenly: rotate over them. Always "
                       "taking the first good one, or handing a skipped replica's turn to its neighbour, "
                       "overloads one of them.")
    return "reads shared evenly, with and without replica2"


@lag_aware.scenario("when every replica lags or is down: the primary, counted in degraded_reads")
def _degraded(Router, ctx):
    # Every replica lags from about t=6 s to t=11 s, and every replica is down from t=13 s to t=14 s.
    run = _LagRun(Router, spikes=[LagSpike(5, 8, extra_s=3.0)], seed=3,
                  down=[(f"replica{i}", 13.0, 14.0) for i in (1, 2, 3)])
    own = _rule_of_its_own([run])
    if own:
        raise Fail(own)
    ordinary = [r for r in run.reads if not r[3]]
    none_fresh = [r for r in ordinary if not run.fresh(r[2])]
    healthy = [r for r in ordinary if run.fresh(r[2])]
    if not none_fresh:   # pragma: no cover - the spike guarantees seconds of it
        raise Fail("internal: the scenario never had every replica lagging")
    span = (min(r[0] for r in none_fresh), max(r[0] for r in none_fresh))
    served = {}
    for r in none_fresh:
        served[r[1]] = served.get(r[1], 0) + 1
    on_replicas = sum(n for name, n in served.items() if name != "primary")
    if on_replicas:
        raise Fail(f"From t={span[0]:.0f} s to t={span[1]:.0f} s every replica was more than {MAX_LAG_S:g} s "
                   f"behind, and your router still sent {on_replicas} reads to them. In this exercise those "
                   "reads go to the primary (and are counted).")
    if any(r[4] is None for r in run.reads):
        value = run.degraded_value
        raise Fail("Your router has no degraded_reads number" + ("" if value is None else f" (it was {value!r})")
                   + ". Set self.degraded_reads = 0 in __init__ and add one for every ordinary read that no "
                   "replica within max_lag_s could serve.")
    counted = sum(r[4] for r in none_fresh)
    if counted == 0:
        raise Fail(f"From t={span[0]:.0f} s to t={span[1]:.0f} s every replica was more than {MAX_LAG_S:g} s "
                   f"behind, and your router quietly sent all {len(none_fresh)} reads to the primary: "
                   "degraded_reads stayed at 0. That is how a primary gets overloaded with nobody told. "
                   "Add one to self.degraded_reads for each such read, so a dashboard can alert on it.")
    all_down = [r for r in none_fresh if all(lag is None for lag in r[2].values())]
    if all_down and not sum(r[4] for r in all_down):
        raise Fail(f"From t={all_down[0][0]:.0f} s to t={all_down[-1][0]:.0f} s every replica was down, and your router "
                   f"sent all {len(all_down)} reads to the primary, but degraded_reads did not move for them (it did "
                   "while the replicas lagged). A replica that is down does not qualify either: those reads are "
                   "degraded too, and the count is how an outage of every replica shows up on a dashboard.")
    if counted != len(none_fresh):
        raise Fail(f"While every replica lagged, {len(none_fresh)} reads went to the primary, but "
                   f"degraded_reads went up by {counted:g}. Count each of them once.")
    extra = sum(r[4] for r in healthy) + sum(r[4] for r in run.reads if r[3])
    if extra:
        raise Fail(f"degraded_reads also went up by {extra:g} for reads a replica within max_lag_s could "
                   "serve, or for strong reads (which go to the primary by design). Count only the reads "
                   "that had to go to the primary because every replica lagged or was down.")
    return f"{len(none_fresh)} reads went to the primary while every replica lagged or was down, each counted"


def _boundary(Router, limit: float) -> str:
    """A replica exactly max_lag_s behind still qualifies (part of the first lag-aware scenario).

    Returns what went wrong at the boundary, a note when the replicas were not used even well
    inside the bound (the rest of the scenario then says why), or "" when all was well."""
    # Replicas limit + 0.5 s behind; one write at t = limit + 1, when they have applied everything
    # before it. Half the limit later they are limit/2 behind, at limit later exactly limit behind
    # (every time is exact in binary). Only the boundary is judged here: other mistakes get the
    # diagnosis of the scenario this is part of.
    bench = _Bench(Router, lag=limit + 0.5, max_lag_s=limit)
    for key in range(1, 4):
        bench.rs.write(key, bio="v0")
    saved_at = limit + 1.0
    bench.run_until(saved_at)
    bench.rs.write(1, bio="v1")
    bench.run_until(saved_at + limit / 2)
    if "primary" in [bench.read(1 + i % 3)[0].component for i in range(3)]:
        return f"with max_lag_s={limit:g}, reads go to the primary even {limit / 2:g} s behind: the rest of the scenario says why"
    bench.run_until(saved_at + limit)
    served = [bench.read(1 + i % 3)[0].component for i in range(6)]
    lags = sorted({r.lag_s for r in bench.replicas})
    if "primary" in served:
        return (f"Every replica was exactly {lags[-1]:g} s behind, max_lag_s={limit:g}, and your router sent "
                f"{served.count('primary')} of 6 ordinary reads to the primary. A replica at most max_lag_s "
                "behind qualifies: lag_s <= max_lag_s, not <.")
    return ""


# --------------------------------------------------------------------------------------------
# 01.3 read-your-writes

ryw = register(Exercise(
    "01.3", "read your own writes", answer="ReadYourWritesRouter",
    hints=(
        "Remember something per user in write(): the time of their last write (sticky window) or the log "
        "position write() got back from the primary (session token).",
        "Token: in read(), a replica may serve the user only if replica.position >= that position; if none "
        "has it yet, use the primary. Other users' reads go through the lag-aware rules as before.",
        "Sticky window: for window seconds after a user's write, send their reads to the primary. It is only "
        "safe if, after the window, no replica further behind than the window can serve them: keep "
        "max_lag_s below the window.",
    )))

USERS = 300
REREADS_S = (0.05, 0.6, 1.5, 2.25, 3.0)


class _SessionRun:
    """Users save their own profile and re-read it; visitors read popular profiles; all through one router."""

    def __init__(self, Router, *, lag, spikes=(), down=None, seed=0, duration_s=20.0, max_lag_s=MAX_LAG_S,
                 visits_per_s=12.0, saves_per_s=4.0):
        self.limit = max_lag_s
        self.bench = _Bench(Router, clock=True, lag=lag, spikes=spikes, seed=seed, max_lag_s=max_lag_s)
        sim, rs, rng = self.bench.sim, self.bench.rs, self.bench.sim.rng
        self.saved = {}       # user -> (bio, position, time) of their last save
        self.earlier = {}     # user -> the position of the save before their last one, or None
        self.own, self.bad, self.by_node = 0, [], self.bench.counts()
        self.own_reads = []   # (seconds since the user's save, served by the primary) of each re-read
        self.seen = set()   # (user, position of their save) once a re-read showed them that save
        self.visitor_by_node = dict(self.by_node)
        self.long_after = [0, 0]   # reads by users whose last save was > 8 s ago: [on replicas, on the primary]
        for user in range(1, USERS + 1):
            rs.write(user, bio="original")
        sim.run(until=2.0)
        users = range(1, USERS + 1)
        popularity = list(itertools.accumulate(1 / k for k in users))   # Zipf: a few popular profiles
        t = 2.0
        while True:
            t += rng.expovariate(visits_per_s)
            if t >= duration_s:
                break
            profile = rng.choices(users, cum_weights=popularity)[0]
            sim.at(t, self._read, profile, rng.randint(1, USERS), None)
        t, n = 2.0, 0
        while True:
            t += rng.expovariate(saves_per_s)
            if t >= duration_s - max(REREADS_S):
                break
            n += 1
            user = rng.randint(1, USERS)
            sim.at(t, self._save, user, f"save {n}")
            # The fixed delays probe the edges; one at random per save tells how long a window lasted.
            for delay in (*REREADS_S, rng.uniform(REREADS_S[0], REREADS_S[-1])):
                sim.at(t + delay, self._read, user, user, delay)
        if down:
            name, start, end = down
            sim.at(start, self.bench.node(name).down)
            sim.at(end, self.bench.node(name).up)
        self.strong_elsewhere = []    # (time, node) of strong reads not served by the primary
        self.lagging_visitors = []    # (time, node, lag_s) of reads by users who never saved, on a lagging replica
        self.primary_visitors = []    # (time, profile saved?) of such reads on the primary while a replica qualified
        self.wrong_returns = []       # (what write() returned, the commit's position)
        for i in range(int((duration_s - 2.5) / 0.5)):
            sim.at(2.5 + 0.5 * i, self._strong_read)
        sim.run(until=duration_s)

    def _save(self, user, bio):
        returned = self.bench.write(user, user=user, bio=bio)
        if returned != self.bench.rs.position and not self.wrong_returns:
            self.wrong_returns.append((returned, self.bench.rs.position))
        earlier = self.saved[user][1] if user in self.saved else None
        self.saved[user] = (bio, self.bench.rs.position, self.bench.sim.now)
        self.earlier[user] = earlier

    def _strong_read(self):
        user = next(reversed(self.saved), None)   # the user who saved last: a token, if the design keeps one
        event, _ = self.bench.read(user or 1, user=user, strong=True)
        if event.component != "primary":
            self.strong_elsewhere.append((self.bench.sim.now, event.component))
        elif user is not None:
            self.seen.add((user, self.saved[user][1]))

    def _read(self, profile, reader, delay):
        lags = {r.name: r.lag_s for r in self.bench.replicas}
        event, row = self.bench.read(profile, user=reader)
        self.by_node[event.component] += 1
        if reader not in self.saved and lags.get(event.component, 0.0) > self.limit:
            self.lagging_visitors.append((self.bench.sim.now, event.component, lags[event.component],
                                          profile in self.saved))
        if reader not in self.saved and event.component == "primary" and any(
                r.is_up and lags[r.name] <= self.limit for r in self.bench.replicas):
            self.primary_visitors.append((self.bench.sim.now, profile in self.saved,
                                          min(lags[r.name] for r in self.bench.replicas if r.is_up)))
        if delay is None:
            self.visitor_by_node[event.component] += 1
        if reader in self.saved and self.bench.sim.now - self.saved[reader][2] > 8.0:
            self.long_after[event.component == "primary"] += 1
        if reader != profile or reader not in self.saved:
            return
        self.own += 1
        bio, position, saved_at = self.saved[reader]
        self.own_reads.append((self.bench.sim.now - saved_at, event.component == "primary"))
        if row is None or not hasattr(row, "get") or row.get("bio") != bio:
            had = [r.name for r in self.bench.replicas if r.is_up and r.position >= position]
            self.bad.append(dict(user=reader, saved_at=saved_at, now=self.bench.sim.now, node=event.component,
                                 node_position=event.fields["position"], position=position, row=row,
                                 lag=lags.get(event.component, 0.0), had=had, earlier=self.earlier[reader],
                                 seen=(reader, position) in self.seen))
        else:
            self.seen.add((reader, position))


_SCENARIOS = (
    ("replicas 0.3 s behind", dict(lag=0.3, seed=11)),
    ("replicas 0.8 s behind, just inside max_lag_s", dict(lag=0.8, seed=12)),
    ("lag varying between 0.05 and 0.9 s", dict(lag=UniformLag(0.05, 0.9), seed=13)),
    ("a 4 s lag spike on every replica", dict(lag=0.2, spikes=[LagSpike(6, 10, extra_s=4.0)], seed=14)),
    ("a 4 s lag spike on replica2 only", dict(lag=0.2, spikes=[LagSpike(6, 10, extra_s=4.0, replica="replica2")],
                                              seed=15)),
    ("replica1 down for 5 s", dict(lag=0.2, down=("replica1", 6.0, 11.0), seed=16)),
    # Other max_lag_s: a sticky window of its own (Rails' 2 s) is too short for 3 s, and visitors'
    # reads follow the router's own bound, not 1 s.
    ("replicas 2.5 s behind, max_lag_s=3", dict(lag=2.5, max_lag_s=3.0, seed=17)),
    ("lag varying between 0.05 and 0.45 s, max_lag_s=0.3", dict(lag=UniformLag(0.05, 0.45), max_lag_s=0.3, seed=18)),
)


def _stale_own_reads(label, run):
    bad = run.bad[0]
    if bad["node_position"] >= bad["position"]:
        raise Fail(f"In the scenario '{label}', user {bad['user']} re-read their profile from {bad['node']}, "
                   f"which had their save, but read() returned {bad['row']!r}. Return the row the node "
                   "gives you.")
    head = (f"In the scenario '{label}', {len(run.bad)} of {run.own} times a user re-read their own profile "
            f"after saving it, they saw the old one. For example, user {bad['user']} saved at "
            f"t={bad['saved_at']:.2f} s and re-read at t={bad['now']:.2f} s from {bad['node']}, which had not "
            f"applied that save yet")
    if bad["node"] == "primary":   # pragma: no cover - the primary has every commit
        return head + "."
    limit = run.limit
    if bad["lag"] > limit:
        return (head + f" (it was {bad['lag']:.1f} s behind, more than max_lag_s={limit:g}). A time-based "
                "sticky window expires whatever the lag: also skip replicas further behind than max_lag_s "
                "(exercise 2), or route by the save's log position.")
    if all(b["node"] != "primary" and b["node_position"] == b["position"] - 1 for b in run.bad):
        return (head + f": it had applied up to position {bad['node_position']}, one short of the save at "
                f"position {bad['position']}. Is the position you remember the one the primary's write "
                "returned, after the commit? A position read before the write says 'caught up' one write "
                "too early.")
    if all(b["earlier"] is not None and b["node_position"] >= b["earlier"] for b in run.bad):
        return (head + f": it had only their save before that one (log position {bad['earlier']}). Each of those "
                "users had saved more than once, and the replica that served them had an earlier save of theirs but "
                "not the last: does your router keep the position of a user's first write? Keep the position of "
                "their latest one.")
    window = _window_seen(run)
    if not (window and window[1] <= limit):
        seen = [b for b in run.bad if b["seen"]]
        if seen and 2 * len(seen) >= len(run.bad):
            b = seen[0]
            return (head + f". Most times, the same user had already read after that save, and seen it "
                    f"(user {b['user']}: saved at t={b['saved_at']:.2f} s, then saw the old profile from "
                    f"{b['node']} at t={b['now']:.2f} s). Your router forgets what it remembered about a user once "
                    "they read, strong reads included: keep their token until no replica can miss the save, or for good.")
        if all(not b["had"] for b in run.bad):
            return (head + ", and neither had any other replica: at that moment only the primary had the save. "
                    "When no replica has applied the user's write yet, their read goes to the primary.")
    if window and window[1] <= limit:
        return (head + f" (it was {bad['lag']:.2f} s behind, within max_lag_s={limit:g}). Your router kept users on "
                f"the primary for about {window[1]:.1f} s after a save, then sent their re-reads to the replicas, but it "
                f"was built with max_lag_s={limit:g}: a replica that qualifies may be up to {limit:g} s behind, without "
                "the save. A sticky window must outlast max_lag_s, whatever max_lag_s the "
                "router is given; or check the replica's position against the save's.")
    return (head + f" (it was {bad['lag']:.2f} s behind, within max_lag_s={limit:g}). A replica within "
            "max_lag_s may still miss the last max_lag_s seconds of writes: a sticky window must be longer than "
            "max_lag_s, or check the replica's position against the save's.")


def _window_seen(run):
    """(latest re-read on the primary, earliest on a replica), in seconds after the save, if those two are apart."""
    on_primary = [d for d, primary in run.own_reads if primary]
    elsewhere = [d for d, primary in run.own_reads if not primary]
    if on_primary and elsewhere and max(on_primary) < min(elsewhere):
        return max(on_primary), min(elsewhere)
    return None


@ryw.scenario("no user sees their old profile after saving it")
def _own_writes(Router, ctx):
    notes = []
    for label, kwargs in _SCENARIOS:
        run = _SessionRun(Router, **kwargs)
        if run.wrong_returns:
            returned, position = run.wrong_returns[0]
            raise Fail(f"write() returned {returned!r}, but the primary committed that save at log position "
                       f"{position}. Return the position the primary's write returns: it is the user's session "
                       "token, and callers keep it.")
        if run.bad:
            raise Fail(_stale_own_reads(label, run))
        if run.strong_elsewhere:
            t, node = run.strong_elsewhere[0]
            raise Fail(f"In the scenario '{label}', a read with strong=True at t={t:.1f} s was served by {node}. "
                       f"{len(run.strong_elsewhere)} strong reads missed the primary: strong reads always go to "
                       "the primary, whoever asks.")
        if run.lagging_visitors:
            t, node, lag, _ = run.lagging_visitors[0]
            default = ""
            if all(v[3] for v in run.lagging_visitors):
                default = (" Each of them read a profile its owner had saved: your router routed the visitor by the "
                           "owner's save. A token belongs to the user who wrote, not to the row: other users' reads "
                           "follow the lag-aware rules.")
            elif run.limit < 1.0 and max(v[2] for v in run.lagging_visitors) <= 1.0:
                default = (f" None of them was more than 1 s behind, as if your router had max_lag_s=1, the default, "
                           f"instead of the {run.limit:g} it was built with: does __init__ pass max_lag_s on to "
                           "LagAwareRouter?")
            raise Fail(f"In the scenario '{label}', {counted(len(run.lagging_visitors), 'read')} by users who had never saved "
                       f"anything were served by a replica more than max_lag_s={run.limit:g} s behind (at t={t:.1f} s, "
                       f"{node}, {lag:.1f} s behind).{default} Only the user who just saved needs special routing; everyone "
                       "else's reads follow the lag-aware rules of exercise 2 (a token of 0 is not 'any replica').")
        if run.primary_visitors:
            n, (t, *_) = len(run.primary_visitors), run.primary_visitors[0]
            why = (" A token belongs to the user who wrote, not to the row: other users' reads follow the lag-aware "
                   "rules of exercise 2, and the primary keeps its capacity for the writes.")
            if run.limit > 1.0 and all(v[2] > 1.0 for v in run.primary_visitors):
                why = (f" The closest replica was always more than 1 s behind, as if your router had max_lag_s=1, the "
                       f"default, instead of the {run.limit:g} it was built with: does __init__ pass max_lag_s on to "
                       "LagAwareRouter?")
            elif all(v[1] for v in run.primary_visitors):
                why = (f" {'Each of them' if n > 1 else 'It'} read a profile its owner had just saved: a token kept "
                       "per profile makes everyone who reads it wait for the save, as if it were theirs." + why)
            raise Fail(f"In the scenario '{label}', {counted(n, 'read')} by {'users' if n > 1 else 'a user'} who had "
                       f"never saved anything went to the primary (the first at t={t:.1f} s) while a replica was up "
                       f"and within max_lag_s={run.limit:g} s.{why}")
        notes.append(f"{label}: 0 of {run.own}")
    stale = _reread_at_max_lag(Router)
    if stale:
        raise Fail(stale)
    return "; ".join(notes) + "; re-read exactly max_lag_s after the save: the new profile"


def _reread_at_max_lag(Router) -> str:
    """For max_lag_s of 1, 2.5 and 6 s: one save with replicas 0.5 s further behind than that; re-reads half
    max_lag_s later, 7/8 of it later, and exactly max_lag_s later. The 6 s case is beyond the Play
    panel's knob (5 s), so a window of a fixed length fails it whatever length was picked."""
    for limit in (MAX_LAG_S, 2.5, 6.0):
        stale = _reread_at(Router, limit)
        if stale:
            return stale
    return ""


def _reread_at(Router, limit: float) -> str:
    # The times are exact in binary: max_lag_s after the save every replica is exactly max_lag_s
    # behind, so it qualifies for ordinary reads (lag_s <= max_lag_s), and it has not applied the save.
    bench = _Bench(Router, clock=True, lag=limit + 0.5, max_lag_s=limit)
    for user in range(1, 11):
        bench.rs.write(user, bio="original")
    saved_at = limit + 1.0   # every replica has the originals
    bench.run_until(saved_at)
    bench.write(7, user=7, bio="saved")
    for at in (saved_at + limit / 2, saved_at + limit * 7 / 8, saved_at + limit):   # all exact in binary
        bench.run_until(at)
        for _ in range(len(bench.replicas)):
            event, row = bench.read(7, user=7)
            if not (row is not None and hasattr(row, "get") and row.get("bio") == "saved"):
                node = bench.node(event.component)
                if event.fields["position"] >= bench.rs.position:   # pragma: no cover - caught by the scenarios before
                    return (f"User 7 re-read their profile from {event.component}, which had their save, but read() "
                            f"returned {row!r}. Return the row the node gives you.")
                head = (f"Built with max_lag_s={limit:g}, your router let user 7 save their profile at t={saved_at:g} s, "
                        f"with every replica {limit + 0.5:g} s behind, and re-read it at t={at:g} s from "
                        f"{event.component}, which had not applied the save: they saw {row!r}")
                if at < saved_at + limit:
                    return (head + f". That was {at - saved_at:g} s after the save, and {event.component} was "
                            f"{node.lag_s:g} s behind, within max_lag_s. A sticky window must outlast max_lag_s, "
                            "whatever max_lag_s the router is given; or check the replica's position against the "
                            "save's.")
                return (head + f". At that instant, exactly max_lag_s={limit:g} s after the save, {event.component} "
                        f"was {node.lag_s:g} s behind, and a replica at most max_lag_s behind qualifies for ordinary "
                        "reads. A sticky window that ends at or before that instant hands the user to a replica that may "
                        "not have their save: the window must outlast max_lag_s, whatever max_lag_s the router is "
                        "given, or check the replica's position against the save's.")
    return ""


@ryw.scenario("other reads still go to the replicas")
def _not_all_on_primary(Router, ctx):
    # Visitors outnumber savers 5 to 1 here (2.5 to 1 in the scenarios above, which are about the savers):
    # the primary's share of all reads then tells a router that keeps visitors off it.
    run = _SessionRun(Router, lag=0.3, seed=21, visits_per_s=30.0, saves_per_s=6.0)
    total = sum(run.by_node.values())
    on_primary = run.by_node["primary"]
    visitors = sum(run.visitor_by_node.values())
    if on_primary > 0.5 * total:
        clock = clock_hint(ctx, ask=False)
        raise Fail(f"The primary served {on_primary:,} of {total:,} reads ({100 * on_primary / total:.0f} %), "
                   f"including {run.visitor_by_node['primary']:,} of {visitors:,} visitors' reads. That is the "
                   "load the replicas were added to take away. Only the user who just saved needs the primary "
                   "(or a replica that has their save), and only until a replica catches up." + clock)
    replicas_after, primary_after = run.long_after
    if primary_after > replicas_after:
        raise Fail(f"Users who had saved their profile more than 8 s earlier still had {primary_after} of "
                   f"{primary_after + replicas_after} reads served by the primary, long after every replica "
                   "had their save. Send a user back to the replicas once a replica can serve them."
                   + clock_hint(ctx, ask=False))
    on_replicas = {r.name: run.by_node[r.name] for r in run.bench.replicas}
    if max(on_replicas.values()) > 1.5 * min(on_replicas.values()):
        raise Fail(f"The replicas shared the reads unevenly: {_spread(on_replicas)}. Rotate over the replicas that "
                   "can serve a read (those with the user's save, or within max_lag_s) and move the turn on at "
                   "every read, on every path through read(): always taking the first one that qualifies "
                   "overloads it.")
    quiet = _quiet_reread(Router) or _quiet_reread(Router, busy=True)
    if quiet:
        raise Fail(quiet + clock_hint(ctx, ask=False))
    return f"the primary served {100 * on_primary / total:.0f} % of reads; the replicas shared the rest evenly"


def _quiet_reread(Router, busy: bool = False) -> str:
    """One user saves; 10 s later every replica has that save: they should serve it.

    Quiet: nobody writes after the save, so the replicas have exactly it. Busy: other users
    write every 0.1 s, so the replicas have the save but are always a little behind the primary
    (a router waiting for a replica to catch up with the primary, not with the save, never
    finds one)."""
    bench = _Bench(Router, clock=True, replicas=4, lag=0.3, max_lag_s=MAX_LAG_S)
    for user in range(1, 11):
        bench.rs.write(user, bio="original")
    bench.run_until(2.0)
    position = bench.write(7, user=7, bio="saved")
    if busy:
        for i in range(100):
            bench.sim.at(2.05 + 0.1 * i, lambda key=1 + i % 6, i=i: bench.rs.write(key, bio=f"edit {i}"))
    bench.run_until(12.0)
    served = [bench.read(7, user=7)[0].component for _ in range(8)]
    if served.count("primary") > 1:
        if busy:
            return (f"User 7 saved at t=2 s (log position {position}); other users kept writing. At t=12 s every "
                    f"replica had applied user 7's save long before, and was 0.3 s behind the primary's newest "
                    f"writes, yet your router sent {served.count('primary')} of user 7's 8 reads to the primary. "
                    "A replica can serve the user once it has their save (its position >= their token), "
                    "not once it has caught up with the primary, which under steady writes it never does.")
        return (f"User 7 saved at t=2 s (log position {position}) and nobody wrote after that. At t=12 s every replica "
                f"had applied exactly that position, yet your router sent {served.count('primary')} of user 7's 8 "
                "reads to the primary. A replica whose position equals the user's token has their save (>=, not "
                ">); a sticky window ends.")
    counts = {r.name: served.count(r.name) for r in bench.replicas}
    if min(counts.values()) == 0 or max(counts.values()) > 2 * min(counts.values()):
        return (f"User 7 saved at t=2 s and then, at t=12 s, read their profile 8 times, with all 4 replicas holding "
                f"the save: {_spread(counts)}. Their reads should take turns over the replicas that have the save "
                "like any other reads: move the turn on by one at every read, on every path through read().")
    return ""


# --------------------------------------------------------------------------------------------
# 01.4 capacity

PEAK_QPS, WRITE_SHARE, NODE_QPS, MAX_UTILISATION = 16_000, 0.10, 5_000, 0.75


def _replica_utilisation(n: int) -> float:
    reads, writes = PEAK_QPS * (1 - WRITE_SHARE), PEAK_QPS * WRITE_SHARE
    return (reads / n + writes) / NODE_QPS


def _needed() -> int:
    reads, writes = PEAK_QPS * (1 - WRITE_SHARE), PEAK_QPS * WRITE_SHARE
    return math.ceil(reads / (MAX_UTILISATION * NODE_QPS - writes))


_KNOWN_MISTAKES = {
    "rounded down": lambda: _needed() - 1,
    "no headroom": lambda: math.ceil(PEAK_QPS * (1 - WRITE_SHARE) / (NODE_QPS - PEAK_QPS * WRITE_SHARE)),
    "no replay": lambda: math.ceil(PEAK_QPS * (1 - WRITE_SHARE) / (MAX_UTILISATION * NODE_QPS)),
    "neither": lambda: math.ceil(PEAK_QPS * (1 - WRITE_SHARE) / NODE_QPS),
}

capacity = register(Exercise(
    "01.4", "how many replicas?", answer="REPLICAS",
    hints=(
        "Split the peak into reads and writes first. Only the reads are shared among the replicas.",
        "Each replica's load = its share of the reads + every write (it replays the whole log).",
        "Find the smallest whole number of replicas that keeps that load at or under 75 % of 5,000 queries/s.",
    )))


@capacity.scenario("enough replicas, with headroom, and no more")
def _capacity(answer, ctx):
    count = number(answer, "REPLICAS is", should="REPLICAS should be a whole number of replicas") \
        if not isinstance(answer, (bool, str)) else None
    if count is None:
        raise Fail(f"REPLICAS should be a whole number of replicas; got {answer!r}.")
    if not count.is_integer():
        raise Fail(f"You can't run {count:g} replicas: REPLICAS must be a whole number. Which whole number "
                   "keeps every replica at or under 75 %?")
    answer = int(count)
    if answer < 0:
        raise Fail(f"REPLICAS should be a whole number of replicas; got {answer!r}.")
    if answer == 0:
        raise Fail("With 0 replicas the primary takes all 16,000 queries/s: 320 % of its capacity.")
    u = _replica_utilisation(answer)
    load = (f"With {answer} replica{'' if answer == 1 else 's'} each would run at {100 * u:.0f} % of its capacity "
            "at peak")
    mistake = next((name for name, f in _KNOWN_MISTAKES.items() if f() == answer), None)
    if u > MAX_UTILISATION:
        nudge = {
            "rounded down": " The division does not come out even: rounding down leaves every replica over "
                            "the limit.",
            "no headroom": " That count fills each replica to 100 %: it leaves out the 25 % headroom for a "
                           "failed replica, a spike, and the latency curve of lesson 00.",
            "no replay": " Did you forget that every replica also replays every write? Replication is not free.",
            "neither": " Every replica also replays all 1,600 writes/s, and you wanted 25 % headroom.",
        }.get(mistake, "")
        raise Fail(f"{load}, over the 75 % you allowed.{nudge}")
    if answer > _needed():
        guess = (" Did you count the primary, or the writes as reads? Only the reads are shared among the "
                 "replicas." if answer == _needed() + 1 else "")
        raise Fail(f"{load}: safe, but fewer replicas would do, and each one costs as much as the primary."
                   + guess)
    return f"{load}: at most 75 %, and one fewer would not be"
