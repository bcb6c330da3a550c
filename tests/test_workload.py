"""labkit.workload: Zipf keys, read/write mix, arrival shapes, read-your-write follow-ups (lessons 01, 02)."""
import math

import pytest
from hypothesis import given, settings, strategies as st

from labkit.clock import Sim
from labkit.workload import Bursty, Diurnal, Op, Steady, Zipf, arrivals, drive_workload, make_workload


def test_same_seed_same_ops():
    a = make_workload(Sim(5), duration_s=10, rate=50, read_after_write_s=0.1)
    b = make_workload(Sim(5), duration_s=10, rate=50, read_after_write_s=0.1)
    c = make_workload(Sim(6), duration_s=10, rate=50, read_after_write_s=0.1)
    assert a == b and a != c


def test_zipf_matches_the_harmonic_formula():
    # Ideal top-C hit ratio H(C,s)/H(N,s), from the domain notes' table (N = 100,000).
    for s, c, expected in [(0.8, 100, 0.179), (1.0, 1000, 0.619), (1.2, 10_000, 0.943)]:
        assert Zipf(100_000, s).top_share(c) == pytest.approx(expected, abs=0.0005)
    z = Zipf(10, 0)
    assert [z.probability(k) for k in range(1, 11)] == pytest.approx([0.1] * 10)
    assert z.probability(0) == z.probability(11) == 0.0 and z.top_share(0) == 0.0


def test_zipf_samples_follow_the_distribution():
    sim, z = Sim(1), Zipf(100, 1.0)
    draws = [z.sample(sim.rng) for _ in range(20_000)]
    assert min(draws) == 1 and max(draws) <= 100
    assert draws.count(1) / len(draws) == pytest.approx(z.probability(1), abs=0.01)


def test_skew_knob_concentrates_keys():
    def top10_share(s):
        ops = make_workload(Sim(2), duration_s=50, rate=200, n_keys=1000, zipf_s=s)
        return sum(op.key <= 10 for op in ops) / len(ops)

    assert top10_share(0) == pytest.approx(0.01, abs=0.005)
    assert top10_share(1.2) == pytest.approx(Zipf(1000, 1.2).top_share(10), abs=0.01)
    assert top10_share(1.2) > 0.5


def test_read_write_mix():
    ops = make_workload(Sim(3), duration_s=100, rate=100, write_fraction=0.2)
    assert {op.op for op in ops} == {"read", "write"}
    assert sum(op.op == "write" for op in ops) / len(ops) == pytest.approx(0.2, abs=0.02)
    assert all(not op.after_write for op in ops)
    assert all(op.op == "read" for op in make_workload(Sim(3), duration_s=10, rate=100, write_fraction=0))


def test_every_write_is_followed_by_a_read_of_the_same_key():
    ops = make_workload(Sim(4), duration_s=20, rate=50, write_fraction=0.3, read_after_write_s=0.05)
    follow = [op for op in ops if op.after_write]
    writes = [op for op in ops if op.op == "write"]
    assert len(follow) == len(writes) > 0
    assert [(w.time_s + 0.05, w.key) for w in writes] == [(r.time_s, r.key) for r in follow]
    assert all(r.op == "read" for r in follow)
    assert [op.time_s for op in ops] == sorted(op.time_s for op in ops)


def test_steady_rate_gives_the_expected_count():
    ops = make_workload(Sim(5), duration_s=100, rate=Steady(100))
    assert len(ops) == pytest.approx(10_000, rel=0.05)
    assert all(0 <= op.time_s < 100 for op in ops)


def test_diurnal_peaks_and_troughs():
    times = arrivals(Sim(6).rng, Diurnal(100, amplitude=0.8, period_s=20), 0, 200)
    rising = sum(1 for t in times if (t % 20) < 10)   # sin > 0: above the mean
    falling = len(times) - rising
    assert len(times) == pytest.approx(20_000, rel=0.05)
    # Expected shares: (1 +- 2*0.8/pi) / 2 = 0.755 / 0.245.
    assert rising / len(times) == pytest.approx(0.5 + 0.8 / math.pi, abs=0.02)
    assert falling < rising


def test_bursty_is_silent_between_bursts():
    shape = Bursty(on_rps=500, off_rps=0, on_s=1, off_s=4)
    times = arrivals(Sim(7).rng, shape, 0, 50)
    assert all(t % 5 < 1 for t in times)
    assert len(times) == pytest.approx(10 * 500, rel=0.1)


def test_workload_starts_now():
    sim = Sim(0)
    sim.advance(100)
    ops = make_workload(sim, duration_s=1, rate=100)
    assert all(100 <= op.time_s < 101 for op in ops)


def test_drive_workload_calls_the_handler_at_each_op_time_with_one_queued_event():
    sim = Sim(8)
    ops = make_workload(sim, duration_s=5, rate=100, read_after_write_s=0.0)
    seen, queued = [], []

    def handler(op):
        seen.append((sim.now, op))
        queued.append(sim.pending)

    drive_workload(sim, ops, handler)
    assert sim.pending == 1
    sim.run()
    assert [op for _, op in seen] == ops
    assert all(now == op.time_s for now, op in seen)
    assert max(queued) == 0  # the next op is queued only after this one ran
    drive_workload(sim, [], handler)
    assert sim.pending == 0


@pytest.mark.parametrize("kwargs, message", [
    (dict(duration_s=0), "duration_s must be > 0, got 0"),
    (dict(duration_s=1, rate=-5), "rate_rps must be > 0, got -5"),
    (dict(duration_s=1, rate="lots"), "rate must be requests per second or a Steady, Diurnal or Bursty profile"),
    (dict(duration_s=1, write_fraction=1.5), "write_fraction must be in [0, 1], got 1.5"),
    (dict(duration_s=1, zipf_s=-1), "s must be in [0, 5], got -1"),
    (dict(duration_s=1, n_keys=0), "n_keys must be in [1, 1000000], got 0"),
    (dict(duration_s=1, read_after_write_s=-1), "read_after_write_s must be >= 0, got -1"),
])
def test_bad_arguments_name_the_parameter_and_range(kwargs, message):
    with pytest.raises(ValueError) as err:
        make_workload(Sim(0), **kwargs)
    assert message in str(err.value)


@pytest.mark.parametrize("make, message", [
    (lambda: Diurnal(10, amplitude=2), "amplitude must be in [0, 1], got 2"),
    (lambda: Bursty(10, off_rps=20), "off_rps must be in [0, 10], got 20"),
    (lambda: Bursty(10, on_s=0), "on_s must be > 0, got 0"),
])
def test_rate_shapes_validate(make, message):
    with pytest.raises(ValueError) as err:
        make()
    assert message in str(err.value)


@settings(max_examples=50, deadline=None)
@given(seed=st.integers(0, 10_000), duration=st.floats(0.1, 20), n_keys=st.integers(1, 500),
       s=st.floats(0, 3), wf=st.floats(0, 1), raw=st.none() | st.floats(0, 2),
       shape=st.sampled_from([Steady(50), Diurnal(50, 1.0, 3.0), Bursty(100, 5, 0.5, 0.5)]))
def test_ops_are_well_formed(seed, duration, n_keys, s, wf, raw, shape):
    ops = make_workload(Sim(seed), duration_s=duration, rate=shape, n_keys=n_keys, zipf_s=s,
                   write_fraction=wf, read_after_write_s=raw)
    assert all(isinstance(op, Op) and 1 <= op.key <= n_keys for op in ops)
    assert [op.time_s for op in ops] == sorted(op.time_s for op in ops)
    assert all(0 <= op.time_s < duration for op in ops if not op.after_write)
