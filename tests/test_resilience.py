"""labkit.resilience and labkit.traffic: the reference CircuitBreaker and the retry-storm simulation; lk.breaker, the
lesson's Play panel (lesson 03)."""
import math

import pytest

import labkit as lk
from labkit.clock import Sim
from labkit.resilience import CLOSED, HALF_OPEN, OPEN, STATES, CircuitBreaker
from labkit.traffic import simulate_calls


def fail(breaker, times=1):
    """Admit and fail `times` calls (asserting each was admitted)."""
    for _ in range(times):
        assert breaker.allow_request()
        breaker.on_failure()


def succeed(breaker, times=1):
    for _ in range(times):
        assert breaker.allow_request()
        breaker.on_success()


def opened(sim, **kwargs):
    """A breaker tripped open at the current time (one failure is enough with failure_threshold=1)."""
    breaker = CircuitBreaker(sim, failure_threshold=1, **kwargs)
    fail(breaker)
    assert breaker.state == OPEN
    return breaker


# --- closed -> open -----------------------------------------------------------------------------

@pytest.mark.parametrize("threshold", [1, 3, 5])
def test_opens_at_exactly_failure_threshold_consecutive_failures(threshold):
    breaker = CircuitBreaker(Sim(), failure_threshold=threshold)
    fail(breaker, threshold - 1)
    assert breaker.state == CLOSED
    fail(breaker)
    assert breaker.state == OPEN
    assert breaker.allow_request() is False


def test_a_success_resets_the_consecutive_failure_count():
    breaker = CircuitBreaker(Sim(), failure_threshold=3)
    for _ in range(5):
        fail(breaker, 2)
        succeed(breaker)
    assert breaker.state == CLOSED


# --- open -> half_open, lazily ------------------------------------------------------------------

def test_open_rejects_until_recovery_timeout_then_the_next_call_half_opens():
    sim = Sim()
    breaker = opened(sim, recovery_timeout_s=10)
    sim.advance(9.99)
    assert breaker.allow_request() is False and breaker.state == OPEN
    sim.advance(0.01)
    assert breaker.state == OPEN  # lazy: the timeout passing changes nothing by itself
    assert breaker.allow_request() is True
    assert breaker.state == HALF_OPEN


def test_without_calls_the_breaker_stays_open_forever():
    sim = Sim()
    breaker = opened(sim, recovery_timeout_s=1)
    sim.advance(1000)
    assert breaker.state == OPEN


@pytest.mark.parametrize("max_calls", [1, 3])
def test_half_open_admits_at_most_half_open_max_calls_trials(max_calls):
    sim = Sim()
    breaker = opened(sim, recovery_timeout_s=1, half_open_max_calls=max_calls, success_threshold=10)
    sim.advance(1)
    assert [breaker.allow_request() for _ in range(max_calls + 2)] == [True] * max_calls + [False, False]
    assert breaker.state == HALF_OPEN
    breaker.on_success()  # one trial came back: its slot is free again
    assert breaker.allow_request() is True and breaker.allow_request() is False


@pytest.mark.parametrize("needed", [1, 3])
def test_success_threshold_trial_successes_close_it(needed):
    sim = Sim()
    breaker = opened(sim, recovery_timeout_s=1, success_threshold=needed)
    sim.advance(1)
    for trial in range(1, needed + 1):
        assert breaker.allow_request() and breaker.state == HALF_OPEN
        breaker.on_success()
        assert breaker.state == (CLOSED if trial == needed else HALF_OPEN)
    fail(breaker)  # failure_threshold=1: closed again, with a fresh count
    assert breaker.state == OPEN


def test_a_failed_trial_reopens_and_restarts_the_timeout():
    sim = Sim()
    breaker = opened(sim, recovery_timeout_s=10, success_threshold=2)
    sim.advance(10)
    succeed(breaker)  # one good trial is not enough
    sim.advance(2)
    fail(breaker)
    assert breaker.state == OPEN
    sim.advance(9.5)  # 21.5 s since the first opening, 9.5 s since the re-opening
    assert breaker.allow_request() is False
    sim.advance(0.5)
    assert breaker.allow_request() is True and breaker.state == HALF_OPEN


