"""Lesson 04's table, figure and Play panel: one shared pool of workers against a partition per kind of work."""
from __future__ import annotations

import math

from labkit.knobs import Panel
from labkit.lessons.bulkhead.model import KINDS, KNOBS, PARTITION_KNOBS, SHARED_KNOBS, BulkheadRun, simulate
from labkit.mode import arguments_checked, made_when_read
from labkit.plots import (PALETTE, Chart, fmt, legend_outside, new_figure, not_drawn_while_grading, peak, round_up,
                          shade, step_bands, step_lines)
from labkit.run import as_runs
from labkit.widgets import Table

KIND_COLOURS = {"checkout": PALETTE[0], "product": PALETTE[1], "reporting": PALETTE[2]}
DESIGN_STYLES = ["--", "-", ":", "-."]  # one line style per run, in the order given
INCIDENT_COLOUR = ("#999999", 0.15)


@made_when_read(Table)
def summarize(runs):
    """A table comparing runs side by side: per kind of work, its success, rejections, timeouts and p99 during the incident (lesson 04)."""
    runs = as_runs(runs, BulkheadRun, "lk.bulkhead.simulate")
    arguments_checked()
    sums = {label: run.summary() for label, run in runs.items()}
    pct = lambda v: f"{100 * v:.1f} %"  # noqa: E731
    rows = {}
    for kind in KINDS:
        rows[f"{kind}: success"] = [pct(s[kind]["success_rate"]) for s in sums.values()]
        rows[f"{kind}: rejected (fast)"] = [pct(s[kind]["rejected_rate"]) for s in sums.values()]
        rows[f"{kind}: timed out"] = [pct(s[kind]["timeout_rate"]) for s in sums.values()]
        rows[f"{kind}: p99"] = [f"{s[kind]['p99_ms']:,.0f} ms" for s in sums.values()]
    return Table(rows, columns=list(runs))


