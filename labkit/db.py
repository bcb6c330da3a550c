"""Databases on real SQLite, and a primary whose read replicas lag in virtual time (lesson 01).

Each node is a real SQLite database (a `sqlite_utils.Database`, in memory unless a path is
given). Writes run on the primary and append to its change log; every entry gets the next
log position (an LSN). A replica replays the log in order, each entry `lag` seconds of
virtual time after its commit, so "how far behind" can be read in seconds or in positions.

Replication is statement-based, like MySQL's STATEMENT format: a replica re-runs the same
SQL. Keep written SQL deterministic (no `random()`, no `datetime('now')`), or replicas drift.
"""
from __future__ import annotations

import collections
import math
import random
import re
import weakref
from dataclasses import dataclass
from typing import NamedTuple

from labkit import validate
from labkit.clock import Sim


class ReplicaDown(RuntimeError):
    """Raised by a read sent to a replica that is down (lesson 01)."""


class LogEntry(NamedTuple):
    """One committed write in the primary's change log: position, commit time, its (sql, params) statements (lesson 01)."""

    position: int
    time_s: float
    statements: tuple
    table: str | None
    key: object


@dataclass(frozen=True)
class ExponentialLag:
    """Replication lag drawn per write from an exponential distribution with mean `mean_s` (lesson 01)."""

    mean_s: float

    def __post_init__(self):
        validate.number("mean_s", self.mean_s, lo=0, lo_open=True)

    def sample(self, rng) -> float:
        """One lag in seconds, drawn from the simulation's RNG."""
        return _rng(rng).expovariate(1 / self.mean_s)


@dataclass(frozen=True)
class UniformLag:
    """Replication lag drawn per write uniformly from [low_s, high_s] (lesson 01)."""

    low_s: float
    high_s: float

    def __post_init__(self):
        validate.number("low_s", self.low_s, lo=0)
        validate.number("high_s", self.high_s, lo=self.low_s)

    def sample(self, rng) -> float:
        """One lag in seconds, drawn from the simulation's RNG."""
        return _rng(rng).uniform(self.low_s, self.high_s)


@dataclass(frozen=True)
class LagSpike:
    """Writes committed in [start_s, end_s) take `extra_s` longer to reach a replica (all, or just `replica`) (lesson 01)."""

    start_s: float
    end_s: float
    extra_s: float
    replica: str | None = None

    def __post_init__(self):
        validate.number("start_s", self.start_s, lo=0)
        validate.number("end_s", self.end_s, lo=self.start_s, lo_open=True)
        validate.number("extra_s", self.extra_s, lo=0)
        validate.text("replica", self.replica, optional=True)

    def active(self, time_s: float) -> bool:
        """True while `time_s` is inside [start_s, end_s)."""
        if not (type(time_s) is float and -math.inf < time_s < math.inf):  # else the careful check
            validate.number("time_s", time_s)
        return self.start_s <= time_s < self.end_s


_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def _rng(rng):
    if type(rng) is not random.Random:
        validate.instance("rng", rng, random.Random, "a random.Random (the simulation's sim.rng)")
    return rng


def _key(key):
    """A row key: an int or a non-empty string (None would be SQL NULL, a new row on every write)."""
    if not (type(key) is int or (type(key) is str and key)):
        validate.key("key", key)
    return key


def _sql(sql, table, key) -> None:
    validate.text("sql", sql)
    validate.text("table", table, optional=True)
    if key is not None:
        _key(key)


def _run(conn, statements) -> None:
    # One log entry is one transaction: all of it applies or none (SQLite DDL is
    # transactional too), so a failed write leaves no half-added column behind.
    if len(statements) == 1:
        conn.execute(*statements[0])
        return
    conn.execute("BEGIN")
    try:
        for sql, params in statements:
            conn.execute(sql, params)
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def _apply_backlog(replica_ref) -> None:
    replica = replica_ref()
    if replica is not None:
        replica._apply()


def _arrive(replica_ref, position: int) -> None:
    """A shipped log entry lands. The event queue holds the replica weakly: a pending arrival
    must not keep a finished run's replica (and through it the Sim) alive in a cycle."""
    replica = replica_ref()
    if replica is not None:
        replica._arrive(position)