@pytest.mark.parametrize("late", ["on_success", "on_failure"])
def test_late_outcomes_while_open_change_nothing(late):
    sim = Sim()
    breaker = opened(sim, recovery_timeout_s=5)
    sim.advance(3)
    for _ in range(10):
        getattr(breaker, late)()
    assert breaker.state == OPEN
    assert breaker.allow_request() is False
    sim.advance(2)  # the timeout still counts from the opening, not from the late outcomes
    assert breaker.allow_request() is True and breaker.state == HALF_OPEN


# --- rate mode ----------------------------------------------------------------------------------

def rate_breaker(**kwargs):
    return CircuitBreaker(Sim(), **{"failure_rate_threshold": 0.5, "window_size": 10, "minimum_calls": 10, **kwargs})


def test_rate_mode_computes_no_rate_below_minimum_calls():
    breaker = rate_breaker()
    fail(breaker, 9)
    assert breaker.state == CLOSED


def test_rate_mode_opens_at_exactly_the_threshold():
    breaker = rate_breaker()
    succeed(breaker, 5)
    fail(breaker, 4)
    assert breaker.state == CLOSED
    fail(breaker)  # 5 failures in 10 calls: 50 % >= 50 %
    assert breaker.state == OPEN


def test_rate_mode_just_below_the_threshold_stays_closed():
    breaker = rate_breaker(failure_rate_threshold=0.6)
    succeed(breaker, 5)
    fail(breaker, 5)
    assert breaker.state == CLOSED


def test_rate_mode_forgets_outcomes_older_than_the_window():
    breaker = rate_breaker(window_size=4, minimum_calls=4)
    fail(breaker)
    succeed(breaker, 3)
    fail(breaker)  # window: S S S F, the first failure slid out -> 25 %
    assert breaker.state == CLOSED
    fail(breaker)  # S S F F -> 50 %
    assert breaker.state == OPEN


def test_rate_mode_ignores_consecutive_failures():
    breaker = rate_breaker(failure_threshold=2, failure_rate_threshold=0.9)
    succeed(breaker, 5)
    fail(breaker, 3)
    assert breaker.state == CLOSED


def test_rate_mode_checks_the_rate_after_a_success_too():
    # resilience4j re-evaluates after every recorded call: 9 failures then a success is 90 % of
    # minimum_calls=10 calls, so the breaker opens before admitting an 11th call.
    breaker = rate_breaker()
    fail(breaker, 9)
    succeed(breaker)
    assert breaker.state == OPEN


# --- validation ---------------------------------------------------------------------------------

@pytest.mark.parametrize("kwargs, message", [
    ({"recovery_timeout_s": -3}, r"recovery_timeout_s must be > 0, got -3"),
    ({"recovery_timeout_s": 0}, r"recovery_timeout_s must be > 0, got 0"),
    ({"failure_threshold": 0}, r"failure_threshold must be >= 1, got 0"),
    ({"failure_threshold": 2.5}, r"failure_threshold must be an int >= 1, got 2.5"),
    ({"success_threshold": 0}, r"success_threshold must be >= 1, got 0"),
    ({"half_open_max_calls": 0}, r"half_open_max_calls must be >= 1, got 0"),
    ({"failure_rate_threshold": 0}, r"failure_rate_threshold must be in \(0, 1\], got 0"),
    ({"failure_rate_threshold": 1.5}, r"failure_rate_threshold must be in \(0, 1\], got 1.5"),
    ({"window_size": 0}, r"window_size must be >= 1, got 0"),
    ({"minimum_calls": 30}, r"minimum_calls must be in \[1, 20\], got 30"),
])
def test_breaker_arguments_are_validated(kwargs, message):
    with pytest.raises(ValueError, match=message):
        CircuitBreaker(Sim(), **kwargs)


def test_breaker_needs_a_clock():
    with pytest.raises(TypeError, match=r"clock must have a numeric \.now attribute"):
        CircuitBreaker(42)


# --- simulate_calls: the retry storm --------------------------------------------------------------

def with_breaker(clock):
    return CircuitBreaker(clock, failure_threshold=5, recovery_timeout_s=5)


@pytest.fixture(scope="module")
def runs():
    return {
        "no retries": simulate_calls(seed=1, retries=0),
        "retries": simulate_calls(seed=1, retries=3),
        "retries + breaker": simulate_calls(seed=1, retries=3, breaker=with_breaker),
    }


def test_retries_multiply_the_calls_that_hit_the_dead_service(runs):
    plain, storm = runs["no retries"].summary(), runs["retries"].summary()
    assert storm["calls_during_outage"] > 3 * plain["calls_during_outage"]
    assert storm["requests"] == pytest.approx(plain["requests"], rel=0.05)  # same offered traffic


