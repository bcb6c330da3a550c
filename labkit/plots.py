"""Plot helpers: time series with state bands and latency percentiles, in a colour-blind-safe palette (lesson 00)."""
from __future__ import annotations

import contextlib
import functools
import io
import math

# Okabe & Ito's palette: distinguishable with every common colour-vision deficiency.
PALETTE = ["#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#000000"]
STATE_COLOURS = {"open": "#D55E00", "half_open": "#F0E442", "closed": None}
OUTAGE_COLOUR = "#999999"


class Chart:
    """A figure that shows itself as a PNG in a notebook; `.fig` is the matplotlib Figure."""

    def __init__(self, fig):
        self.fig = fig  # None in the grader's sandboxed child, which never draws

    def _repr_png_(self) -> bytes | None:
        return png(self.fig) if self.fig is not None else None

    def __repr__(self) -> str:
        if self.fig is None:
            return "<Chart: not drawn while grading>"
        title = self.fig._suptitle.get_text() if self.fig._suptitle else ""
        return f"<Chart: {title}>"


def not_drawn_while_grading(plot):
    """Decorator for plot functions: the grader's sandboxed child shows nobody a figure, so it draws none."""

    @functools.wraps(plot)
    def draw(*args, **kwargs):
        from labkit.checking import grading_child

        return Chart(None) if grading_child() else plot(*args, **kwargs)

    return draw


_recycled: dict | None = None  # layout -> (fig, axes) while a Play panel redraws; see `recycling`


@contextlib.contextmanager
def recycling(pool: dict):
    """Inside this block `new_figure` reuses the Figure it made for the same layout last time (Play).

    Building a figure's axes and their ticks is a third of a Play redraw; wiping the artists
    off a kept figure is nearly free and draws the same PNG. Only for figures that are
    rendered and dropped inside the block: the next redraw wipes them.
    """
    global _recycled
    saved, _recycled = _recycled, pool
    try:
        yield
    finally:
        _recycled = saved


def _added(ax) -> list:
    """What plot functions add to an axes (data, texts, the legend), as opposed to the axes themselves."""
    legend = ax.get_legend()
    return [*ax.collections, *ax.patches, *ax.lines, *ax.texts, *ax.images, *([legend] if legend else [])]


_OUTSIDE = "_labkit_outside"  # on a legend made by legend_outside: what it was made from
_STALE = "_labkit_stale"      # on a kept outside legend that the current redraw has not asked for


def legend_outside(ax, *args, **kwargs):
    """`ax.legend(...)` for a legend placed outside the axes (`loc` and `bbox_to_anchor` say where).

    `args` are `handles, labels` as `ax.legend` takes them, or nothing for the axes' labelled
    artists. No data is drawn under the legend, so `png` draws it with the axes layer: once
    per set of labels, not on every slider move. On a recycled figure, a legend with the
    same labels, keys and settings as the last redraw's is kept rather than built again
    (building one is a few ms). Legends inside the axes sit over the data, are redrawn every
    time, and hide what is under them.
    """
    handles, labels = args if args else ax.get_legend_handles_labels()
    made_from = (tuple(labels), tuple(_key_style(h) for h in handles), repr(sorted(kwargs.items())))
    kept = ax.get_legend()
    if kept is not None and kept.__dict__.get(_OUTSIDE) == made_from:
        kept.__dict__.pop(_STALE, None)
        return kept
    if kept is not None:
        kept.remove()
    legend = ax.legend(handles, labels, **kwargs)
    legend.__dict__[_OUTSIDE] = made_from
    return legend


def _key_style(handle) -> tuple:
    """How a legend key for `handle` looks: its type, colours, line and marker styles."""
    style = [type(handle).__name__]
    for getter in ("get_color", "get_facecolor", "get_edgecolor", "get_linestyle", "get_linewidth", "get_alpha",
                   "get_marker", "get_drawstyle", "get_hatch"):
        if hasattr(handle, getter):
            value = getattr(handle, getter)()
            style.append(tuple(map(tuple, value)) if hasattr(value, "ndim") and value.ndim == 2
                         else tuple(value) if hasattr(value, "ndim") else value)
    return tuple(style)


