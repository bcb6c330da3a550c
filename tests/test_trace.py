"""labkit.trace: the built-in event log and the metrics read from it; labkit.run.Run's time bins over it (lesson 00)."""
import math
import statistics
import types

import pytest
from hypothesis import given, strategies as st

from labkit.run import Run
from labkit.trace import Event, Trace, bins, latency_summary, percentile


@pytest.fixture
def trace():
    t = Trace()
    t.append(0.5, "client", "request", {"outcome": "ok", "latency_s": 0.1})
    t.append(1.0, "backend", "call", {"ok": True})
    t.append(1.5, "client", "request", {"outcome": "failed", "latency_s": 1.0})
    t.append(2.0, "backend", "call", {"ok": False})
    t.append(2.5, "client", "request", {"outcome": "ok", "latency_s": 0.3})
    return t


def ev(t, **fields):
    return Event(t, "c", "e", fields)


# --- Trace and Event ----------------------------------------------------------------------------

@pytest.mark.parametrize("args, where, expected_times", [
    ((), {}, [0.5, 1.0, 1.5, 2.0, 2.5]),
    (("client",), {}, [0.5, 1.5, 2.5]),
    ((None, "call"), {}, [1.0, 2.0]),
    (("client", "request"), {"outcome": "ok"}, [0.5, 2.5]),
    ((), {"ok": False}, [2.0]),
    (("backend",), {"outcome": "ok"}, []),  # a field the event does not have never matches
    (("nobody",), {}, []),
])
def test_select_and_count_filter_by_component_event_and_fields(trace, args, where, expected_times):
    assert [e.time_s for e in trace.select(*args, **where)] == expected_times
    assert trace.count(*args, **where) == len(expected_times)


def test_values_reads_one_field_of_the_matching_events(trace):
    assert trace.values("latency_s", "client", "request") == [0.1, 1.0, 0.3]
    assert trace.values("latency_s", "client", outcome="ok") == [0.1, 0.3]
    with pytest.raises(KeyError):
        trace.values("latency_s")  # backend calls have no latency_s


def test_to_rows_flattens_fields(trace):
    rows = trace.to_rows()
    assert len(rows) == len(trace) == 5
    assert rows[1] == {"time_s": 1.0, "component": "backend", "event": "call", "ok": True}
    assert [e.time_s for e in trace] == [r["time_s"] for r in rows]


def test_a_recorder_appends_like_append_in_one_order_with_the_rest(trace):
    rec = trace.recorder("backend", "call")
    rec(3.0, {"ok": True})
    trace.append(3.5, "client", "request", {"outcome": "ok", "latency_s": 0.2})
    rec(4.0, {"ok": False})
    assert [e.time_s for e in trace] == [0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 3.5, 4.0]
    assert [(e.time_s, e.ok) for e in trace.select("backend", "call")] == [(1.0, True), (2.0, False), (3.0, True),
                                                                          (4.0, False)]
    assert trace.select("backend", "call")[-1] == Event(4.0, "backend", "call", {"ok": False})
    assert trace.count("client") == 4


def test_events_is_a_live_read_only_view_in_recording_order(trace):
    events = trace.events
    assert len(events) == 5 and events[0] == Event(0.5, "client", "request", {"outcome": "ok", "latency_s": 0.1})
    trace.append(3.0, "backend", "call", {"ok": True})
    assert len(events) == 6 and events[-1].time_s == 3.0 and [e.time_s for e in events[4:]] == [2.5, 3.0]
    assert events == list(trace) and list(events) == trace.select()
    with pytest.raises(TypeError):
        events[0] = None


def test_times_and_fields_read_one_kinds_columns(trace):
    assert trace.times("client", "request") == [0.5, 1.5, 2.5]
    assert [f["outcome"] for f in trace.fields("client", "request")] == ["ok", "failed", "ok"]
    assert trace.times("nobody", "call") == [] and trace.fields("nobody", "call") == []
    trace.times("client", "request").append(99.0)   # a copy: the trace is unchanged
    assert trace.count("client", "request") == 3


def test_last_finds_the_latest_event_of_a_name_recorded_since_a_position(trace):
    before = len(trace)
    assert trace.last("request", since=before) is None
    trace.append(3.0, "replica-1", "read", {"stale": True})
    trace.append(3.0, "backend", "call", {"ok": True})
    assert trace.last("read", since=before) == Event(3.0, "replica-1", "read", {"stale": True})
    assert trace.last("request") == Event(2.5, "client", "request", {"outcome": "ok", "latency_s": 0.3})
    assert trace.last("call", since=before).fields == {"ok": True}