class _Itself:
    """A class attribute that reads as the instance itself; an instance attribute of the same name wins."""

    def __get__(self, obj, owner=None):
        return self if obj is None else obj


class Database:
    """One SQLite database node with a change log and a traced key-value table (lessons 01, 02).

    `write(key, **fields)` upserts a row of `table` (columns are added as needed) and
    returns the commit's log position; `read(key)` returns the row as a dict or None.
    Raw SQL goes through `execute` (writes, logged) and `query` (reads only: it runs
    with SQLite's `query_only` on, so a write sent to `query` fails instead of silently
    skipping the log). Every read and write is recorded in the trace
    with the node's name as the component.
    """

    # The node whose log decides what "stale" means: a primary is its own, a Replica stores
    # its primary. Not `self.primary = self`: that reference cycle kept every finished run's
    # database, simulation and trace in memory until the garbage collector's next pass.
    primary = _Itself()

    def __init__(self, sim: Sim, name: str = "db", *, path: str | None = None, table: str = "users"):
        import sqlite_utils  # imported here: it is slow to import and only data lessons need it

        validate.instance("sim", sim, Sim, "a labkit Sim")
        validate.text("name", name)
        validate.text("path", path, optional=True)
        if not _NAME.match(validate.text("table", table)):
            raise ValueError(f"table must be a plain SQL name (letters, digits, _), got {table!r}")
        self.sim, self.name, self.table = sim, name, table
        self.db = sqlite_utils.Database(path) if path else sqlite_utils.Database(memory=True)
        # Autocommit: each write is its own committed transaction, so a read never sees
        # half of one and file-backed nodes need no explicit commit.
        self.db.conn.isolation_level = None
        self.db.execute(f"CREATE TABLE IF NOT EXISTS [{table}] (id PRIMARY KEY)")
        self._columns = set(self.db[table].columns_dict)
        self._read_sql = f"SELECT * FROM [{table}] WHERE id = ?"
        self._conn = self.db.conn  # the hot paths skip sqlite-utils' wrapper
        self._record_read_event = sim.trace.recorder(name, "read")  # once per read: the fast path
        self.position = 0        # the last log position applied here
        self.log: list[LogEntry] = []
        # Weak: a replica points at its primary, and the reverse as well would be a reference
        # cycle holding the Sim (see `primary`). The ReplicaSet keeps its replicas alive.
        self._replicas: list[weakref.ref] = []
        self._last_write: dict = {}  # (table, key) -> position of the last write to it
        self._waiters: list[list] = []

    # -- writes (primary only) ------------------------------------------------
    def write(self, key, **fields) -> int:
        """Insert or update the row `key` of the table with `fields`; returns the commit's log position."""
        _key(key)
        for column in fields:
            if not _NAME.match(column) or column == "id":
                raise ValueError(f"field names must be plain SQL names (letters, digits, _) other than 'id', "
                                 f"got {column!r}")
        # New columns are added in the same log entry, so they replicate with the row and
        # one write is always one position.
        statements = [(f"ALTER TABLE [{self.table}] ADD COLUMN [{c}]", ()) for c in fields if c not in self._columns]
        cols = ["id", *fields]
        sql = (f"INSERT INTO [{self.table}] ({', '.join(f'[{c}]' for c in cols)}) "
               f"VALUES ({', '.join('?' * len(cols))}) ON CONFLICT(id) DO "
               + (f"UPDATE SET {', '.join(f'[{c}] = excluded.[{c}]' for c in fields)}" if fields else "NOTHING"))
        statements.append((sql, (key, *fields.values())))
        position = self._commit(statements, self.table, key)
        self._columns.update(fields)
        return position

    def execute(self, sql: str, params=(), *, table: str | None = None, key=None) -> int:
        """Run a writing SQL statement and log it; returns its log position.

        Name the `table` (and `key`) it touches so reads of them can tell whether they are stale.
        """
        _sql(sql, table, key)
        return self._commit([(sql, tuple(params))], table, key)

    def _commit(self, statements, table, key) -> int:
        self._check_writable()
        _run(self._conn, statements)
        self.position = position = len(self.log) + 1
        entry = LogEntry(position, self.sim.now, tuple(statements), table, key)
        self.log.append(entry)
        last = self._last_write
        last[None, None] = position
        if table is not None:
            last[table, None] = position
            if key is not None:
                last[table, key] = position
        self.sim.record(self.name, "write", table=table, key=key, position=position)
        for ref in self._replicas:
            replica = ref()
            if replica is not None:
                replica._ship(entry)
        return position

    def _check_writable(self) -> None:
        pass

    # -- reads ------------------------------------------------------------------
    def read(self, key) -> dict | None:
        """The row `key` of the table as a dict, or None if this node has no such row."""
        _key(key)
        self._check_up()
        cursor = self._conn.execute(self._read_sql, (key,))
        row = cursor.fetchone()
        self._record_read(self.table, key)
        return None if row is None else dict(zip([d[0] for d in cursor.description], row))

    def query(self, sql: str, params=(), *, table: str | None = None, key=None) -> list[dict]:
        """Run a read-only SQL query here; returns the rows as dicts.

        Staleness is judged against the last write to (`table`, `key`), to `table` if no
        key is given, or to the whole database if neither is.
        """
        _sql(sql, table, key)
        self._check_up()
        # query_only makes SQLite refuse a write here, which would otherwise bypass the log.
        self._conn.execute("PRAGMA query_only = 1")
        try:
            rows = list(self.db.query(sql, tuple(params)))
        finally:
            self._conn.execute("PRAGMA query_only = 0")
        self._record_read(table, key)
        return rows

    def _check_up(self) -> None:
        pass

    def _record_read(self, table, key) -> None:
        # Stale: this node has not applied the last write to what was read that committed
        # on the primary before this read.
        wanted = self.primary._last_write.get((table, key), 0)
        position = self.position
        self._record_read_event(self.sim.now, {"table": table, "key": key, "position": position,
                                               "stale": position < wanted})

    # -- replication progress -------------------------------------------------------
    @property
    def lag_positions(self) -> int:
        """How many committed log entries this node has not applied yet."""
        return self.primary.position - self.position

    @property
    def lag_s(self) -> float:
        """Seconds since the oldest write this node has not applied was committed (0 when caught up)."""
        if self.position >= self.primary.position:
            return 0.0
        return self.sim.now - self.primary.log[self.position].time_s

    def wait_for_position(self, position: int, callback, timeout_s: float | None = None) -> None:
        """Call `callback(True)` once this node has applied `position`, or `callback(False)` after `timeout_s`.

        Like MySQL's WAIT_FOR_EXECUTED_GTID_SET: if the node is there already, the
        callback runs at once.
        """
        validate.number("position", position, lo=0, integer=True)
        validate.callable_("callback", callback, "a function called with True or False")
        validate.number("timeout_s", timeout_s, lo=0, optional=True)
        if self.position >= position:
            callback(True)
            return
        waiter = [position, callback, False]  # the flag makes sure exactly one outcome fires
        self._waiters.append(waiter)
        if timeout_s is not None:
            self.sim.after(timeout_s, self._time_out, waiter)

    def _time_out(self, waiter) -> None:
        if not waiter[2]:
            waiter[2] = True
            self._waiters.remove(waiter)
            waiter[1](False)

    def _wake_waiters(self) -> None:
        ready = [w for w in self._waiters if w[0] <= self.position]
        if ready:
            self._waiters = [w for w in self._waiters if w[0] > self.position]
            for waiter in ready:
                waiter[2] = True
                waiter[1](True)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r}, position={self.position})"