def test_the_retry_storm_delays_recovery(runs):
    storm, guarded = runs["retries"].recovery_s(), runs["retries + breaker"].recovery_s()
    assert storm > runs["no retries"].recovery_s()
    assert storm > guarded + 10


def test_a_breaker_keeps_calls_away_from_the_dead_service(runs):
    storm, guarded = runs["retries"].summary(), runs["retries + breaker"].summary()
    assert guarded["calls_during_outage"] < 0.05 * storm["calls_during_outage"]
    assert guarded["fallback_rate"] > 0.2 and guarded["failed_rate"] < 0.01


def test_summary_reports_the_headline_numbers(runs):
    summary = runs["retries"].summary()
    assert set(summary) == {"requests", "success_rate", "fallback_rate", "failed_rate", "service_calls",
                            "calls_during_outage", "p99_ms", "recovery_s"}
    assert summary["requests"] == pytest.approx(25 * 90, rel=0.05)  # the default traffic: 25 requests/s for 90 s
    assert summary["success_rate"] + summary["fallback_rate"] + summary["failed_rate"] == pytest.approx(1)
    assert summary["service_calls"] == runs["retries"].trace.count("backend", "call")
    summary["requests"] = -1  # a copy: the run's own summary is unchanged
    assert runs["retries"].summary()["requests"] > 0


def test_every_request_is_recorded_once_with_its_outcome(runs):
    for run in runs.values():
        outcomes = run.column("client", "request", "outcome")
        assert len(outcomes) == run.summary()["requests"]
        assert set(outcomes) <= {"ok", "fallback", "failed"}
        assert run.trace.count("backend", "call") == sum(run.column("client", "request", "attempts"))


def test_recovery_is_nan_without_an_outage():
    run = simulate_calls(seed=2, duration_s=20, outage_s=0)
    assert run.outage is None
    assert math.isnan(run.recovery_s()) and math.isnan(run.summary()["recovery_s"])
    assert run.summary()["success_rate"] == 1.0


def test_recovery_is_inf_when_the_outage_lasts_to_the_end():
    run = simulate_calls(seed=2, duration_s=30, outage_start_s=10, outage_s=20)
    assert run.recovery_s() == math.inf


def test_state_intervals_cover_the_run(runs):
    run = runs["retries + breaker"]
    intervals = run.state_intervals()
    assert intervals[0][0] == 0 and intervals[0][2] == CLOSED
    assert intervals[-1][1] == run.duration_s
    assert all(a[1] == b[0] for a, b in zip(intervals, intervals[1:]))  # contiguous
    assert all(a[2] != b[2] for a, b in zip(intervals, intervals[1:]))  # one entry per change
    assert all(start < end for start, end, _ in intervals)
    assert {state for *_, state in intervals} == set(STATES)
    assert runs["retries"].state_intervals() == []


def test_state_intervals_stay_inside_the_run_when_the_breaker_changes_after_the_end():
    run = simulate_calls(seed=1, duration_s=30, outage_start_s=10, outage_s=20, retries=2,
                         breaker=lambda clock: CircuitBreaker(clock, recovery_timeout_s=0.5))
    assert max(e.time_s for e in run.trace.select("breaker", "state")) > run.duration_s  # the trigger
    intervals = run.state_intervals()
    assert all(0 <= start < end <= run.duration_s for start, end, _ in intervals)
    assert intervals[-1][1] == run.duration_s


def test_drive_traffic_asks_the_breaker_and_falls_back_when_refused():
    class Refuse:
        state = OPEN

        def allow_request(self):
            return False

        def on_success(self):
            raise AssertionError("a refused call has no outcome")

        on_failure = on_success

    sim = Sim(1)
    service = lk.Service(sim)
    lk.drive_traffic(sim, service, rate_rps=20, until_s=10, breaker=Refuse())
    sim.run()
    outcomes = sim.trace.values("outcome", "client", "request")
    assert len(outcomes) > 100 and set(outcomes) == {"fallback"}
    assert sim.trace.count("backend") == 0


def test_drive_traffic_refuses_a_breaker_it_cannot_report_outcomes_to():
    class AllowOnly:
        def allow_request(self):
            return True

    sim = Sim(1)
    with pytest.raises(TypeError, match=r"breaker must have allow_request\(\), on_success\(\) and on_failure\(\)"):
        lk.drive_traffic(sim, lk.Service(sim), rate_rps=20, until_s=10, breaker=AllowOnly())
    assert sim.pending == 0


