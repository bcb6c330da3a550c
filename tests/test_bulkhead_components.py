"""The admission components lesson 04 builds on: a bounded WorkerPool, a Service behind a shared or partitioned
pool and a caller's threads, Java's ThreadPoolExecutor rule, and drive_traffic for several kinds of work."""
import math

import pytest

from labkit.clock import Sim
from labkit.service import LatencySpike, Service, ThreadPool, WorkerPool, executor_timeline
from labkit.traffic import drive_traffic


def test_unbounded_pool_queues_first_come_first_served():
    pool = WorkerPool(2)
    assert pool.admit(0.0, 1.0) == (0.0, 1.0)
    assert pool.admit(0.0, 1.0) == (0.0, 1.0)
    assert pool.admit(0.1, 1.0) == (1.0, 2.0)
    assert pool.admit(0.2, 1.0) == (1.0, 2.0)
    assert pool.admit(0.3, 1.0) == (2.0, 3.0)
    assert pool.rejected == 0 and pool.max_concurrent_calls == 2


def test_max_wait_zero_rejects_unless_a_worker_is_free_now():
    pool = WorkerPool(1, max_wait_s=0)
    assert pool.admit(0.0, 1.0) == (0.0, 1.0)
    assert pool.admit(0.5, 1.0) is None
    assert pool.refusal_wait_s(0.5) == 0
    assert pool.admit(1.0, 1.0) == (1.0, 2.0)   # released at its end, exactly then
    assert pool.rejected == 1


def test_max_wait_admits_within_the_wait_and_rejects_beyond_it():
    pool = WorkerPool(1, max_wait_s=0.5)
    pool.admit(0.0, 1.0)
    assert pool.admit(0.4, 1.0) is None          # would wait 0.6 s
    assert pool.refusal_wait_s(0.4) == 0.5
    assert pool.admit(0.6, 1.0) == (1.0, 2.0)    # waits 0.4 s
    assert pool.admit(1.6, 1.0) == (2.0, 3.0)    # the next in line, FIFO


def test_queue_capacity_counts_only_calls_still_waiting():
    pool = WorkerPool(1, queue_capacity=1)
    pool.admit(0.0, 1.0)
    assert pool.admit(0.1, 1.0) == (1.0, 2.0)    # one waiting
    assert pool.admit(0.2, 1.0) is None          # the queue is full
    assert pool.admit(1.5, 1.0) == (2.0, 3.0)    # the first waiter started at 1.0: room again
    zero = WorkerPool(1, queue_capacity=0)
    zero.admit(0.0, 1.0)
    assert zero.admit(0.5, 1.0) is None


def test_pool_refuses_bad_bounds_by_name():
    with pytest.raises(ValueError, match="max_wait_s"):
        WorkerPool(2, max_wait_s=-1)
    with pytest.raises((TypeError, ValueError), match="queue_capacity"):
        WorkerPool(2, queue_capacity=1.5)


def test_a_rejection_is_its_own_outcome_in_the_trace_and_the_response():
    sim = Sim(1)
    pool = WorkerPool(1, max_wait_s=0)
    svc = Service(sim, "dep", latency_s=1.0, latency_sigma=0, pool=pool)
    assert svc.call(5.0).ok
    r = svc.call(5.0)
    assert (r.ok, r.error, r.latency_s) == (False, "rejected", 0.0)
    assert len(sim.trace.times("dep", "call")) == 1 and len(sim.trace.times("dep", "rejected")) == 1


def test_a_timed_out_caller_leaves_its_worker_busy_until_the_work_ends():
    sim = Sim(1)
    svc = Service(sim, "dep", latency_s=2.0, latency_sigma=0, pool=WorkerPool(1, max_wait_s=0))
    r = svc.call(0.2)
    assert (r.ok, r.error, r.latency_s) == (False, "timeout", 0.2)
    sim.advance(1.0)
    assert svc.busy_workers() == 1 and svc.call(0.2).error == "rejected"
    sim.advance(1.0)
    assert svc.call(0.2).error == "timeout"     # the worker came back at 2.0 s, not at 0.2 s


