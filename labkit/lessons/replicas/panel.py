"""Lesson 01's table, figure and Play panel: load per node, replica lag and stale reads."""
from __future__ import annotations

import functools

from labkit.knobs import Panel
from labkit.lessons.replicas.model import KNOBS, ReplicasRun, simulate
from labkit.mode import arguments_checked, made_when_read
from labkit.plots import (PALETTE, Chart, fmt, legend_outside, new_figure, not_drawn_while_grading, round_up,
                          step_bands, step_lines)
from labkit.run import as_runs, only_run
from labkit.widgets import Table


def _pct(value: float) -> str:
    return "n/a" if value != value else f"{100 * value:.1f} %"


@made_when_read(Table)
def summarize(runs):
    """A table comparing runs side by side, one column per label (lesson 01)."""
    runs = as_runs(runs, ReplicasRun, "lk.replicas.simulate")
    arguments_checked()
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

    from matplotlib.lines import Line2D

    run = only_run(runs, ReplicasRun, "lk.replicas.simulate")
    s, per_s = run.series(0.5), run.series(1.0)   # load is counted per second: steadier
    end = run.duration_s
    # Each value holds over its bin: bin edges are the bins' starts and the run's end.
    edges, per_s_edges = [*s["time_s"], end], [*per_s["time_s"], end]

    def key(colour, label, **style):
        return Line2D([], [], color=colour, linewidth=1.6, label=label, **style)

    # Legends beside the panels: they hide no data, and are drawn once.
    fig, (ax_load, ax_lag, ax_stale) = new_figure(3, 1.55, right=0.8)
    beside = dict(loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize=8, frameon=False)
    # Text is most of a figure's drawing time: few ticks, and legends outside the axes,
    # where png() draws them with the axes layer. The lines of a panel are one collection
    # (`step_lines`), with its legend's keys drawn apart. Round robin gives the replicas the
    # same load, so they are one line (their average) and a band (their range) rather than
    # lines hiding each other.
    load = per_s["load_qps"]
    lines, keys = [(per_s_edges, load["primary"], PALETTE[0], "-")], [key(PALETTE[0], "primary")]
    replicas = [load[name] for name in run.node_names[1:]]
    if replicas:
        low, high = [min(v) for v in zip(*replicas)], [max(v) for v in zip(*replicas)]
        step_bands(ax_load, per_s_edges, [(low, high, PALETTE[1])], alpha=0.3)
        lines.append((per_s_edges, [sum(v) / len(v) for v in zip(*replicas)], PALETTE[1], "-"))
        keys.append(key(PALETTE[1], "each replica" if len(replicas) > 1 else "replica"))
    step_lines(ax_load, lines, linewidth=1.6)
    capacity = run.settings["node_capacity_qps"]
    ax_load.axhline(capacity, color=PALETTE[7], linestyle="--", linewidth=1)
    keys.append(key(PALETTE[7], "node capacity", linestyle="--"))
    ax_load.set_ylabel("load (queries/s)")
    ax_load.set_ylim(0, round_up(max(1.3 * capacity, *(1.1 * max(v) for v in load.values()))))
    ax_load.yaxis.set_major_locator(MaxNLocator(4, steps=[1, 2, 2.5, 5, 10]))
    legend_outside(ax_load, keys, [k.get_label() for k in keys], **beside)
    lags = s["lag_s"]
    worst = max((max(v) for v in lags.values()), default=0.0)
    if len(lags) > 1 and all(v == next(iter(lags.values())) for v in lags.values()):
        lags = {"every replica": next(iter(lags.values()))}   # one line, not several on top of each other
    colours = [PALETTE[(2 + i) % len(PALETTE)] for i in range(len(lags))]
    step_lines(ax_lag, [(edges, values, c, "-") for values, c in zip(lags.values(), colours)], linewidth=1.6)
    limit = run.settings.get("max_lag_s")
    if limit is not None and run.replica_set.replicas:
        ax_lag.axhline(limit, color=PALETTE[7], linestyle=":", linewidth=1)
        ax_lag.annotate("max_lag_s", (0, limit), xytext=(3, 2), textcoords="offset points", fontsize=7,
                        va="bottom")
    if lags and len(lags) <= 4:
        keys = [key(c, name) for name, c in zip(lags, colours)]
        legend_outside(ax_lag, keys, list(lags), **beside)
    ax_lag.set_ylim(0, round_up(max(1.25 * worst, 1.25 * (limit or 0), 0.5)))
    ax_lag.set_ylabel("replica lag (s)")
    ax_lag.yaxis.set_major_locator(MaxNLocator(3))
    stale = [("all reads", s["stale_pct"], PALETTE[5]), ("users re-reading\ntheir own save", s["own_stale_pct"], PALETTE[7])]
    step_lines(ax_stale, [(edges, values, c, "-") for _, values, c in stale], linewidth=1.6)
    ax_stale.set_ylabel("stale reads (%)")
    ax_stale.set_ylim(-5, 105)
    ax_stale.set_yticks([0, 50, 100])
    ax_stale.set_xlabel("time (s, simulated)")
    ax_stale.set_xlim(0, run.duration_s)
    legend_outside(ax_stale, [key(c, label) for label, _, c in stale], [label for label, *_ in stale], **beside)
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