@pytest.mark.parametrize("kwargs, message", [
    ({"rate_rps": 0}, r"rate_rps must be in \(0, 5000\], got 0"),
    ({"rate_rps": -5}, r"rate_rps must be in \(0, 5000\], got -5"),
    ({"retries": 11}, r"retries must be in \[0, 10\], got 11"),
    ({"retries": 1.5}, r"retries must be an int in \[0, 10\], got 1.5"),
    ({"duration_s": 0.5}, r"duration_s must be in \[1, 3600\], got 0.5"),
    ({"timeout_s": 0}, r"timeout_s must be in \(0, 60\], got 0"),
    ({"outage_s": 100}, r"outage_s must be in \[0, 90\], got 100"),
    ({"outage_start_s": -1}, r"outage_start_s must be in \[0, 90\), got -1"),
    ({"outage_start_s": 90}, r"outage_start_s must be in \[0, 90\), got 90"),
    ({"outage_start_s": 90, "outage_s": 0}, None),
])
def test_simulate_calls_arguments_are_validated(kwargs, message):
    if message is None:  # an outage of 0 s may start anywhere: there is none
        assert simulate_calls(**kwargs).outage is None
        return
    with pytest.raises(ValueError, match=message):
        simulate_calls(**kwargs)


@pytest.mark.parametrize("kwargs, words", [
    ({"rate_rps": 100}, ("rate_rps must be", "[5, 80]", "got 100")),
    ({"outage_s": 61}, ("outage_s must be", "[0, 60]", "got 61")),
    ({"retries": 6}, ("retries must be", "[0, 5]", "got 6")),
    ({"retries": 1.5}, ("retries must be an int", "[0, 5]", "got 1.5")),
])
def test_the_lessons_simulate_checks_the_traffic_knobs_ranges(kwargs, words):
    with pytest.raises(ValueError) as err:
        lk.breaker.simulate(**kwargs)
    for word in words:
        assert word in str(err.value)


# --- lk.breaker.PANEL: the Play panel -------------------------------------------------------------

def test_breaker_panel_runs_both_and_caches_the_baseline():
    panel = lk.breaker.PANEL
    panel.cache_clear()
    first = panel.runs(rate_rps=20, outage_s=10, retries=2)
    assert list(first) == ["without breaker", "with breaker"]
    assert first["without breaker"].trace.count("breaker") == 0
    assert first["with breaker"].trace.count("breaker") > 0
    second = panel.runs(rate_rps=20, outage_s=10, retries=2, failure_threshold=2, recovery_timeout_s=1)
    assert second["without breaker"] is first["without breaker"]  # only a breaker knob moved
    assert second["with breaker"] is not first["with breaker"]
    assert panel.cache_info().hits == 1 and panel.cache_info().misses == 1
    third = panel.runs(rate_rps=20, outage_s=10, retries=1)
    assert third["without breaker"] is not first["without breaker"]  # a traffic knob moved
    assert panel.cache_info().misses == 2
    panel.cache_clear()
    assert panel.cache_info().currsize == 0


def test_breaker_panel_baseline_is_a_plain_simulate_calls_run():
    runs = lk.breaker.PANEL.runs(rate_rps=20, outage_s=10, retries=2)
    fresh = simulate_calls(seed=1, rate_rps=20, outage_s=10, retries=2)   # the panel runs seed 1
    assert runs["without breaker"].trace.to_rows() == fresh.trace.to_rows()


@pytest.mark.parametrize("knobs, words", [
    ({"failure_threshold": 0}, ("failure_threshold must be", "[1, 50]", "got 0")),
    ({"rate_rps": 100}, ("rate_rps must be", "[5, 80]", "got 100")),
    ({"seed": 12}, ("seed is not a knob", "failure_threshold")),
])
def test_breaker_panel_names_a_bad_knob(knobs, words):
    with pytest.raises(ValueError) as err:
        lk.breaker.PANEL.runs(**knobs)
    for word in words:
        assert word in str(err.value)


@pytest.mark.parametrize("runs, message", [
    ({}, "runs must be a non-empty dict of label -> run"),
    ({"no breaker": lk.breaker.PANEL.runs}, "runs must map labels to what lk.breaker.simulate returns"),
])
def test_summarize_names_what_it_needs(runs, message):
    with pytest.raises(ValueError, match=message):
        lk.breaker.summarize(runs)