@not_drawn_while_grading
def plot(runs, title: str | None = None):
    """Per run, workers in use stacked by kind of work; then each kind's success, p99 and rejections over time (lesson 04)."""
    runs = as_runs(runs, BulkheadRun, "lk.bulkhead.simulate")
    labels, runs = list(runs), list(runs.values())
    fig, axes = new_figure(len(runs) + 3, 1.25, right=0.74, top_in=0.5)
    stack_axes, (ax_ok, ax_lat, ax_rej) = axes[:len(runs)], axes[len(runs):]
    first = runs[0]
    bands = [(*first.incident, "incident")]
    for ax in axes:
        ax.set_autoscale_on(False)  # every limit is set below: autoscaling each artist is most of a redraw
        shade(ax, bands, {"incident": INCIDENT_COLOUR})
    ceiling = 0.0
    for ax, run, label in zip(stack_axes, runs, labels):
        series = {kind: run.series(kind) for kind in KINDS}
        edges = series["checkout"]["time_s"] + [run.duration_s]
        below, bands = [0.0] * (len(edges) - 1), []
        for kind, s in series.items():  # stacked: each kind's band starts where the one below it ends
            top = [b + w for b, w in zip(below, s["workers"])]
            bands.append((below, top, KIND_COLOURS[kind]))
            below = top
        step_bands(ax, edges, bands, alpha=0.8)
        budget = sum(run.settings["workers"].values())
        ax.axhline(budget, color="black", linewidth=0.8, linestyle=":")
        ceiling = max(ceiling, budget)
        ax.set_ylabel(f"{label}:\nworkers in use", fontsize=8)
    for ax in stack_axes:
        ax.set_ylim(0, round_up(1.15 * ceiling))
    lines = {ax_ok: [], ax_lat: [], ax_rej: []}
    for i, run in enumerate(runs):
        style = DESIGN_STYLES[i % len(DESIGN_STYLES)]
        for kind in KINDS:
            s = run.series(kind)
            edges, colour = s["time_s"] + [run.duration_s], KIND_COLOURS[kind]
            lines[ax_ok].append((edges, [100 * v for v in s["success_rate"]], colour, style))
            lines[ax_lat].append((edges, s["p99_ms"], colour, style))
            lines[ax_rej].append((edges, s["rejected_rps"], colour, style))
    for ax, ax_lines in lines.items():
        step_lines(ax, ax_lines)
    ax_ok.set_ylim(-5, 105)
    ax_lat.set_ylim(0, round_up(1.1 * peak(r.series(k)["p99_ms"] for r in runs for k in KINDS)))
    ax_rej.set_ylim(0, round_up(1.1 * peak(r.series(k)["rejected_rps"] for r in runs for k in KINDS)))
    ax_ok.set_ylabel("success (%)", fontsize=8)
    ax_lat.set_ylabel("p99 (ms)", fontsize=8)
    ax_rej.set_ylabel("rejected (/s)", fontsize=8)
    ax_rej.set_xlim(0, first.duration_s)
    ax_rej.set_xlabel("time (s, simulated)")
    # The keys, beside the panels: the colour is the kind of work, the line style the run.
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    kind_keys = [Patch(facecolor=KIND_COLOURS[k], label=f"{k} → {KINDS[k][0]}") for k in KINDS]
    legend_outside(stack_axes[0], kind_keys + [Patch(facecolor=INCIDENT_COLOUR[0], alpha=0.3, label="incident"),
                                              Line2D([], [], color="black", linestyle=":", label="worker budget")],
                   [h.get_label() for h in kind_keys] + ["incident", "worker budget"],
                   loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)
    style_keys = [Line2D([], [], color="black", linestyle=DESIGN_STYLES[i % len(DESIGN_STYLES)], label=label)
                  for i, label in enumerate(labels)]
    legend_outside(ax_ok, style_keys, labels, loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8,
                   frameon=False, title="line style", title_fontsize=8)
    if title is None:
        last = runs[-1].summary()["checkout"]
        title = (f"{labels[-1]}: checkout {100 * last['success_rate']:.1f} % successful during the incident, "
                 f"p99 {fmt(last['p99_ms'])} ms")
    fig.suptitle(title, fontsize=11)
    return Chart(fig)


# The panel replays a shorter incident than the lesson's 60 s runs, so a slider move redraws in
# time: with both runs of the 60 s incident re-simulated, a move of a shared knob took 0.18 s; with
# 20 s (slow from 5 to 15 s), 101-108 ms p95 on a quiet machine, against a budget of 100 (make bench).
PANEL_DURATION_S = 16.0
PANEL_INCIDENT = (4.0, 12.0)


def _shared(**knobs):
    return simulate(design="shared", duration_s=PANEL_DURATION_S, incident=PANEL_INCIDENT, **knobs)


def _bulkheads(**knobs):
    return simulate(design="bulkheads", duration_s=PANEL_DURATION_S, incident=PANEL_INCIDENT, **knobs)


def _run(**knobs):
    # Partitions that add up to more workers than there are: the panel scales them down to fit,
    # rather than refusing a slider position.
    sizes = [knobs[n] for n in PARTITION_KNOBS]
    total = sum(sizes)
    from labkit.lessons.bulkhead.model import TOTAL_WORKERS
    if total > TOTAL_WORKERS:
        scaled = [max(1, math.floor(n * TOTAL_WORKERS / total)) for n in sizes]
        knobs.update(zip(PARTITION_KNOBS, scaled))
    return _bulkheads(**knobs)


# The shared pool does not depend on the partition sizes, so the panel keeps it per setting of the
# other knobs: moving a partition slider re-simulates one run, not two.
PANEL = Panel(KNOBS, _run, summarize, plot, label="bulkheads", baseline=_shared, baseline_label="shared pool",
              baseline_knobs=SHARED_KNOBS)
play = PANEL.play
