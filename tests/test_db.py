"""labkit.db: SQLite nodes, the change log, replica lag, staleness, down/up (lesson 01)."""
import re
import sqlite3

import pytest
from hypothesis import given, settings, strategies as st

from labkit.clock import Sim
from labkit.db import (Database, ExponentialLag, LagSpike, Replica, ReplicaDown, ReplicaSet,
                       UniformLag)
from labkit.run import Run
from labkit.workload import drive_workload, make_workload


def test_database_reads_its_own_writes_and_logs_them():
    sim = Sim(0)
    db = Database(sim)
    assert db.read(1) is None
    assert db.write(1, name="ann") == 1
    assert db.write(1, name="ann b", age=30) == 2  # a new column is part of the same log entry
    assert db.read(1) == {"id": 1, "name": "ann b", "age": 30}
    assert [e.position for e in db.log] == [1, 2] and db.position == 2
    assert db.db["users"].count == 1
    assert [e.event for e in sim.trace] == ["read", "write", "write", "read"]
    assert sim.trace.values("stale", event="read") == [False, False]


def test_failed_write_leaves_no_trace_in_schema_or_log():
    sim = Sim(0)
    db = Database(sim)
    with pytest.raises(sqlite3.Error):
        db.write(1, blob={"not": "sqlite"})
    assert db.log == [] and "blob" not in db.db["users"].columns_dict
    db.write(1, blob="ok")  # the column can still be added later
    assert db.read(1)["blob"] == "ok"


def test_raw_sql_execute_and_query():
    sim = Sim(0)
    rs = ReplicaSet(sim, replicas=1, lag=1.0)
    rs.execute("CREATE TABLE orders (id INTEGER PRIMARY KEY, total REAL)", table="orders")
    p = rs.execute("INSERT INTO orders VALUES (?, ?)", (7, 9.5), table="orders", key=7)
    assert p == 2
    assert rs.query("primary", "SELECT total FROM orders WHERE id = ?", [7]) == [{"total": 9.5}]
    sim.advance(1.0)
    assert rs.query("replica1", "SELECT * FROM orders", table="orders") == [{"id": 7, "total": 9.5}]
    with pytest.raises(sqlite3.OperationalError, match="readonly"):
        rs.query("primary", "DELETE FROM orders")  # a write through query() would skip the log
    assert rs.query("primary", "SELECT count(*) AS n FROM orders") == [{"n": 1}]


def test_replica_applies_after_lag_and_reads_in_between_are_stale():
    sim = Sim(0)
    rs = ReplicaSet(sim, replicas=2, lag=0.5)
    token = rs.write("u1", name="ann")
    assert rs.read("replica1", "u1") is None
    sim.advance(0.4999)
    assert rs.read("replica2", "u1") is None
    assert rs.replicas[0].lag_positions == 1 and rs.replicas[0].lag_s == pytest.approx(0.4999)
    sim.advance(0.0001)
    assert rs.read("replica1", "u1") == {"id": "u1", "name": "ann"}
    assert rs.replicas[0].position == token == rs.position and rs.caught_up()
    assert rs.replicas[0].lag_s == 0.0
    reads = sim.trace.select(event="read")
    assert [(e.component, e.stale, e.position) for e in reads] == [
        ("replica1", True, 0), ("replica2", True, 0), ("replica1", False, 1)]


def test_staleness_is_per_key():
    sim = Sim(0)
    rs = ReplicaSet(sim, replicas=1, lag=1.0)
    rs.write(1, v=1)
    sim.advance(1.0)
    rs.write(2, v=2)          # replica is now one write behind, on key 2 only
    rs.read("replica1", 1)
    rs.read("replica1", 2)
    rs.read("replica1", 3)    # never written: nothing to be stale about
    assert sim.trace.values("stale", "replica1", "read") == [False, True, False]


def test_entries_apply_in_order_even_when_random_lag_would_reorder_them():
    sim = Sim(3)
    rs = ReplicaSet(sim, replicas=1, lag=UniformLag(0.0, 2.0))
    positions = []
    for i in range(50):
        rs.write("k", v=i)
        sim.advance(0.01)
        positions.append(rs.replicas[0].position)
        # A replica is always some past state of the primary: v matches its position.
        row = rs.read("replica1", "k")
        assert row is None or row["v"] == rs.replicas[0].position - 1
    assert positions == sorted(positions)


def test_exponential_lag_is_deterministic_per_seed():
    def run(seed):
        sim = Sim(seed)
        rs = ReplicaSet(sim, replicas=2, lag=ExponentialLag(0.2))
        ops = make_workload(sim, duration_s=5, rate=200, n_keys=50, write_fraction=0.3)
        drive_workload(sim, ops, lambda op: rs.write(op.key, t=op.time_s) if op.op == "write"
                       else rs.read(rs.replicas[op.key % 2], op.key))
        sim.run(until=10)
        return sim.trace.to_rows()

    assert run(7) == run(7)
    assert run(7) != run(8)