def _drop_stale_legends(fig) -> None:
    """Remove the kept outside legends that this redraw's plot did not ask for again."""
    for ax in fig.axes:
        legend = ax.get_legend()
        if legend is not None and legend.__dict__.pop(_STALE, False):
            legend.remove()


def _wipe(fig, axes) -> None:
    """Remove everything the plot functions add, keeping the axes, their ticks and their styling."""
    for ax in axes:
        for artist in _added(ax):
            if _OUTSIDE in artist.__dict__:
                artist.__dict__[_STALE] = True  # kept for now: the plot may ask for the same legend again
            else:
                artist.remove()
        ax.relim()
        ax.set_autoscale_on(True)
        ax.set_prop_cycle(None)  # the next unstyled line gets the first colour again, as on a fresh axes
        ax.set_title("")
        ax.set_xlabel("")
        ax.set_ylabel("")
    if fig._suptitle is not None:
        fig._suptitle.set_text("")


def new_figure(rows: int = 1, height_per_row: float = 2.0, width: float = 8.8, *, right: float = 0.98,
               top_in: float = 0.45):
    """A matplotlib Figure (not registered with pyplot, so nothing leaks) and its axes.

    `right` is where the panels end (a fraction of the width: less leaves room for legends
    beside them); `top_in` is the inches above the top panel (the title, and a legend row).
    """
    layout = (rows, height_per_row, width, right, top_in)
    if _recycled is not None and layout in _recycled:
        fig, axes = _recycled[layout]
        _wipe(fig, axes)
        return fig, axes
    # Figures are built on matplotlib's object API, not pyplot: nothing is registered globally,
    # nothing leaks between slider moves, and no backend or display is needed to draw a PNG.
    # Imported here, not at the top: matplotlib is most of `import labkit`'s time, and the
    # grader's sandboxed children never draw.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    height = 0.7 + height_per_row * rows
    fig = Figure(figsize=(width, height), dpi=DPI)
    FigureCanvasAgg(fig)  # its own Agg canvas, kept: png() reuses it and the axes layer it holds
    fig.__dict__[_LAYERED] = {}
    # Fixed margins: constrained layout costs more than the drawing itself on every slider move.
    fig.subplots_adjust(left=0.1, right=right, bottom=0.45 / height, top=1 - top_in / height, hspace=0.12)
    axes = fig.subplots(rows, 1, sharex=True, squeeze=False)[:, 0]
    for ax in axes:
        ax.grid(alpha=0.3, linewidth=0.6)
        ax.spines[["top", "right"]].set_visible(False)
    if _recycled is not None:
        _recycled[layout] = (fig, list(axes))
    return fig, list(axes)


def shade(ax, intervals, colours: dict | None = None, label_once: set | None = None, alpha: float = 0.25) -> None:
    """Shade (start_s, end_s, name) intervals behind a plot; names without a colour are left clear.

    A name's colour is any matplotlib colour, or a pair (colour, alpha) that overrides
    `alpha`. Later intervals are drawn over earlier ones. One collection for them all, each
    box its own colour, not an axvspan per interval: a flapping breaker has dozens of
    intervals, and each artist is something to build and draw on every slider move. With
    `label_once`, a name not in it yet gets a legend key (an empty patch: a collection has
    only one label) and joins it.
    """
    from matplotlib.collections import PolyCollection
    from matplotlib.colors import to_rgba
    from matplotlib.patches import Rectangle

    colours = STATE_COLOURS if colours is None else colours
    rgba = {name: to_rgba(*c) if isinstance(c, tuple) and len(c) == 2 else to_rgba(c, alpha)
            for name, c in colours.items() if c is not None}
    boxes, faces, keys = [], [], []
    for start, end, name in intervals:
        if name in rgba:
            boxes.append([(start, 0), (start, 1), (end, 1), (end, 0)])
            faces.append(rgba[name])
            if label_once is not None and name not in label_once:
                label_once.add(name)
                keys.append(name)
    if boxes:
        # x in data units, y from the bottom (0) to the top (1) of the axes, whatever its limits.
        ax.add_collection(PolyCollection(boxes, transform=ax.get_xaxis_transform(), facecolors=faces,
                                         linewidths=0, zorder=0.5), autolim=False)
    for name in keys:
        label = f"breaker {name.replace('_', '-')}" if name in STATE_COLOURS else name
        ax.add_artist(Rectangle((0, 0), 0, 0, facecolor=rgba[name], linewidth=0, label=label))


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


