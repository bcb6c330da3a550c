"""labkit.clock.Sim: the virtual clock and event queue every simulation runs on (lesson 00)."""
import functools
import math
import os
import pathlib
import subprocess
import sys

import pytest
from hypothesis import given, strategies as st

import labkit as lk
from labkit import lessons
from labkit.clock import Sim

ROOT = pathlib.Path(__file__).resolve().parent.parent


def recorder(sim):
    """A callback factory and the list it appends (label, time at which it ran) to."""
    log = []

    def note(label):
        log.append((label, sim.now))

    return note, log


# --- scheduling order -------------------------------------------------------------------------

def test_events_run_by_time_then_priority_then_insertion_order():
    sim = Sim()
    note, log = recorder(sim)
    sim.at(2.0, note, "late")
    sim.at(1.0, note, "tie, priority 1", priority=1)
    sim.at(1.0, note, "tie, first in")
    sim.at(1.0, note, "tie, second in")
    sim.at(1.0, note, "tie, priority -1", priority=-1)
    sim.at(0.5, note, "early", priority=9)
    sim.run()
    assert [label for label, _ in log] == [
        "early", "tie, priority -1", "tie, first in", "tie, second in", "tie, priority 1", "late"]
    assert [t for _, t in log] == [0.5, 1.0, 1.0, 1.0, 1.0, 2.0]


def test_after_is_relative_to_now_and_passes_arguments():
    sim = Sim()
    seen = []
    sim.at(3.0, lambda: sim.after(1.5, lambda a, b: seen.append((sim.now, a, b)), "x", 2))
    sim.run()
    assert seen == [(4.5, "x", 2)]


def test_an_event_scheduled_for_now_runs_after_those_already_queued_for_now():
    sim = Sim()
    note, log = recorder(sim)
    sim.at(1.0, lambda: (note("first"), sim.at(sim.now, note, "scheduled by first")))
    sim.at(1.0, note, "second")
    sim.run()
    assert [label for label, _ in log] == ["first", "second", "scheduled by first"]


# --- bad times ----------------------------------------------------------------------------------

def test_scheduling_in_the_past_names_time_s_and_the_current_time():
    sim = Sim()
    sim.advance(5)
    with pytest.raises(ValueError, match=r"time_s must be >= now \(5 s\).*got 3"):
        sim.at(3, print)
    assert sim.pending == 0


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_non_finite_times_are_rejected(bad):
    with pytest.raises(ValueError, match="time_s must be a finite number"):
        Sim().at(bad, print)


@pytest.mark.parametrize("bad", [-0.001, -5, math.nan])
def test_negative_or_nan_delays_are_rejected(bad):
    sim = Sim()
    with pytest.raises(ValueError, match=r"delay_s must be (a finite number )?>= 0, got"):
        sim.after(bad, print)
    with pytest.raises(ValueError, match=r"delay_s must be (a finite number )?>= 0, got"):
        sim.advance(bad)
    assert sim.pending == 0 and sim.now == 0


@pytest.mark.parametrize("seed", [1.5, "1", True, None])
def test_seed_must_be_an_int(seed):
    with pytest.raises(ValueError, match="seed must be an int"):
        Sim(seed)


# --- running ------------------------------------------------------------------------------------

def test_run_until_includes_events_at_exactly_until_and_stops_the_clock_there():
    sim = Sim()
    note, log = recorder(sim)
    for t in (1.0, 2.0, 2.0, 3.0):
        sim.at(t, note, t)
    assert sim.run(until=2.0) is sim
    assert log == [(1.0, 1.0), (2.0, 2.0), (2.0, 2.0)]
    assert sim.now == 2.0 and sim.pending == 1


def test_run_until_moves_the_clock_even_when_nothing_is_due():
    sim = Sim()
    sim.at(10, print)
    sim.run(until=4.25)
    assert sim.now == 4.25 and sim.pending == 1


def test_run_without_until_stops_when_idle_at_the_last_event():
    sim = Sim()
    note, log = recorder(sim)
    sim.at(1, lambda: sim.after(2, note, "child"))
    sim.run()
    assert log == [("child", 3.0)]
    assert sim.now == 3.0 and sim.pending == 0
    sim.run()  # idle already: nothing happens, time stays
    assert sim.now == 3.0


def test_run_until_earlier_than_now_is_rejected():
    sim = Sim()
    sim.run(until=10)
    with pytest.raises(ValueError, match=r"until must be >= now \(10 s\), got 9"):
        sim.run(until=9)
    assert sim.now == 10


@pytest.mark.parametrize("bad", [math.nan, math.inf])
def test_run_until_must_be_finite(bad):
    sim = Sim()
    sim.at(5, print)
    with pytest.raises(ValueError, match="until"):
        sim.run(until=bad)
    assert sim.now == 0 and sim.pending == 1


def test_advance_runs_what_falls_due_and_moves_the_clock():
    sim = Sim()
    note, log = recorder(sim)
    sim.at(1, note, "a")
    sim.at(3, note, "b")
    sim.advance(2).advance(0.5)
    assert log == [("a", 1.0)] and sim.now == 2.5
    sim.advance(0.5)
    assert log == [("a", 1.0), ("b", 3.0)] and sim.now == 3.0


def test_max_events_stops_a_callback_that_reschedules_itself_forever():
    sim = Sim()

    def again():
        sim.after(0, again)

    sim.at(0, again)
    with pytest.raises(RuntimeError, match="ran 1,000 events without finishing"):
        sim.run(max_events=1000)
    assert sim.pending == 1  # stopped, not drained


def test_max_events_is_not_tripped_by_a_run_of_exactly_that_many_events():
    sim = Sim()
    for t in range(3):
        sim.at(t, print)
    sim.run(max_events=3)
    assert sim.pending == 0 and sim.now == 2