def test_lag_spike_delays_writes_committed_inside_the_window():
    sim = Sim(0)
    rs = ReplicaSet(sim, replicas=2, lag=0.25, spikes=[LagSpike(10, 20, extra_s=8, replica="replica2")])
    sim.run(until=9)
    rs.write(1, v="before")
    sim.run(until=9.25)
    assert rs.read("replica2", 1) == {"id": 1, "v": "before"}
    sim.run(until=15)  # inside the spike
    rs.write(1, v="during")
    sim.run(until=15.25)
    assert rs.read("replica1", 1)["v"] == "during"      # the spike targets replica2 only
    assert rs.read("replica2", 1)["v"] == "before"
    sim.run(until=23.0)
    assert rs.replicas[1].lag_s == 8.0
    sim.run(until=23.25)                                 # 0.25 s + 8 s after the write
    assert rs.read("replica2", 1)["v"] == "during"
    assert sim.trace.values("stale", "replica2", "read") == [False, True, False]


def test_replica_down_refuses_reads_freezes_and_catches_up_one_lag_after_up():
    sim = Sim(0)
    rs = ReplicaSet(sim, replicas=2, lag=0.5)
    r1 = rs.replicas[0]
    rs.write(1, v=1)
    sim.advance(1)
    r1.down()
    for i in range(2, 5):
        rs.write(1, v=i)
        sim.advance(1)
    with pytest.raises(ReplicaDown, match="replica1 is down"):
        rs.read(r1, 1)
    assert r1.position == 1 and rs.replicas[1].position == 4
    assert r1.lag_positions == 3 and r1.lag_s == pytest.approx(3.0)
    r1.up()
    sim.advance(0.4999)
    assert r1.position == 1
    sim.advance(0.0001)
    assert r1.position == 4 and rs.read(r1, 1) == {"id": 1, "v": 4}
    assert [(e.event, e.position) for e in sim.trace.select("replica1") if e.event in ("down", "up")] == [
        ("down", 1), ("up", 1)]


def test_write_in_flight_when_replica_goes_down_is_not_lost():
    sim = Sim(0)
    rs = ReplicaSet(sim, replicas=1, lag=1.0)
    rs.write(1, v=1)
    rs.replicas[0].down()      # the entry arrives while down and is dropped...
    sim.advance(2)
    rs.replicas[0].up()        # ...and is asked for again on reconnect
    sim.advance(1)
    assert rs.read("replica1", 1) == {"id": 1, "v": 1}


def test_replicas_are_read_only():
    rs = ReplicaSet(Sim(0), replicas=1)
    with pytest.raises(RuntimeError, match="read-only replica"):
        rs.replicas[0].write(1, v=1)
    with pytest.raises(RuntimeError, match="read-only replica"):
        rs.replicas[0].execute("DELETE FROM users")


def test_wait_for_position_like_wait_for_executed_gtid_set():
    sim = Sim(0)
    rs = ReplicaSet(sim, replicas=1, lag=1.0)
    r = rs.replicas[0]
    seen = []
    token = rs.write(1, v=1)
    r.wait_for_position(token, lambda ok: seen.append(("long", ok, sim.now)), timeout_s=5)
    r.wait_for_position(token, lambda ok: seen.append(("short", ok, sim.now)), timeout_s=0.5)
    sim.run(until=10)
    assert seen == [("short", False, 0.5), ("long", True, 1.0)]
    r.wait_for_position(token, lambda ok: seen.append(("now", ok, sim.now)))
    assert seen[-1] == ("now", True, 10.0)  # already there: answered at once
    rs.primary.wait_for_position(rs.position, lambda ok: seen.append(("primary", ok)))
    assert seen[-1] == ("primary", True)


def test_per_node_read_load_from_the_trace():
    sim = Sim(0)
    rs = ReplicaSet(sim, replicas=2, lag=0.1)
    for i in range(40):  # 10 reads/s to replica1, 30/s to replica2, 4 s
        sim.at(i * 0.1, rs.read, "replica1", 1)
        for j in range(3):
            sim.at(i * 0.1, rs.read, "replica2", 1)
    sim.run(until=4)
    run = Run()
    run.sim, run.duration_s = sim, 4.0
    r1, r2 = run.rate("replica1", "read", 1.0), run.rate("replica2", "read", 1.0)
    assert r1 == [10, 10, 10, 10] and r2 == [30, 30, 30, 30]
    assert sim.trace.count("primary", "read") == 0