DPI = 96  # the resolution every labkit figure is drawn at


def png(fig) -> bytes:
    """Render a figure to PNG bytes (what the notebooks and the Play widgets display).

    Text is most of a redraw: tick labels, axis labels, legends, titles. A Play panel moves
    one knob at a time, so a figure made by `new_figure` is drawn in two layers: what
    depends only on the axes (frame, grid, ticks and their labels, axis labels), kept as
    pixels for the last few limits and labels the axes had (see `round_up`), and the
    data, legends and title on top, drawn every time; a legend outside the axes
    (`legend_outside`) belongs to the axes layer. Text is unhinted (at 96 dpi it reads the
    same) and zlib runs at level 1; benchmarks/FINDINGS.md has the figures.
    """
    from matplotlib import rc_context

    buf = io.BytesIO()
    _drop_stale_legends(fig)
    with rc_context({"text.hinting": "no_hinting"}):
        if _LAYERED in fig.__dict__:
            from PIL import Image

            canvas = _draw_layers(fig)
            # RGB: the figure is opaque, and a fourth channel is a third more bytes to compress.
            Image.frombuffer("RGBA", canvas.get_width_height(), canvas.buffer_rgba(), "raw", "RGBA", 0, 1) \
                .convert("RGB").save(buf, format="png", compress_level=1)
        else:
            fig.savefig(buf, format="png", dpi=DPI, pil_kwargs={"compress_level": 1})
    return buf.getvalue()


_LAYERED = "_labkit_layers"  # on figures from new_figure: {axes signature: pixels of the axes layer}
KEPT_LAYERS = 4  # axes layers a figure keeps: a learner nudging a slider back and forth reuses them all


def _draw_layers(fig):
    canvas = fig.canvas
    on_top = _top_layer(fig)
    signature = _axes_signature(fig)
    kept = fig.__dict__[_LAYERED]
    if signature in kept:
        canvas.restore_region(kept[signature])
        kept[signature] = kept.pop(signature)  # most recently used last: the oldest goes first
    else:
        for artist in on_top:
            artist.set_animated(True)  # a figure's draw leaves out animated artists
        try:
            canvas.draw()
        finally:
            for artist in on_top:
                artist.set_animated(False)
        kept[signature] = canvas.copy_from_bbox(fig.bbox)
        while len(kept) > KEPT_LAYERS:
            del kept[next(iter(kept))]
    renderer = canvas.get_renderer()
    for artist in on_top:
        artist.draw(renderer)
    return canvas


def _top_layer(fig) -> list:
    """The artists drawn on every render, axes by axes in z-order, then the figure's texts."""
    out = []
    for ax in fig.axes:
        out += sorted((a for a in _added(ax) if _OUTSIDE not in a.__dict__), key=lambda a: a.get_zorder())
    return out + list(fig.texts)


def _axes_signature(fig) -> tuple:
    """Everything the axes layer's pixels depend on; a different value redraws it."""
    sp = fig.subplotpars
    axes = tuple((ax.get_position().bounds, ax.get_xlim(), ax.get_ylim(), tuple(ax.get_xticks()),
                  tuple(ax.get_yticks()), ax.get_xlabel(), ax.get_ylabel(), ax.get_title(),
                  ax.get_xscale(), ax.get_yscale(), _legend_signature(ax.get_legend())) for ax in fig.axes)
    return (tuple(fig.get_size_inches()), fig.dpi, (sp.left, sp.right, sp.bottom, sp.top, sp.hspace), axes)


_ROUND = (1, 1.2, 1.5, 2, 2.5, 3, 4, 5, 6, 8, 10)