def test_services_sharing_one_pool_take_each_others_workers():
    sim = Sim(1)
    shared = WorkerPool(2, max_wait_s=0)
    slow = Service(sim, "slow", latency_s=5.0, latency_sigma=0, pool=shared)
    fast = Service(sim, "fast", latency_s=0.01, latency_sigma=0, pool=shared)
    slow.call(), slow.call()
    assert fast.call().error == "rejected"
    own = Service(sim, "own", latency_s=0.01, latency_sigma=0, pool=WorkerPool(1, max_wait_s=0))
    assert own.call().ok


def test_caller_threads_are_held_while_waiting_for_a_worker():
    sim = Sim(1)
    threads = WorkerPool(2)
    slow = Service(sim, "slow", latency_s=1.0, latency_sigma=0, pool=WorkerPool(1), caller_threads=threads)
    fast = Service(sim, "fast", latency_s=0.01, latency_sigma=0, pool=WorkerPool(5), caller_threads=threads)
    slow.call(), slow.call()        # one runs, one waits for the slow pool on a caller's thread
    r = fast.call()
    assert r.ok and r.latency_s == pytest.approx(1.01)   # no thread free until 1.0 s
    with pytest.raises(ValueError, match="caller_threads"):
        Service(sim, "x", caller_threads=WorkerPool(2, max_wait_s=0))


def test_faults_apply_by_when_the_work_starts_on_a_shared_pool():
    sim = Sim(1)
    svc = Service(sim, "dep", latency_s=0.1, latency_sigma=0, faults=[LatencySpike(0.5, 1.0, factor=10)],
                  pool=WorkerPool(1))
    sim.advance(0.6)
    assert svc.call().latency_s == pytest.approx(1.0)


@pytest.mark.parametrize("core,mx,cap,expected", [
    # The rule's surprise: with core=1, max=8 and room in the queue, no second thread ever starts.
    (1, 8, 100, ["run", "queue", "queue", "queue", "queue"]),
    (2, 4, 3, ["run", "run", "queue", "queue", "queue"]),
    (1, 3, 0, ["run", "extra", "extra", "reject", "reject"]),   # a SynchronousQueue
])
def test_thread_pool_follows_java_execute(core, mx, cap, expected):
    got = executor_timeline(core, mx, cap, [(i * 0.001, 1.0) for i in range(5)])
    assert [a for a, _ in got] == expected


def test_an_extra_thread_runs_the_new_task_and_then_drains_the_queue():
    got = executor_timeline(2, 4, 3, [(i * 0.001, 0.1) for i in range(10)])
    assert [a for a, _ in got] == ["run", "run", "queue", "queue", "queue", "extra", "extra",
                                   "reject", "reject", "reject"]
    starts = [s for _, s in got]
    assert starts[5] == pytest.approx(0.005)            # the new task, not the oldest queued one
    assert starts[2] == pytest.approx(0.1) and starts[4] == pytest.approx(0.105)  # the extra thread took task 4
    assert starts[7] is None


def test_thread_pool_reuses_idle_threads_and_retires_extra_ones_after_keep_alive():
    sim = Sim(0)
    pool = ThreadPool(sim, core=1, max_threads=2, queue_capacity=0, keep_alive_s=1.0)
    assert pool.submit(0.1) == "run" and pool.submit(0.1) == "extra"
    sim.advance(0.5)
    assert pool.threads == 2 and pool.busy == 0 and pool.submit(0.1) == "run"   # a hand-off to an idle thread
    sim.advance(3.0)
    assert pool.threads == 1
    with pytest.raises(ValueError, match="max_threads"):
        ThreadPool(sim, core=4, max_threads=2, queue_capacity=1)


def test_drive_traffic_records_each_kind_under_its_own_name_with_the_error():
    sim = Sim(3)
    for kind, latency, workers in (("a", 0.01, 10), ("b", 3.0, 2)):
        svc = Service(sim, f"dep-{kind}", latency_s=latency, latency_sigma=0,
                      pool=WorkerPool(workers, max_wait_s=0))
        drive_traffic(sim, svc, rate_rps=20, until_s=5, timeout_s=1.0, client=kind)
    sim.run(until=20)
    errors_a = [f["error"] for f in sim.trace.fields("a", "request")]
    errors_b = [f["error"] for f in sim.trace.fields("b", "request")]
    assert errors_a.count(None) == len(errors_a) > 50
    assert set(errors_b) == {"timeout", "rejected"} and errors_b.count("rejected") > 50
