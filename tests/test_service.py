"""labkit.service: the downstream mock with a FIFO worker pool, errors and scheduled faults (lesson 03)."""
import math
import random
import statistics

import pytest

from labkit.clock import Sim
from labkit.service import ErrorBurst, LatencySpike, Outage, Response, Service, WorkerPool


def service(seed=0, **kwargs):
    """A deterministic service by default: fixed 100 ms service time, one worker."""
    kwargs = {"latency_s": 0.1, "latency_sigma": 0, "max_concurrency": 1, **kwargs}
    sim = Sim(seed)
    return sim, Service(sim, **kwargs)


def calls_at(sim, svc, times, **call_kwargs):
    """Call the service at each time; returns the responses in call order."""
    out = []
    for t in times:
        sim.at(t, lambda: out.append(svc.call(**call_kwargs)))
    sim.run()
    return out


# --- validation ---------------------------------------------------------------------------------

@pytest.mark.parametrize("kwargs, error, message", [
    ({"latency_s": 0}, ValueError, r"latency_s must be in \(0, 3600\], got 0"),
    ({"latency_s": math.nan}, ValueError, r"latency_s must be a number in \(0, 3600\], got nan"),
    ({"latency_s": "0.05"}, TypeError, r"latency_s must be a number in \(0, 3600\], got '0.05'"),
    ({"latency_sigma": -0.1}, ValueError, r"latency_sigma must be in \[0, 3\], got -0.1"),
    ({"latency_sigma": 3.5}, ValueError, r"latency_sigma must be in \[0, 3\], got 3.5"),
    ({"error_rate": 1.2}, ValueError, r"error_rate must be in \[0, 1\], got 1.2"),
    ({"error_rate": True}, TypeError, r"error_rate must be a number in \[0, 1\], got True"),
    ({"max_concurrency": 0}, ValueError, r"max_concurrency must be in \[1, 100000\], got 0"),
    ({"max_concurrency": 10**12}, ValueError, r"max_concurrency must be in \[1, 100000\], got 1000000000000"),
    ({"max_concurrency": 2.0}, TypeError, r"max_concurrency must be an int in \[1, 100000\], got 2.0"),
    ({"name": ""}, ValueError, r"name must be a non-empty string, got ''"),
    ({"name": None}, TypeError, r"name must be a non-empty string, got None"),
    ({"faults": [("outage", 0, 10)]}, TypeError, r"faults must hold Outage, ErrorBurst or LatencySpike, got \('outage'"),
    ({"faults": Outage(0, 10)}, TypeError, r"faults must be a list of faults, got the single fault Outage"),
    ({"faults": None}, TypeError, r"faults must be a list of Outage, ErrorBurst or LatencySpike, got None"),
])
def test_service_arguments_are_validated(kwargs, error, message):
    with pytest.raises(error, match=message):
        Service(Sim(), **kwargs)


def test_service_needs_a_sim():
    with pytest.raises(TypeError, match="sim must be a labkit Sim"):
        Service(object())


@pytest.mark.parametrize("timeout_s, error", [(0, ValueError), (-1, ValueError), (-0.5, ValueError),
                                              (math.nan, ValueError), (math.inf, ValueError),
                                              ("1", TypeError), (True, TypeError)])
def test_a_call_refuses_a_timeout_that_is_not_a_positive_finite_number(timeout_s, error):
    # A negative timeout used to come back as a negative latency.
    sim, svc = service()
    with pytest.raises(error, match=f"timeout_s must be (a number )?> 0, got {timeout_s!r}"):
        svc.call(timeout_s)
    assert [svc.call(t).ok for t in (1, 1.0, None)] == [True] * 3  # an int, a float or no timeout