def round_up(value: float) -> float:
    """The smallest of 1, 1.2, 1.5, 2, 2.5, 3, 4, 5, 6 or 8 times a power of ten at or above `value`.

    Plots end their axes at round_up(highest value): a slider move that changes the data a
    little keeps the same axes, so two settings are easy to compare by eye, and the figure's
    axes layer is drawn once, not on every move (`png`).
    """
    if not value > 0 or not math.isfinite(value):
        raise ValueError(f"value must be a positive finite number, got {value!r}")
    k = math.floor(math.log10(value))
    # Divided for negative powers: 3 / 10 is 0.3, where 3 * 0.1 is 0.30000000000000004.
    scaled = [r * 10 ** k if k >= 0 else r / 10 ** -k for r in _ROUND]
    # The tolerance absorbs float noise: round_up(300.0000000001) is 300, not 400.
    return next(x for x in scaled if x >= value * (1 - 1e-9))


def peak(series) -> float:
    """The highest finite value in some series (NaN marks a bin with no data), or 1 if there is none."""
    return max((v for values in series for v in values if math.isfinite(v) and v > 0), default=1.0)


def _legend_signature(legend) -> tuple:
    """What an outside legend's pixels depend on: where it is, its labels and how each key is drawn."""
    if legend is None or _OUTSIDE not in legend.__dict__:
        return ()
    anchor = legend.get_bbox_to_anchor()
    return (legend._loc, anchor.bounds if anchor is not None else None,
            tuple(t.get_text() for t in legend.texts), tuple(_key_style(h) for h in legend.legend_handles))


def fmt(value, digits: int = 0) -> str:
    """Format a number for titles and tables: thousands separators, 'never' for infinity."""
    if isinstance(value, float) and math.isinf(value):
        return "never"
    if isinstance(value, float) and math.isnan(value):
        return "n/a"
    return f"{value:,.{digits}f}"


@not_drawn_while_grading
def plot_calls(runs, labels=None, title: str | None = None):
    """Callers' success rate, load on the service and p99 latency over time, for one or more
    `simulate_calls` runs, with the outage and the breaker's states shaded (lesson 03)."""
    runs = list(runs) if isinstance(runs, (list, tuple)) else [runs]
    labels = list(labels) if labels else [f"run {i + 1}" for i in range(len(runs))]
    if len(labels) != len(runs):
        raise ValueError(f"labels must have one entry per run ({len(runs)}), got {len(labels)}")
    fig, (ax_ok, ax_load, ax_lat) = new_figure(3, 1.7, top_in=0.75)   # a legend row above the panels
    # The outage under the breaker's states, one collection per panel; the legend keys on the top one.
    bands = ([(*runs[0].outage, "outage")] if runs[0].outage else []) + [i for r in runs for i in r.state_intervals()]
    colours = {"outage": (OUTAGE_COLOUR, 0.15), **STATE_COLOURS}
    for ax in (ax_ok, ax_load, ax_lat):
        shade(ax, bands, colours, label_once=set() if ax is ax_ok else None)
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


@not_drawn_while_grading
def plot_latency(run, title: str | None = None):
    """Callers' p50/p95/p99 latency and the service's load over time for one run (lesson 00)."""
    s = run.series()
    lat = run.latency_series()
    fig, (ax_lat, ax_load) = new_figure(2, 1.9, top_in=0.75)   # a legend row above the panels
    latency_percentiles(ax_lat, lat["time_s"], lat["p50_ms"], lat["p95_ms"], lat["p99_ms"])
    legend_outside(ax_lat, loc="lower left", bbox_to_anchor=(0, 1.01), borderaxespad=0, fontsize=8, ncols=3,
                   frameon=False)
    time_series(ax_load, s["time_s"], s["service_load_rps"], "calls to service", 1)
    ax_load.set_xlim(0, run.duration_s)
    ax_lat.set_ylim(0, round_up(1.1 * peak([lat["p99_ms"]])))
    ax_load.set_ylim(0, round_up(1.1 * peak([s["service_load_rps"]])))
    ax_load.set_ylabel("calls (/s)")
    ax_load.set_xlabel("time (s, simulated)")
    if title is None:
        p99 = run.summary()["p99_ms"]
        title = f"{fmt(run.settings['rate_rps'])} requests/s: callers' p99 latency is {fmt(p99)} ms"
    fig.suptitle(title, fontsize=11)
    return Chart(fig)