def test_file_backed_nodes(tmp_path):
    sim = Sim(0)
    rs = ReplicaSet(sim, replicas=1, lag=0.1, path=str(tmp_path))
    rs.write(1, v="x")
    sim.advance(1)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["primary.db", "replica1.db"]
    assert sqlite3.connect(tmp_path / "replica1.db").execute("SELECT v FROM users").fetchall() == [("x",)]


def test_node_lookup():
    rs = ReplicaSet(Sim(0), replicas=2)
    assert rs.node("replica2") is rs.replicas[1] and rs.node(rs.primary) is rs.primary
    assert [n.name for n in rs.nodes] == ["primary", "replica1", "replica2"]
    with pytest.raises(ValueError, match="node must be one of 'primary', 'replica1', 'replica2'; got 'replica9'"):
        rs.node("replica9")


@pytest.mark.parametrize("kwargs, message", [
    (dict(replicas=-1), "replicas must be in [0, 32], got -1"),
    (dict(replicas=2, lag=[0.1]), "lag must be one value or a list of 2"),
    (dict(replicas=1, lag=-0.5), "lag must be seconds >= 0, an ExponentialLag or a UniformLag; got -0.5"),
    (dict(replicas=1, lag="fast"), "lag must be seconds >= 0"),
    (dict(replicas=1, spikes=[LagSpike(1, 2, 3, replica="replica2")]), "LagSpike replica must be one of replica1"),
    (dict(replicas=1, spikes=[(1, 2, 3)]), "spikes must hold LagSpike windows"),
    (dict(table="users; DROP"), "table must be a plain SQL name"),
])
def test_bad_arguments_name_the_parameter_and_range(kwargs, message):
    with pytest.raises(ValueError) as err:
        ReplicaSet(Sim(0), **kwargs)
    assert message in str(err.value)


@pytest.mark.parametrize("make, message", [
    (lambda: LagSpike(5, 3, 1), "end_s must be > 5, got 3"),
    (lambda: LagSpike(1, 3, -1), "extra_s must be >= 0, got -1"),
    (lambda: ExponentialLag(0), "mean_s must be > 0, got 0"),
    (lambda: UniformLag(2, 1), "high_s must be >= 2, got 1"),
])
def test_lag_models_validate(make, message):
    with pytest.raises(ValueError, match=message.replace("[", r"\[")):
        make()


@pytest.mark.parametrize("field", ["name]; DROP TABLE rows; --", "id", "2fa", "with space"])
def test_a_field_name_that_is_not_a_plain_sql_name_is_refused_before_anything_is_written(field):
    db = Database(Sim(0), "main")
    with pytest.raises(ValueError, match=f"field names must be plain SQL names .* got {re.escape(repr(field))}"):
        db.write(1, **{field: "x"})
    assert db.position == 0 and db.read(1) is None


def test_a_replica_can_be_built_by_hand():
    sim = Sim(0)
    primary = Database(sim, "main")
    r = Replica(sim, "copy", primary, lag=0.2)
    primary.write(1, v=1)
    sim.advance(0.2)
    assert r.read(1) == {"id": 1, "v": 1}


writes = st.lists(st.tuples(st.floats(0, 5), st.integers(0, 4), st.integers(0, 99)), max_size=30)


@settings(max_examples=40, deadline=None)
@given(writes=writes, mean_lag=st.floats(0.01, 2.0), seed=st.integers(0, 1000),
       down=st.none() | st.tuples(st.floats(0, 5), st.floats(0, 5)))
def test_replicas_are_always_a_prefix_and_eventually_equal_the_primary(writes, mean_lag, seed, down):
    sim = Sim(seed)
    rs = ReplicaSet(sim, replicas=2, lag=ExponentialLag(mean_lag))
    history = []  # (position, key, value) in commit order

    def write(key, value):
        history.append((rs.write(key, v=value), key, value))

    def check(node):
        # Whatever a replica shows is the primary's state as of the replica's position.
        if not node.is_up:
            return
        for key in range(5):
            expected = [v for p, k, v in history if k == key and p <= node.position]
            row = node.read(key)
            assert (row and row["v"]) == (expected[-1] if expected else None)

    for t, key, value in writes:
        sim.at(t, write, key, value)
        sim.at(t + 0.001, check, rs.replicas[key % 2])
    if down:
        sim.at(min(down), rs.replicas[0].down)
        sim.at(max(down), rs.replicas[0].up)
    sim.run(until=10)
    sim.advance(100)  # long enough for any backlog
    assert rs.caught_up()
    primary_rows = rs.query("primary", "SELECT * FROM users ORDER BY id")
    for r in rs.replicas:
        assert rs.query(r, "SELECT * FROM users ORDER BY id") == primary_rows