def test_a_recorder_of_a_kind_never_recorded_selects_nothing():
    t = Trace()
    t.recorder("cache", "hit")
    assert t.select("cache", "hit") == [] and t.count("cache") == 0 and len(t) == 0


def test_event_fields_read_as_attributes_but_tuple_fields_win():
    e = Event(1.0, "client", "request", {"outcome": "ok", "time_s": 99})
    assert e.outcome == "ok"
    assert e.time_s == 1.0 and e.component == "client" and e.event == "request"
    assert e == (1.0, "client", "request", {"outcome": "ok", "time_s": 99})
    with pytest.raises(AttributeError, match="missing"):
        e.missing
    assert not hasattr(e, "missing")


# --- percentile and latency_summary -------------------------------------------------------------

@pytest.mark.parametrize("values, q, expected", [
    ([1, 2, 3, 4], 0, 1),
    ([1, 2, 3, 4], 100, 4),
    ([1, 2, 3, 4], 50, 2.5),
    ([4, 1, 3, 2], 25, 1.75),  # unsorted input; position 0.75 between 1 and 2
    ([10, 20], 90, 19),
    ([7], 99, 7),
])
def test_percentile_interpolates_linearly(values, q, expected):
    assert percentile(values, q) == pytest.approx(expected)


def test_percentile_matches_statistics_inclusive_quantiles():
    data = [0.031, 0.5, 0.047, 0.2, 1.9, 0.06, 0.052, 0.049, 0.75, 0.04, 0.3]
    cuts = statistics.quantiles(data, n=100, method="inclusive")
    assert [percentile(data, q) for q in range(1, 100)] == pytest.approx(cuts)


def test_percentile_of_nothing_is_nan():
    assert math.isnan(percentile([], 50))
    assert math.isnan(percentile(iter(()), 0))


@pytest.mark.parametrize("q", [-1, 100.5, math.nan])
def test_percentile_rejects_q_outside_0_to_100(q):
    with pytest.raises(ValueError, match=r"q must be (a finite number )?in \[0, 100\], got"):
        percentile([1, 2], q)


def test_latency_summary_reports_milliseconds():
    summary = latency_summary(i / 1000 for i in range(1, 101))  # 1 ms .. 100 ms, any iterable
    assert set(summary) == {"p50_ms", "p95_ms", "p99_ms"}
    assert summary["p50_ms"] == pytest.approx(50.5)
    assert summary["p95_ms"] == pytest.approx(95.05)
    assert summary["p99_ms"] == pytest.approx(99.01)
    assert all(math.isnan(v) for v in latency_summary([]).values())


# --- bins and time series -----------------------------------------------------------------------

@pytest.mark.parametrize("start, end, width, expected", [
    (0, 10, 1, [float(i) for i in range(10)]),
    (0, 10, 3, [0, 3, 6, 9]),           # a partial last bin still gets an edge
    (5, 6, 0.25, [5, 5.25, 5.5, 5.75]),
    (0, 0.3, 0.1, pytest.approx([0, 0.1, 0.2])),  # float steps do not add a spurious bin
])
def test_bins_are_left_edges_covering_the_window(start, end, width, expected):
    assert bins(start, end, width) == expected


@pytest.mark.parametrize("args, message", [
    ((0, 10, 0), "bin_s must be > 0, got 0"),
    ((0, 10, -1), "bin_s must be > 0, got -1"),
    ((5, 5, 1), r"end_s must be > start_s \(5\), got 5"),
    ((5, 2, 1), r"end_s must be > start_s \(5\), got 2"),
])
def test_bins_reject_empty_windows_and_bad_widths(args, message):
    with pytest.raises(ValueError, match=message):
        bins(*args)


class EventsRun(Run):
    """A run of `duration_s` over hand-made ("c", "e") events at `times`, each with its fields."""

    def __init__(self, duration_s, times, fields=None):
        trace = Trace()
        for t, f in zip(times, fields or [{}] * len(times)):
            trace.append(t, "c", "e", f)
        self.sim, self.duration_s = types.SimpleNamespace(trace=trace), duration_s


def test_per_bin_counts_per_bin_and_ignores_events_outside_the_run():
    run = EventsRun(4, [0, 0.99, 1, 3.5, 4, 7])
    assert run.bin_starts(1) == [0, 1, 2, 3]
    assert run.per_bin("c", "e", 1) == [2, 1, 0, 1]  # 4 (the window is half-open) and 7 fall outside


