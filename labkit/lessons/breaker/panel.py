"""Lesson 03's table, figure and Play panel: the same outage without and with labkit's breaker."""
from __future__ import annotations

import math

from labkit.knobs import Knob, Knobs, Panel
from labkit.lessons.breaker.model import TRAFFIC, simulate
from labkit.mode import arguments_checked, made_when_read
from labkit.plots import (Chart, fmt, legend_outside, new_figure, not_drawn_while_grading, peak, round_up,
                          shade, time_series)
from labkit.resilience import CircuitBreaker
from labkit.run import as_runs
from labkit.traffic import CallsRun
from labkit.widgets import Table

# Bands in hues the first three runs' lines (blue, orange, green) do not use, so a run's spikes stay visible
# on them (the open band was vermilion, and lesson 03's orange spikes vanished into it).
STATE_COLOURS = {"open": ("#CC79A7", 0.2), "half_open": ("#F0E442", 0.3), "closed": None}
OUTAGE_COLOUR = "#999999"
BAND_LABELS = {"open": "breaker open", "half_open": "breaker half-open"}

KNOBS = Knobs(
    *TRAFFIC,
    Knob("failure_threshold", 1, 50, 1, 5),
    Knob("recovery_timeout_s", 0.5, 20.0, 0.5, 5.0, unit="s"),
    Knob("success_threshold", 1, 10, 1, 1),
)


@made_when_read(Table)
def summarize(runs):
    """A table comparing runs side by side, one column per label (lesson 03)."""
    runs = as_runs(runs, CallsRun, "lk.breaker.simulate")
    arguments_checked()
    sums = {label: run.summary() for label, run in runs.items()}
    pct = lambda v: f"{100 * v:.1f} %"  # noqa: E731
    secs = lambda v: "not yet" if math.isinf(v) else "no outage" if math.isnan(v) else f"{v:.0f} s"  # noqa: E731
    rows = {
        "callers' success": [pct(s["success_rate"]) for s in sums.values()],
        "fallbacks (refused fast)": [pct(s["fallback_rate"]) for s in sums.values()],
        "failed after waiting": [pct(s["failed_rate"]) for s in sums.values()],
        "calls that reached the service": [s["service_calls"] for s in sums.values()],
        "... of them during the outage": [s["calls_during_outage"] for s in sums.values()],
        "callers' p99 latency": [f"{s['p99_ms']:,.0f} ms" for s in sums.values()],
        "recovered after the outage in": [secs(s["recovery_s"]) for s in sums.values()],
    }
    return Table(rows, columns=list(runs))


@not_drawn_while_grading
def plot(runs, title: str | None = None):
    """Callers' success rate, load on the service and p99 latency over time, one line per run, with the
    outage and the breaker's states shaded (lesson 03)."""
    runs = as_runs(runs, CallsRun, "lk.breaker.simulate")
    labels, runs = list(runs), list(runs.values())
    fig, (ax_ok, ax_load, ax_lat) = new_figure(3, 1.7, top_in=0.75)   # a legend row above the panels
    # The outage under the breaker's states, one collection per panel; the legend keys on the top one.
    bands = ([(*runs[0].outage, "outage")] if runs[0].outage else []) + [i for r in runs for i in r.state_intervals()]
    colours = {"outage": (OUTAGE_COLOUR, 0.15), **STATE_COLOURS}
    for ax in (ax_ok, ax_load, ax_lat):
        shade(ax, bands, colours, label_once=set() if ax is ax_ok else None, labels=BAND_LABELS)
    for i, (run, label) in enumerate(zip(runs, labels)):
        s = run.series()
        time_series(ax_ok, s["time_s"], [100 * v for v in s["success_rate"]], label, i)
        time_series(ax_load, s["time_s"], s["service_load_rps"], label, i)
        time_series(ax_lat, s["time_s"], s["p99_ms"], label, i)
    ax_lat.set_xlim(0, runs[0].duration_s)
    ax_ok.set_ylim(-5, 105)
    ax_load.set_ylim(0, round_up(1.1 * peak(s["service_load_rps"] for s in (r.series() for r in runs))))
    ax_lat.set_ylim(0, round_up(1.1 * peak(s["p99_ms"] for s in (r.series() for r in runs))))
    ax_ok.set_ylabel("callers' success (%)")
    ax_load.set_ylabel("calls to service (/s)")
    ax_lat.set_ylabel("callers' p99 (ms)")
    ax_lat.set_xlabel("time (s, simulated)")
    # One legend, in a row above the panels: the runs' colours and the bands mean the same
    # in every panel, and outside the axes it hides no data and is drawn with the axes layer.
    legend_outside(ax_ok, loc="lower left", bbox_to_anchor=(0, 1.01), borderaxespad=0, fontsize=8,
                   ncols=5, frameon=False, handlelength=1.5, columnspacing=1.2)
    if title is None:
        last = runs[-1].summary()
        rec = last["recovery_s"]
        recovered = ("no outage" if math.isnan(rec) else "callers had not recovered when the run ended"
                     if math.isinf(rec) else f"callers recovered {fmt(rec)} s after it came back")
        title = f"{labels[-1]}: {fmt(last['service_calls'])} calls reached the service; {recovered}"
    fig.suptitle(title, fontsize=11)
    return Chart(fig)


def _without_breaker(rate_rps, outage_s, retries):
    return simulate(rate_rps=rate_rps, outage_s=outage_s, retries=retries)


def _with_breaker(*, rate_rps, outage_s, retries, failure_threshold, recovery_timeout_s, success_threshold):
    def breaker(clock):
        return CircuitBreaker(clock, failure_threshold=failure_threshold, recovery_timeout_s=recovery_timeout_s,
                              success_threshold=success_threshold)

    return simulate(rate_rps=rate_rps, outage_s=outage_s, retries=retries, breaker=breaker)


# The run without a breaker depends only on the traffic, so the panel keeps it per traffic
# setting: moving a breaker knob re-simulates one run, not two.
PANEL = Panel(KNOBS, _with_breaker, summarize, plot, label="with breaker", baseline=_without_breaker,
              baseline_label="without breaker", baseline_knobs=TRAFFIC.names)
play = PANEL.play
