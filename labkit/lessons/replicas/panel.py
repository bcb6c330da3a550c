"""Lesson 01's table, figure and Play panel: load per node, replica lag and stale reads."""
from __future__ import annotations

import functools

from labkit.knobs import Panel
from labkit.lessons.replicas.model import KNOBS, ReplicasRun, simulate
from labkit.plots import PALETTE, Chart, fmt, legend_outside, new_figure, not_drawn_while_grading, round_up, time_series
from labkit.run import as_runs, only_run


def _pct(value: float) -> str:
    return "n/a" if value != value else f"{100 * value:.1f} %"


def summarize(runs):
    """A table comparing runs side by side, one column per label (lesson 01)."""
    from labkit.widgets import Table

    runs = as_runs(runs, ReplicasRun, "lk.replicas.simulate")
    sums = {label: run.summary() for label, run in runs.items()}

    def util(mean, peak):
        return "n/a" if mean != mean else f"{100 * mean:.0f} % (peak {100 * peak:.0f} %)"

    rows = {
        "reads served by the primary": [_pct(s["primary_read_share"]) for s in sums.values()],
        "primary load (of capacity)": [util(s["primary_utilisation"], s["primary_peak_utilisation"])
                                       for s in sums.values()],
        "busiest replica load": [util(s["replica_utilisation"], s["replica_peak_utilisation"])
                                 for s in sums.values()],
        "stale reads (of all reads)": [_pct(s["stale_share"]) for s in sums.values()],
        "users who saw their old profile": [f"{s['own_stale']:,} of {s['own_reads']:,}" for s in sums.values()],
        "reads while every replica lagged": [s["degraded_reads"] for s in sums.values()],
        "worst replica lag": [f"{s['max_lag_s']:.1f} s" for s in sums.values()],
    }
    return Table(rows, columns=list(runs))


@not_drawn_while_grading
def plot(runs, title: str | None = None):
    """Load per node, replica lag, and stale reads over time, for one run (lesson 01)."""
    from matplotlib.ticker import MaxNLocator

    run = only_run(runs, ReplicasRun, "lk.replicas.simulate")
    s, per_s = run.series(0.5), run.series(1.0)   # load is counted per second: steadier
    end = run.duration_s

    def steps(times, values):
        # A step plot ends where its last bin starts; repeat the last value so it reaches the end.
        return [*times, end], [*values, values[-1]]

    t = s["time_s"]
    # Legends beside the panels: they hide no data, and are drawn once.
    fig, (ax_load, ax_lag, ax_stale) = new_figure(3, 1.55, right=0.8)
    beside = dict(loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize=7, frameon=False)
    # Text is most of a figure's drawing time: few ticks, and legends outside the axes,
    # where png() draws them with the axes layer. Round robin gives the replicas the same
    # load, so they are one line (their average) and a band (their range) rather than
    # lines hiding each other.
    load, ts = per_s["load_qps"], per_s["time_s"]
    time_series(ax_load, *steps(ts, load["primary"]), "primary", 0)
    replicas = [load[name] for name in run.node_names[1:]]
    if replicas:
        low, high = [min(v) for v in zip(*replicas)], [max(v) for v in zip(*replicas)]
        ax_load.fill_between(*steps(ts, low), steps(ts, high)[1], step="post", color=PALETTE[1], alpha=0.3,
                             linewidth=0)
        time_series(ax_load, *steps(ts, [sum(v) / len(v) for v in zip(*replicas)]),
                    "each replica" if len(replicas) > 1 else "replica", 1)
    capacity = run.settings["node_capacity_qps"]
    ax_load.axhline(capacity, color=PALETTE[7], linestyle="--", linewidth=1, label="node capacity")
    ax_load.set_ylabel("load (queries/s)")
    ax_load.set_ylim(0, round_up(max(1.3 * capacity, *(1.1 * max(v) for v in load.values()))))
    ax_load.yaxis.set_major_locator(MaxNLocator(4, steps=[1, 2, 2.5, 5, 10]))
    legend_outside(ax_load, **beside)
    lags = s["lag_s"]
    worst = max((max(v) for v in lags.values()), default=0.0)
    if len(lags) > 1 and all(v == next(iter(lags.values())) for v in lags.values()):
        lags = {"every replica": next(iter(lags.values()))}   # one line, not several on top of each other
    for i, (name, values) in enumerate(lags.items()):
        time_series(ax_lag, *steps(t, values), name, 2 + i)
    limit = run.settings.get("max_lag_s")
    if limit is not None and run.replica_set.replicas:
        ax_lag.axhline(limit, color=PALETTE[7], linestyle=":", linewidth=1)
        ax_lag.annotate("max_lag_s", (0, limit), xytext=(3, 2), textcoords="offset points", fontsize=7,
                        va="bottom")
    if lags and len(lags) <= 4:
        legend_outside(ax_lag, **beside)
    ax_lag.set_ylim(0, round_up(max(1.25 * worst, 1.25 * (limit or 0), 0.5)))
    ax_lag.set_ylabel("replica lag (s)")
    ax_lag.yaxis.set_major_locator(MaxNLocator(3))
    time_series(ax_stale, *steps(t, s["stale_pct"]), "all reads", 5)
    time_series(ax_stale, *steps(t, s["own_stale_pct"]), "users re-reading\ntheir own save", 7)
    ax_stale.set_ylabel("stale reads (%)")
    ax_stale.set_ylim(-5, 105)
    ax_stale.set_yticks([0, 50, 100])
    ax_stale.set_xlabel("time (s, simulated)")
    ax_stale.set_xlim(0, run.duration_s)
    legend_outside(ax_stale, **beside)
    if title is None:
        sm = run.summary()
        n = run.settings["replicas"]
        where = f"{n} replica{'s' if n != 1 else ''}"
        head = f"{where}: primary peaked at {fmt(100 * sm['primary_peak_utilisation'])} % of capacity"
        if n:
            head += f", busiest replica at {fmt(100 * sm['replica_peak_utilisation'])} %"
        title = f"{head}; {sm['own_stale']:,} of {sm['own_reads']:,} users saw their old profile"
    fig.suptitle(title, fontsize=11)
    return Chart(fig)


# The Play panel: 12 s of the profile service (the lesson's opening runs 30 s), through labkit's router.
PANEL = Panel(KNOBS, functools.partial(simulate, duration_s=12.0, node_capacity_qps=150.0), summarize, plot)
play = PANEL.play
