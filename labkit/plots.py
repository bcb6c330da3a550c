"""Plot helpers: time series with state bands and latency percentiles, in a colour-blind-safe palette (lesson 00)."""
from __future__ import annotations

import io
import math

# Figures are built on matplotlib's object API, not pyplot: nothing is registered globally,
# nothing leaks between slider moves, and no backend or display is needed to draw a PNG.
from matplotlib.figure import Figure

# Okabe & Ito's palette: distinguishable with every common colour-vision deficiency.
PALETTE = ["#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#000000"]
STATE_COLOURS = {"open": "#D55E00", "half_open": "#F0E442", "closed": None}
OUTAGE_COLOUR = "#999999"


class Chart:
    """A figure that shows itself as a PNG in a notebook; `.fig` is the matplotlib Figure."""

    def __init__(self, fig):
        self.fig = fig

    def _repr_png_(self) -> bytes:
        return png(self.fig)

    def __repr__(self) -> str:
        title = self.fig._suptitle.get_text() if self.fig._suptitle else ""
        return f"<Chart: {title}>"


def new_figure(rows: int = 1, height_per_row: float = 2.0, width: float = 9.0):
    """A matplotlib Figure (not registered with pyplot, so nothing leaks) and its axes."""
    height = 0.7 + height_per_row * rows
    fig = Figure(figsize=(width, height))
    # Fixed margins: constrained layout costs more than the drawing itself on every slider move.
    fig.subplots_adjust(left=0.1, right=0.98, bottom=0.45 / height, top=1 - 0.45 / height, hspace=0.12)
    axes = fig.subplots(rows, 1, sharex=True, squeeze=False)[:, 0]
    for ax in axes:
        ax.grid(alpha=0.3, linewidth=0.6)
        ax.spines[["top", "right"]].set_visible(False)
    return fig, list(axes)


def shade(ax, intervals, colours: dict | None = None, label_once: set | None = None) -> None:
    """Shade (start_s, end_s, name) intervals behind a plot; names without a colour are left clear."""
    colours = STATE_COLOURS if colours is None else colours
    for start, end, name in intervals:
        colour = colours.get(name)
        if colour is None:
            continue
        label = None
        if label_once is not None and name not in label_once:
            label_once.add(name)
            label = f"breaker {name.replace('_', '-')}" if name in STATE_COLOURS else name
        ax.axvspan(start, end, color=colour, alpha=0.25, linewidth=0, label=label)


def time_series(ax, t, values, label: str, colour_index: int = 0, **kwargs) -> None:
    """Draw one series as a step line (each value holds for its bin)."""
    ax.step(t, values, where="post", label=label, color=PALETTE[colour_index % len(PALETTE)],
            linewidth=1.6, **kwargs)


def latency_percentiles(ax, t, p50, p95, p99, colour_index: int = 0, label: str = "") -> None:
    """p50 / p95 / p99 latency lines in one colour with three dash styles."""
    colour = PALETTE[colour_index % len(PALETTE)]
    for values, q, style in ((p50, 50, ":"), (p95, 95, "--"), (p99, 99, "-")):
        ax.step(t, values, where="post", color=colour, linestyle=style, linewidth=1.3,
                label=f"{label} p{q}".strip())
    ax.set_ylabel("latency (ms)")


def png(fig) -> bytes:
    """Render a figure to PNG bytes (what the Play widgets display)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=80)
    return buf.getvalue()


def fmt(value, digits: int = 0) -> str:
    """Format a number for titles and tables: thousands separators, 'never' for infinity."""
    if isinstance(value, float) and math.isinf(value):
        return "never"
    if isinstance(value, float) and math.isnan(value):
        return "n/a"
    return f"{value:,.{digits}f}"


def plot_calls(runs, labels=None, title: str | None = None):
    """Callers' success rate, load on the service and p99 latency over time, for one or more
    `simulate_calls` runs, with the outage and the breaker's states shaded (lesson 03)."""
    runs = list(runs) if isinstance(runs, (list, tuple)) else [runs]
    labels = list(labels) if labels else [f"run {i + 1}" for i in range(len(runs))]
    if len(labels) != len(runs):
        raise ValueError(f"labels must have one entry per run ({len(runs)}), got {len(labels)}")
    fig, (ax_ok, ax_load, ax_lat) = new_figure(3, 1.7)
    seen: set = set()
    for ax in (ax_ok, ax_load, ax_lat):
        if runs[0].outage:
            start, end = runs[0].outage
            ax.axvspan(start, end, color=OUTAGE_COLOUR, alpha=0.15, linewidth=0,
                       label="outage" if ax is ax_ok else None)
        for run in runs:
            shade(ax, run.state_intervals(), label_once=seen if ax is ax_ok else None)
    for i, (run, label) in enumerate(zip(runs, labels)):
        s = run.series()
        time_series(ax_ok, s["time_s"], [100 * v for v in s["success_rate"]], label, i)
        time_series(ax_load, s["time_s"], s["service_load_rps"], label, i)
        time_series(ax_lat, s["time_s"], s["p99_ms"], label, i)
    ax_ok.set_ylabel("callers' success (%)")
    ax_ok.set_ylim(-5, 105)
    ax_load.set_ylabel("calls to service (/s)")
    ax_lat.set_ylabel("callers' p99 (ms)")
    ax_lat.set_xlabel("time (s, simulated)")
    ax_ok.legend(loc="lower left", fontsize=8, ncols=3, framealpha=0.9)
    ax_load.legend(loc="upper left", fontsize=8, framealpha=0.9)
    if title is None:
        last = runs[-1].summary()
        rec = last["recovery_s"]
        recovered = ("no outage" if math.isnan(rec) else "callers had not recovered when the run ended"
                     if math.isinf(rec) else f"callers recovered {fmt(rec)} s after it came back")
        title = f"{labels[-1]}: {fmt(last['service_calls'])} calls reached the service; {recovered}"
    fig.suptitle(title, fontsize=11)
    return Chart(fig)


def plot_latency(run, title: str | None = None):
    """Callers' p50/p95/p99 latency and the service's load over time for one run (lesson 00)."""
    s = run.series()
    lat = run.latency_series()
    fig, (ax_lat, ax_load) = new_figure(2, 1.9)
    latency_percentiles(ax_lat, lat["time_s"], lat["p50_ms"], lat["p95_ms"], lat["p99_ms"])
    ax_lat.legend(loc="upper left", fontsize=8)
    time_series(ax_load, s["time_s"], s["service_load_rps"], "calls to service", 1)
    ax_load.set_ylabel("calls (/s)")
    ax_load.set_xlabel("time (s, simulated)")
    if title is None:
        p99 = run.summary()["p99_ms"]
        title = f"{fmt(run.settings['rate_rps'])} requests/s: callers' p99 latency is {fmt(p99)} ms"
    fig.suptitle(title, fontsize=11)
    return Chart(fig)