def _lag(lag):
    """A replica's lag: seconds (a number >= 0), an ExponentialLag or a UniformLag."""
    if isinstance(lag, (ExponentialLag, UniformLag)):
        return lag
    what = "seconds >= 0, an ExponentialLag or a UniformLag"
    if isinstance(lag, bool) or not isinstance(lag, (int, float)):
        raise validate.ArgumentTypeError(f"lag must be {what}; got {lag!r}")
    if not (math.isfinite(lag) and lag >= 0):
        raise ValueError(f"lag must be {what}; got {lag!r}")
    return float(lag)


class Replica(Database):
    """A read-only copy that replays its primary's log after a lag; it can go down and come back (lesson 01).

    The log is applied strictly in order: an entry never overtakes an earlier one, even
    when lags are random, so a replica always shows some past state of the primary.
    While down it applies nothing and reads raise `ReplicaDown`; `up()` reconnects, and
    the backlog arrives one lag later.

    With `capacity_qps`, the node does at most that many queries' work per second, and applying
    a log entry costs as much as serving a read (statement-based replay). Work is done in the
    order it arrives: a read is served at once (its latency is not modelled) but takes its
    share of the node's time, and a log entry that lands is applied once the work queued
    before it is done. So a replica offered more than its capacity falls behind by the work it
    cannot do: its lag grows with the excess and drains once the load falls. Without
    `capacity_qps`, load never delays the log.
    """

    def __init__(self, sim: Sim, name: str, primary: Database, lag=0.1, spikes=(), *, path: str | None = None,
                 capacity_qps: float | None = None):
        validate.instance("primary", primary, Database, "the primary, a labkit Database")
        super().__init__(sim, name, path=path, table=primary.table)
        self.lag = _lag(lag)
        spikes = validate.items("spikes", spikes, LagSpike, "LagSpike windows")
        self.spikes = tuple(s for s in spikes if s.replica in (None, name))
        self.primary = primary
        self.is_up = True
        self.capacity_qps = validate.number("capacity_qps", capacity_qps, lo=0, lo_open=True, optional=True)
        self._cost = None if capacity_qps is None else 1.0 / capacity_qps   # seconds of work per query
        self._busy_until = 0.0   # when the node has done the work it was given so far
        self._slots = collections.deque()   # (time it is applied, position) of entries that landed, in order
        self._received = 0     # the highest position that has arrived here
        self._last_due = 0.0   # arrival time of the last shipped entry; arrivals stay in order
        self._ref = weakref.ref(self)
        primary._replicas.append(self._ref)

    def _sample_lag(self) -> float:
        lag = self.lag if isinstance(self.lag, float) else self.lag.sample(self.sim.rng)
        now = self.sim.now
        return lag + sum(s.extra_s for s in self.spikes if s.active(now))

    def _ship(self, entry: LogEntry) -> None:
        due = max(self.sim.now + self._sample_lag(), self._last_due)
        self._last_due = due
        self.sim.at(due, _arrive, self._ref, entry.position)

    def _arrive(self, position: int) -> None:
        # While down, arrivals are lost; up() asks for everything again.
        if not self.is_up:
            return
        if self._cost is not None:
            for p in range(self._received + 1, position + 1):
                slot = max(self._busy_until, self.sim.now)
                self._busy_until = slot + self._cost
                self._slots.append((slot, p))
                self.sim.at(slot, _apply_backlog, self._ref)
            self._received = max(self._received, position)
            return
        self._received = max(self._received, position)
        log = self.primary.log
        if self.position < self._received:
            while self.position < self._received:
                entry = log[self.position]
                _run(self._conn, entry.statements)
                self.position = entry.position
            self._wake_waiters()

    def _apply(self) -> None:
        """Apply the entries whose turn in the node's work has come."""
        log, slots, now = self.primary.log, self._slots, self.sim.now
        applied = False
        while self.is_up and slots and slots[0][0] <= now:
            _, position = slots.popleft()
            while self.position < position:
                entry = log[self.position]
                _run(self._conn, entry.statements)
                self.position = entry.position
            applied = True
        if applied:
            self._wake_waiters()

    def _record_read(self, table, key) -> None:
        super()._record_read(table, key)
        if self._cost is not None:
            self._busy_until = max(self._busy_until, self.sim.now) + self._cost

    def down(self) -> None:
        """Take this replica down: it stops applying the log and refuses reads."""
        if self.is_up:
            self.is_up = False
            # What had landed but was not applied is lost with the connection; up() asks again.
            self._slots.clear()
            self._received = self.position
            self.sim.record(self.name, "down", position=self.position)

    def up(self) -> None:
        """Bring this replica back: it reconnects and receives its whole backlog one lag from now."""
        if self.is_up:
            return
        self.is_up = True
        self.sim.record(self.name, "up", position=self.position)
        due = max(self.sim.now + self._sample_lag(), self._last_due)
        self._last_due = due
        self.sim.at(due, _arrive, self._ref, self.primary.position)

    def _check_writable(self) -> None:
        # Recorded as well as raised: a caller that swallows the error still shows in the trace.
        self.sim.record(self.name, "write_refused")
        raise RuntimeError(f"{self.name} is a read-only replica: send writes to the primary")

    def _check_up(self) -> None:
        if not self.is_up:
            raise ReplicaDown(f"{self.name} is down: read from another replica or the primary")

    def __repr__(self) -> str:
        state = "up" if self.is_up else "down"
        return f"Replica({self.name!r}, {state}, position={self.position}, lag_positions={self.lag_positions})"