def test_step_runs_one_event_at_a_time():
    sim = Sim()
    note, log = recorder(sim)
    sim.at(2, note, "b")
    sim.at(1, note, "a")
    assert sim.pending == 2
    assert sim.step() is True and log == [("a", 1.0)] and sim.now == 1.0 and sim.pending == 1
    assert sim.step() is True and log[-1] == ("b", 2.0) and sim.pending == 0
    assert sim.step() is False and sim.now == 2.0


def test_record_stamps_the_current_time():
    sim = Sim()
    sim.at(1.5, sim.record, "backend", "call")
    sim.at(2.5, lambda: sim.record("client", "request", ok=True, latency_s=0.2))
    sim.run()
    assert sim.trace.to_rows() == [
        {"time_s": 1.5, "component": "backend", "event": "call"},
        {"time_s": 2.5, "component": "client", "event": "request", "ok": True, "latency_s": 0.2},
    ]


def test_repr_shows_seed_time_and_queue():
    sim = Sim(7)
    sim.at(4, print)
    sim.run(until=1.5)
    assert repr(sim) == "Sim(seed=7, now=1.5, pending=1)"


# --- properties ---------------------------------------------------------------------------------

# Times from a small set as well as any float, so that ties (the interesting case) are common.
times = st.sampled_from([0.0, 1.0, 2.5]) | st.floats(0, 100, allow_nan=False)
schedules = st.lists(st.tuples(times, st.integers(-2, 2)), min_size=1, max_size=40)


@given(schedules)
def test_execution_order_is_sorted_by_time_priority_then_insertion(events):
    # Hypothesis supplies the events in arbitrary order; that order is the insertion index.
    sim = Sim()
    ran, clock = [], []

    def fire(index):
        ran.append(index)
        clock.append(sim.now)

    for index, (t, priority) in enumerate(events):
        sim.at(t, fire, index, priority=priority)
    sim.run()
    expected = sorted(range(len(events)), key=lambda i: (events[i][0], events[i][1], i))
    assert ran == expected
    assert clock == sorted(clock)
    assert clock == [events[i][0] for i in expected]


@given(st.lists(st.floats(0, 10, allow_nan=False), min_size=1, max_size=30),
       st.floats(0, 30, allow_nan=False))
def test_the_clock_never_goes_backwards_when_callbacks_schedule_more(delays, until):
    sim = Sim()
    clock = []
    pending_delays = list(delays)

    def tick():
        clock.append(sim.now)
        if pending_delays:
            sim.after(pending_delays.pop(), tick)

    sim.at(0, tick)
    sim.run(until=until)
    assert clock == sorted(clock)
    assert all(t <= until for t in clock)
    assert sim.now == until


# --- determinism across processes -----------------------------------------------------------------

PROGRAM = """
import hashlib, json, sys
import labkit as lk
run = lk.simulate_calls(seed=int(sys.argv[1]), retries=2, duration_s=30)
rows = json.dumps(run.trace.to_rows(), sort_keys=True)
print(repr(sorted(run.summary().items())))
print(len(run.trace), hashlib.sha256(rows.encode()).hexdigest())
"""


@functools.cache
def run_in_fresh_process(seed: int, hash_seed: str) -> str:
    """The program's output in a new interpreter; string hashing differs with PYTHONHASHSEED."""
    path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    env = {**os.environ, "PYTHONHASHSEED": hash_seed, "PYTHONPATH": path}
    done = subprocess.run([sys.executable, "-c", PROGRAM, str(seed)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_same_seed_gives_identical_runs_in_fresh_processes():
    first = run_in_fresh_process(5, "0")
    assert first == run_in_fresh_process(5, "4242")
    summary, trace_hash = first.splitlines()
    assert "('requests', " in summary and int(trace_hash.split()[0]) > 1000


def test_a_different_seed_gives_a_different_run():
    assert run_in_fresh_process(5, "0") != run_in_fresh_process(6, "0")


def test_same_seed_gives_the_same_trace_within_one_process():
    a, b = (lk.simulate_calls(seed=3, duration_s=30, retries=1) for _ in range(2))
    assert a.trace.to_rows() == b.trace.to_rows()
    assert repr(a.summary()) == repr(b.summary())


# Every lesson's Play panel at its defaults (found by discovery), and runs the panels do not make.
SCENARIOS = {
    **{f"{lesson.__name__.rsplit('.', 1)[-1]}_panel": lesson.PANEL.runs for lesson in lessons.discover()},
    "calls": lambda: lk.simulate_calls(retries=3),
    "replicas_token": lambda: lk.replicas.simulate(replicas=2, read_your_writes="token"),
    "hot_key": lambda: lk.caching.simulate_hot_key(duration_s=5.0),
    "stale_set_race": lambda: lk.caching.stale_set_race(),
}


@pytest.mark.parametrize("simulate", list(SCENARIOS.values()), ids=list(SCENARIOS))
def test_a_dropped_run_is_freed_at_once_not_left_to_the_garbage_collector(simulate):
    """No reference cycle holds a finished simulation: a Play panel drops a run on every slider
    move, and a cycle kept each one (trace, databases) until a collector pass of 50-90 ms."""
    import gc
    import weakref

    result = simulate()
    runs = list(result.values()) if isinstance(result, dict) else [result]
    sims = [weakref.ref(run.sim) for run in runs]
    for lesson in lessons.discover():
        lesson.PANEL.cache_clear()   # a panel keeps its baseline run (lesson 03's) on purpose
    gc.disable()
    try:
        del result, runs
        alive = [ref() for ref in sims if ref() is not None]
        assert not alive, f"{len(alive)} simulation(s) outlived their run: {gc.get_referrers(alive[0])!r:.300}"
    finally:
        gc.enable()