def test_per_bin_counts_a_partial_last_bin_to_its_own_end_and_ignores_events_past_it():
    # A bin is bin_s wide even where it passes the end of the run (so rate() divides by its width).
    run = EventsRun(10, [9.5, 10, 11, 12, 13])
    assert run.bin_starts(3) == [0, 3, 6, 9]
    assert run.per_bin("c", "e", 3) == [0, 0, 0, 3]


def test_per_bin_applies_the_reducer_to_each_bin_s_values_of_a_field():
    run = EventsRun(3, [0.2, 0.8, 2.5], [{"latency_s": 0.1}, {"latency_s": 0.3}, {"latency_s": 0.7}])
    assert run.per_bin("c", "e", 1, "latency_s", reduce=lambda v: max(v, default=0)) == [0.3, 0, 0.7]
    assert run.per_bin("c", "e", 1, "latency_s") == pytest.approx([0.4, 0, 0.7])   # the default reducer sums


def test_rate_divides_counts_by_the_bin_width():
    run = EventsRun(4, [0.1, 0.2, 0.3, 1.9, 2.1])
    assert run.bin_starts(2) == [0, 2]
    assert run.rate("c", "e", 2) == [2.0, 0.5]


def test_a_share_per_bin_is_nan_for_an_empty_bin():
    run = EventsRun(3, [0.1, 0.2, 0.3, 0.4, 2.5], [{"ok": v} for v in (True, False, True, True, False)])
    share = run.per_bin("c", "e", 1, "ok", reduce=lambda v: sum(v) / len(v) if v else math.nan)
    assert share[0] == 0.75 and math.isnan(share[1]) and share[2] == 0.0


# --- properties ---------------------------------------------------------------------------------

samples = st.lists(st.floats(-1e6, 1e6, allow_nan=False), min_size=1, max_size=50)
qs = st.floats(0, 100, allow_nan=False)


@given(samples, qs, qs)
def test_percentile_is_monotone_in_q_and_between_min_and_max(values, q1, q2):
    lo, hi = sorted((q1, q2))
    p_lo, p_hi = percentile(values, lo), percentile(values, hi)
    assert min(values) <= p_lo <= p_hi <= max(values)


@given(st.lists(st.floats(0, 20, allow_nan=False), max_size=60), st.sampled_from([0.5, 1, 2, 5]))
def test_per_bin_counts_every_event_inside_the_run_exactly_once(times, width):
    run = EventsRun(10, sorted(times))   # a trace holds each kind's events in time order
    counts = run.per_bin("c", "e", width)
    assert sum(counts) == sum(1 for t in times if 0 <= t < 10)
    assert len(run.bin_starts(width)) == len(counts) == 10 / width


_KINDS = [("client", "request"), ("backend", "call"), ("replica-1", "read"), ("primary", "read")]


@given(st.lists(st.tuples(st.sampled_from(range(len(_KINDS))), st.booleans(), st.integers(0, 3)), max_size=60),
       st.integers(0, 60))
def test_the_columnar_trace_reads_like_a_plain_list_of_events(steps, since):
    """However events are recorded (append or a recorder, kinds interleaved, read in between),
    every way of reading the trace agrees with a plain list of Events."""
    trace, reference = Trace(), []
    recorders = {}
    for i, (k, through_recorder, value) in enumerate(steps):
        component, event = _KINDS[k]
        fields = {"value": value, "i": i}
        if through_recorder:
            recorders.setdefault(k, trace.recorder(component, event))(float(i), fields)
        else:
            trace.append(float(i), component, event, fields)
        reference.append(Event(float(i), component, event, fields))
        if value == 0:   # read half-way: Events built so far must stay right as the trace grows
            assert list(trace.events) == reference
    assert list(trace) == list(trace.events) == reference and len(trace) == len(reference)
    for component, event in _KINDS:
        mine = [e for e in reference if (e.component, e.event) == (component, event)]
        assert trace.select(component, event) == mine
        assert trace.select(component, event, value=1) == [e for e in mine if e.fields["value"] == 1]
        assert trace.times(component, event) == [e.time_s for e in mine]
        assert trace.fields(component, event) == [e.fields for e in mine]
        assert list(trace.timed(component, event)) == [(e.time_s, e.fields) for e in mine]
        assert trace.count(component, event) == len(mine)
    assert trace.select(event="read") == [e for e in reference if e.event == "read"]
    later = [e for e in reference[since:] if e.event == "read"]
    assert trace.last("read", since=since) == (later[-1] if later else None)
    assert trace.to_rows() == [{"time_s": e.time_s, "component": e.component, "event": e.event, **e.fields}
                               for e in reference]