class ReplicaSet:
    """A primary and `replicas` read replicas named replica1, replica2, ... (lesson 01).

    `lag` is seconds (a number), an `ExponentialLag` / `UniformLag`, or a list with one
    of those per replica; `spikes` are `LagSpike` windows; `capacity_qps` (optional) is the
    queries per second each replica can run, past which it falls behind (see `Replica`). Writes go to the primary;
    reads name the node they are sent to, which is the routing decision lessons study.
    """

    def __init__(self, sim: Sim, replicas: int = 2, lag=0.1, *, spikes=(), path: str | None = None,
                 table: str = "users", capacity_qps: float | None = None):
        validate.instance("sim", sim, Sim, "a labkit Sim")
        validate.number("replicas", replicas, lo=0, hi=32, integer=True)
        validate.text("path", path, optional=True)
        lags = list(lag) if isinstance(lag, (list, tuple)) else [lag] * replicas
        if len(lags) != replicas:
            raise ValueError(f"lag must be one value or a list of {replicas} (one per replica), got {len(lags)}")
        for lg in lags:
            _lag(lg)
        names = [f"replica{i + 1}" for i in range(replicas)]
        spikes = validate.items("spikes", spikes, LagSpike, "LagSpike windows")
        for spike in spikes:
            if spike.replica is not None and spike.replica not in names:
                raise ValueError(f"LagSpike replica must be one of {', '.join(names)}; got {spike.replica!r}")

        def file(name):
            return None if path is None else f"{path}/{name}.db"

        self.sim = sim
        self.primary = Database(sim, "primary", path=file("primary"), table=table)
        self.replicas = [Replica(sim, n, self.primary, lg, spikes, path=file(n), capacity_qps=capacity_qps)
                         for n, lg in zip(names, lags)]

    @property
    def nodes(self) -> list[Database]:
        """The primary followed by the replicas."""
        return [self.primary, *self.replicas]

    @property
    def position(self) -> int:
        """The primary's log position: the last committed write."""
        return self.primary.position

    def node(self, node) -> Database:
        """A node given itself or its name ("primary", "replica1", ...)."""
        if isinstance(node, Database) and node in self.nodes:
            return node
        if not isinstance(node, (str, Database)):
            raise validate.ArgumentTypeError(f"node must be a node or one of the names "
                                             f"{', '.join(repr(n.name) for n in self.nodes)}; got {node!r}")
        for n in self.nodes:
            if n.name == node:
                return n
        raise ValueError(f"node must be one of {', '.join(repr(n.name) for n in self.nodes)}; got {node!r}")

    def write(self, key, **fields) -> int:
        """Upsert row `key` on the primary; returns the commit's log position (a session token)."""
        return self.primary.write(key, **fields)

    def execute(self, sql: str, params=(), *, table: str | None = None, key=None) -> int:
        """Run a writing SQL statement on the primary; returns its log position."""
        return self.primary.execute(sql, params, table=table, key=key)

    def read(self, node, key) -> dict | None:
        """Read row `key` from `node` (a node or its name)."""
        return self.node(node).read(key)

    def query(self, node, sql: str, params=(), *, table: str | None = None, key=None) -> list[dict]:
        """Run a read-only SQL query on `node` (a node or its name)."""
        return self.node(node).query(sql, params, table=table, key=key)

    def caught_up(self) -> bool:
        """True when every replica has applied everything the primary committed."""
        return all(r.position == self.primary.position for r in self.replicas)

    def __repr__(self) -> str:
        return f"ReplicaSet(position={self.position}, replicas={self.replicas})"