@pytest.mark.parametrize("make, message", [
    (lambda: Outage(5, 3), r"end_s must be > 5, got 3"),
    (lambda: Outage(5, 5), r"end_s must be > 5, got 5"),
    (lambda: Outage(-1, 3), r"start_s must be >= 0, got -1"),
    (lambda: Outage(0, 3, hang_s=-1), r"hang_s must be >= 0, got -1"),
    (lambda: ErrorBurst(0, 10, error_rate=1.5), r"error_rate must be in \[0, 1\], got 1.5"),
    (lambda: LatencySpike(0, 10, factor=0), r"factor must be > 0, got 0"),
    (lambda: LatencySpike(0, 10, factor=-2), r"factor must be > 0, got -2"),
])
def test_fault_windows_are_validated(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_fault_window_is_half_open():
    outage = Outage(2, 4)
    assert [outage.active(t) for t in (1.99, 2, 3.99, 4)] == [False, True, True, False]


# --- the worker pool ----------------------------------------------------------------------------

def test_one_worker_serves_calls_first_come_first_served():
    sim, svc = service()
    responses = calls_at(sim, svc, [0, 0, 0])
    assert [r.latency_s for r in responses] == pytest.approx([0.1, 0.2, 0.3])
    assert all(r.ok and r.error is None for r in responses)
    assert sim.trace.values("queued_s", "backend", "call") == pytest.approx([0, 0.1, 0.2])
    assert sim.trace.values("service_s", "backend", "call") == pytest.approx([0.1] * 3)


def test_a_worker_freed_before_the_next_call_means_no_queueing():
    sim, svc = service()
    responses = calls_at(sim, svc, [0, 0.1, 0.5])
    assert [r.latency_s for r in responses] == pytest.approx([0.1, 0.1, 0.1])
    assert sim.trace.values("queued_s") == pytest.approx([0, 0, 0])


def test_parallel_workers_take_the_earliest_free_one():
    sim, svc = service(max_concurrency=2)
    responses = calls_at(sim, svc, [0, 0, 0, 0, 0])
    assert [r.latency_s for r in responses] == pytest.approx([0.1, 0.1, 0.2, 0.2, 0.3])


def test_busy_workers_counts_the_pool_in_use():
    sim, svc = service(max_concurrency=3)
    svc.call(), svc.call()
    assert svc.busy_workers() == 2
    sim.run(until=0.1)
    assert svc.busy_workers() == 0


def test_a_timeout_returns_at_the_timeout_but_the_worker_stays_busy():
    sim, svc = service(latency_s=1.0)
    first, second = calls_at(sim, svc, [0, 0.2], timeout_s=5)
    assert first == Response(True, 1.0, None)
    assert second.latency_s == pytest.approx(1.8)  # queued behind the first until t=1
    sim, svc = service(latency_s=1.0)
    first, second = calls_at(sim, svc, [0, 0.2], timeout_s=0.5)
    assert first == Response(False, 0.5, "timeout")
    assert second == Response(False, 0.5, "timeout")
    assert sim.trace.values("queued_s") == pytest.approx([0, 0.8])  # the abandoned work still ran
    assert sim.trace.values("ok") == [True, True]  # the service itself saw success


def test_a_call_that_finishes_exactly_at_the_timeout_succeeds():
    _, svc = service(latency_s=0.5)
    assert svc.call(timeout_s=0.5) == Response(True, 0.5, None)


# --- faults -------------------------------------------------------------------------------------

def test_an_outage_fails_calls_and_holds_a_worker_for_hang_s():
    sim, svc = service(faults=[Outage(1, 3, hang_s=2)])
    before, during, queued, after = calls_at(sim, svc, [0.5, 1.0, 1.5, 3.5])
    assert before == Response(True, pytest.approx(0.1), None)
    assert during == Response(False, 2, "outage")
    # Queued behind the hung call, it starts at t=3, when the outage has ended.
    assert queued == Response(True, pytest.approx(1.6), None)
    assert after.ok
    assert sim.trace.values("service_s") == pytest.approx([0.1, 2, 0.1, 0.1])


def test_an_outage_call_that_times_out_reports_the_timeout():
    sim, svc = service(faults=[Outage(0, 10, hang_s=5)])
    assert calls_at(sim, svc, [0], timeout_s=1) == [Response(False, 1, "timeout")]


def test_an_error_burst_fails_about_error_rate_of_the_calls_inside_its_window():
    sim, svc = service(seed=3, max_concurrency=100_000, faults=[ErrorBurst(10, 20, error_rate=0.3)])
    inside = calls_at(sim, svc, [10 + i / 1000 for i in range(5000)])
    outside = calls_at(sim, svc, [20 + i / 1000 for i in range(1000)])
    share = sum(not r.ok for r in inside) / len(inside)
    assert share == pytest.approx(0.3, abs=0.03)
    assert {r.error for r in inside} == {None, "error"}
    assert all(r.ok for r in outside)


def test_the_base_error_rate_applies_everywhere():
    sim, svc = service(seed=4, max_concurrency=100_000, error_rate=0.1)
    responses = calls_at(sim, svc, [i / 100 for i in range(5000)])
    assert sum(not r.ok for r in responses) / len(responses) == pytest.approx(0.1, abs=0.02)


def test_a_latency_spike_multiplies_the_service_time_inside_its_window():
    sim, svc = service(max_concurrency=10, faults=[LatencySpike(1, 2, factor=10)])
    responses = calls_at(sim, svc, [0.5, 1.5, 2.5])
    assert [r.latency_s for r in responses] == pytest.approx([0.1, 1.0, 0.1])
    assert all(r.ok for r in responses)


def test_faults_are_judged_when_the_call_starts_not_when_it_arrives():
    sim, svc = service(faults=[LatencySpike(0.05, 1, factor=10)])
    first, second = calls_at(sim, svc, [0, 0])  # the second starts at 0.1, inside the spike
    assert [first.latency_s, second.latency_s] == pytest.approx([0.1, 0.1 + 1.0])


# --- latency distribution and capacity -----------------------------------------------------------

def test_lognormal_service_times_have_the_configured_median():
    sim, svc = service(seed=5, latency_s=0.05, latency_sigma=0.5, max_concurrency=100_000)
    calls_at(sim, svc, [0] * 4000)
    times = sim.trace.values("service_s")
    assert statistics.median(times) == pytest.approx(0.05, rel=0.05)
    assert statistics.fmean(times) == pytest.approx(0.05 * math.exp(0.5 ** 2 / 2), rel=0.05)
    assert len(set(times)) == len(times)


def test_service_times_are_the_random_modules_lognormal_draws_to_the_last_bit():
    # Each call's service time is one rng.lognormvariate draw from the sim's RNG, in call order.
    sim, svc = service(seed=9, latency_s=0.05, latency_sigma=0.7, max_concurrency=100_000)
    calls_at(sim, svc, [0] * 500)
    reference = random.Random(9)
    assert sim.trace.values("service_s") == [reference.lognormvariate(math.log(0.05), 0.7) for _ in range(500)]


def test_same_seed_same_latencies():
    def latencies(seed):
        sim, svc = service(seed=seed, latency_sigma=0.5, max_concurrency=8)
        return [r.latency_s for r in calls_at(sim, svc, [i / 10 for i in range(50)])]

    assert latencies(1) == latencies(1) != latencies(2)


@pytest.mark.parametrize("kwargs, expected", [
    ({"latency_s": 0.05, "latency_sigma": 0, "max_concurrency": 20}, 400),
    ({"latency_s": 0.1, "latency_sigma": 0, "max_concurrency": 1}, 10),
    ({"latency_s": 0.05, "latency_sigma": 0.5, "max_concurrency": 20}, 400 / math.exp(0.125)),
])
def test_capacity_is_workers_over_mean_service_time(kwargs, expected):
    assert Service(Sim(), **kwargs).capacity_rps == pytest.approx(expected)


def test_repr_names_the_service():
    assert repr(Service(Sim(), "db", faults=[Outage(0, 1)])) == (
        "Service('db', latency_s=0.05, max_concurrency=20, faults=1)")


def test_worker_pool_serves_first_come_first_served_on_the_earliest_free_worker():
    pool = WorkerPool(2)
    assert pool.admit(0.0, 1.0) == (0.0, 1.0)
    assert pool.admit(0.0, 3.0) == (0.0, 3.0)
    assert pool.next_start(0.5) == 1.0 and pool.busy(0.5) == 2
    assert pool.admit(0.5, 1.0) == (1.0, 2.0)      # waits for the first worker
    assert pool.admit(5.0, 1.0) == (5.0, 6.0)      # both idle by then
    assert pool.busy(5.5) == 1                      # the other finished at 3.0
    with pytest.raises(ValueError, match="workers must be"):
        WorkerPool(0)
