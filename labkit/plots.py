"""Plot helpers every lesson draws with: figures that redraw fast, bands, series, a colour-blind-safe palette (lesson 00)."""
from __future__ import annotations

import contextlib
import contextvars
import functools
import inspect
import io
import math
import struct
import weakref
import zlib

from labkit import validate

# Okabe & Ito's palette: distinguishable with every common colour-vision deficiency.
PALETTE = ["#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#000000"]


class Chart:
    """A figure that shows itself as a PNG in a notebook; `.fig` is the matplotlib Figure."""

    def __init__(self, fig):
        self.fig = fig  # None in the grader's sandboxed child, which never draws

    def _repr_png_(self) -> bytes | None:
        return png(self.fig) if self.fig is not None else None

    def __repr__(self) -> str:
        if self.fig is None:
            return "<Chart: not drawn while grading>"
        return f"<Chart: {self.fig.get_suptitle()}>"


def not_drawn_while_grading(plot):
    """Decorator for plot functions: the grader's sandboxed child shows nobody a figure, so it draws none."""

    takes_title = "title" in inspect.signature(plot).parameters

    @functools.wraps(plot)
    def draw(*args, **kwargs):
        from labkit.mode import grading_child

        if takes_title and kwargs.get("title") is not None or len(args) > 1 and takes_title:
            title = kwargs["title"] if "title" in kwargs else args[1]
            if title is not None and not isinstance(title, str):
                raise validate.ArgumentTypeError(f"title must be a string (or None for the default), got {title!r}")
        return Chart(None) if grading_child() else plot(*args, **kwargs)

    return draw


_recycled: contextvars.ContextVar = contextvars.ContextVar("labkit_recycled", default=None)


@contextlib.contextmanager
def recycling(pool: dict):
    """Inside this block `new_figure` reuses the figure it made for the same layout last time (Play).

    Building a figure's axes and their ticks is a third of a Play redraw; wiping the artists
    off a kept figure is nearly free and draws the same PNG. Only for figures that are
    rendered and dropped inside the block: the next redraw wipes them. `pool` maps a
    layout to its `LayeredFigure`; a panel keeps one pool for all its redraws.
    """
    token = _recycled.set(pool)
    try:
        yield
    finally:
        _recycled.reset(token)


# 96 dpi: a matplotlib point is a CSS point, so 8.8 in fills JupyterLab's output area at its
# default width without scaling, and a 10 pt label reads as the interface's own text.
DPI = 96  # the resolution every labkit figure is drawn at
KEPT_LAYERS = 4  # axes layers a figure keeps: a learner nudging a slider back and forth reuses them all


class LayeredFigure:
    """A figure from `new_figure`, drawn in two layers and reusable across redraws (lesson 00).

    Text is most of a redraw (tick labels, axis labels, legends, titles), and a Play panel
    moves one knob at a time. So the figure is drawn as an *axes layer* (frame, grid, ticks
    and their labels, axis labels, axes titles, and legends placed outside the axes with
    `legend_outside`), kept as pixels, and a *top layer* (everything else a plot adds: lines,
    collections, patches, texts, images, legends inside the axes, the figure's title) drawn
    on it every time. Invariants, each tested in tests/test_widgets.py:

    1. `png()` looks like matplotlib drawing the figure in one pass: only where an artist of
       the top layer overlaps one of the axes layer (a band under a grid line) may a pixel differ.
    2. The axes layer is drawn again exactly when its `signature()` changes; the pixels of
       the last KEPT_LAYERS signatures are kept, the least recently used dropped first.
    3. `wipe()` removes what plot functions add and keeps the axes, their ticks and styling;
       the colour cycle restarts, so a redraw on a wiped figure draws what a fresh one does.
    4. An outside legend survives a wipe only until the next `png()`: kept if the redraw asks
       for the same legend again (same labels, keys and placement), removed if it does not.
    """

    _by_figure: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()

    def __init__(self, fig, axes):
        self.fig, self.axes = fig, list(axes)
        self.layers: dict = {}     # axes signature -> pixels of the axes layer, least recently used first
        self.outside: dict = {}    # axes -> (its outside legend, what it was made from)
        self.stale: set = set()    # axes whose outside legend this redraw has not asked for yet
        LayeredFigure._by_figure[fig] = self

    @classmethod
    def of(cls, fig) -> "LayeredFigure | None":
        """The LayeredFigure of a matplotlib figure, or None for a figure `new_figure` did not make."""
        return cls._by_figure.get(fig)

    def legend_outside(self, ax, handles, labels, kwargs: dict):
        made_from = (tuple(labels), tuple(_key_style(h) for h in handles), repr(sorted(kwargs.items())))
        kept = self.outside.get(ax)
        self.stale.discard(ax)
        if kept is not None and kept[1] == made_from and ax.get_legend() is kept[0]:
            return kept[0]
        if ax.get_legend() is not None:
            ax.get_legend().remove()
        legend = ax.legend(handles, labels, **kwargs)
        self.outside[ax] = (legend, made_from)
        return legend

    def wipe(self) -> None:
        """Remove everything the plot functions add, keeping the axes, their ticks and their styling."""
        for ax in self.axes:
            for artist in _added(ax):
                if ax in self.outside and artist is self.outside[ax][0]:
                    self.stale.add(ax)   # kept for now: the redraw may ask for the same legend again
                else:
                    artist.remove()
            ax.relim()
            ax.set_autoscale_on(True)
            ax.set_prop_cycle(None)  # the next unstyled line gets the first colour again, as on a fresh axes
            ax.set_title("")
            ax.set_xlabel("")
            ax.set_ylabel("")
        if self.fig.get_suptitle():
            self.fig.suptitle("")

    def _drop_stale_legends(self) -> None:
        for ax in self.stale:
            legend, _ = self.outside.pop(ax)
            if ax.get_legend() is legend:
                legend.remove()
        self.stale.clear()

    def signature(self) -> tuple:
        """Everything the axes layer's pixels depend on; a different value draws it again."""
        fig, sp = self.fig, self.fig.subplotpars
        axes = tuple((ax.get_position().bounds, ax.get_xlim(), ax.get_ylim(), tuple(ax.get_xticks()),
                      tuple(ax.get_yticks()), ax.get_xlabel(), ax.get_ylabel(), ax.get_title(), ax.get_xscale(),
                      ax.get_yscale(), self.outside[ax][1] if ax in self.outside else ()) for ax in fig.axes)
        return (tuple(fig.get_size_inches()), fig.dpi, (sp.left, sp.right, sp.bottom, sp.top, sp.hspace), axes)

    def _top_layer(self) -> list:
        """The artists drawn on every render, axes by axes in z-order, then the figure's texts."""
        out = []
        for ax in self.fig.axes:
            outside = self.outside.get(ax, (None,))[0]
            out += sorted((a for a in _added(ax) if a is not outside), key=lambda a: a.get_zorder())
        return out + list(self.fig.texts)

    def draw(self):
        """Draw the figure on its canvas: the axes layer from kept pixels when it can, then the top layer."""
        self._drop_stale_legends()
        canvas, on_top, signature = self.fig.canvas, self._top_layer(), self.signature()
        if signature in self.layers:
            canvas.restore_region(self.layers[signature])
            self.layers[signature] = self.layers.pop(signature)  # most recently used last: the oldest goes first
        else:
            for artist in on_top:
                artist.set_animated(True)  # a figure's draw leaves out animated artists
            try:
                canvas.draw()
            finally:
                for artist in on_top:
                    artist.set_animated(False)
            self.layers[signature] = canvas.copy_from_bbox(self.fig.bbox)
            while len(self.layers) > KEPT_LAYERS:
                del self.layers[next(iter(self.layers))]
        renderer = canvas.get_renderer()
        for artist in on_top:
            artist.draw(renderer)
        return canvas


def _added(ax) -> list:
    """What plot functions add to an axes (data, texts, the legend), as opposed to the axes themselves."""
    legend = ax.get_legend()
    return [*ax.collections, *ax.patches, *ax.lines, *ax.texts, *ax.images, *([legend] if legend else [])]


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
    layered = LayeredFigure.of(ax.figure)
    if layered is None:
        return ax.legend(handles, labels, **kwargs)
    return layered.legend_outside(ax, handles, labels, kwargs)


def _key_style(handle) -> tuple:
    """How a legend key for `handle` looks: its type, colours, line and marker styles."""
    style = [type(handle).__name__]
    for getter in ("get_color", "get_facecolor", "get_edgecolor", "get_linestyle", "get_linewidth", "get_alpha",
                   "get_marker", "get_drawstyle", "get_hatch"):
        if hasattr(handle, getter):
            style.append(_frozen(getattr(handle, getter)()))
    return tuple(style)


def _frozen(value):
    """`value` as something hashable: arrays and lists become (nested) tuples."""
    if hasattr(value, "tolist"):
        value = value.tolist()
    if isinstance(value, (list, tuple)):
        return tuple(_frozen(v) for v in value)
    return value


def new_figure(rows: int = 1, height_per_row: float = 2.0, width: float = 8.8, *, right: float = 0.98,
               top_in: float = 0.45):
    """A matplotlib Figure (not registered with pyplot, so nothing leaks) and its axes, drawn in two layers.

    `right` is where the panels end (a fraction of the width: less leaves room for legends
    beside them); `top_in` is the inches above the top panel (the title, and a legend row).
    Inside `recycling(pool)`, the figure made for the same layout last time is wiped and reused.
    """
    layout = (rows, height_per_row, width, right, top_in)
    pool = _recycled.get()
    if pool is not None and layout in pool:
        layered = pool[layout]
        layered.wipe()
        return layered.fig, layered.axes
    # Figures are built on matplotlib's object API, not pyplot: nothing is registered globally,
    # nothing leaks between slider moves, and no backend or display is needed to draw a PNG.
    # Imported here, not at the top: matplotlib is most of `import labkit`'s time, and the
    # grader's sandboxed children never draw.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    height = 0.7 + height_per_row * rows
    fig = Figure(figsize=(width, height), dpi=DPI)
    FigureCanvasAgg(fig)  # its own Agg canvas, kept: png() reuses it and the axes layer it holds
    # Fixed margins: constrained layout costs more than the drawing itself on every slider move.
    fig.subplots_adjust(left=0.1, right=right, bottom=0.45 / height, top=1 - top_in / height, hspace=0.12)
    axes = fig.subplots(rows, 1, sharex=True, squeeze=False)[:, 0]
    for ax in axes:
        ax.grid(alpha=0.3, linewidth=0.6)
        ax.spines[["top", "right"]].set_visible(False)
    layered = LayeredFigure(fig, axes)
    if pool is not None:
        pool[layout] = layered
    return fig, list(axes)


def shade(ax, intervals, colours: dict, label_once: set | None = None, alpha: float = 0.25,
          labels: dict | None = None) -> None:
    """Shade (start_s, end_s, name) intervals behind a plot; names without a colour are left clear.

    A name's colour is any matplotlib colour, or a pair (colour, alpha) that overrides
    `alpha`. Later intervals are drawn over earlier ones. One collection for them all, each
    box its own colour, not an axvspan per interval: a flapping breaker has dozens of
    intervals, and each artist is something to build and draw on every slider move. With
    `label_once`, a name not in it yet gets a legend key (an empty patch: a collection has
    only one label), labelled `labels[name]` (default: the name), and joins it.
    """
    from matplotlib.collections import PolyCollection
    from matplotlib.colors import to_rgba
    from matplotlib.patches import Rectangle

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
        ax.add_artist(Rectangle((0, 0), 0, 0, facecolor=rgba[name], linewidth=0, label=(labels or {}).get(name, name)))


def _steps(edges, values):
    """The vertices of a step line: each value held from its bin's left edge to its right edge."""
    import numpy as np

    x = np.repeat(np.asarray(edges, float), 2)[1:-1]
    return np.column_stack([x, np.repeat(np.asarray(values, float), 2)])


def step_lines(ax, lines, linewidth: float = 1.4) -> None:
    """Step lines, one per (edges, values, colour, linestyle) in `lines` (`values[i]` over bin edges[i]..edges[i+1]), as one collection.

    For axes whose limits the plot sets (no data-limit update). One artist for all the
    lines of an axes, not an `ax.stairs` each: lesson 04's figure built 18 step patches per
    redraw, and building artists was most of what it cost. NaN values leave a gap.
    """
    from matplotlib.collections import LineCollection

    lines = list(lines)
    ax.add_collection(LineCollection([_steps(e, v) for e, v, _, _ in lines], colors=[c for _, _, c, _ in lines],
                                     linestyles=[ls for *_, ls in lines], linewidths=linewidth), autolim=False)


def step_bands(ax, edges, bands, alpha: float = 1.0) -> None:
    """Bands over bins `edges`, one per (bottom, top, colour) in `bands`, as one collection (see `step_lines`)."""
    from matplotlib.collections import PolyCollection
    from matplotlib.colors import to_rgba
    import numpy as np

    bands = list(bands)
    polygons = [np.concatenate([_steps(edges, top), _steps(edges, bottom)[::-1]]) for bottom, top, _ in bands]
    ax.add_collection(PolyCollection(polygons, facecolors=[to_rgba(c, alpha) for _, _, c in bands], linewidths=0),
                      autolim=False)


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
    """Render a figure to PNG bytes (what the notebooks and the Play widgets display).

    A figure from `new_figure` is drawn in its two layers (see `LayeredFigure`); any other
    with matplotlib's `savefig`. Text is unhinted (at 96 dpi it reads the same) and zlib
    runs at level 1; benchmarks/FINDINGS.md has the figures.
    """
    from matplotlib import rc_context

    buf = io.BytesIO()
    layered = LayeredFigure.of(fig)
    with rc_context({"text.hinting": "no_hinting"}):
        if layered is not None:
            buf.write(_png_rgb(layered.draw().buffer_rgba()))
        else:
            fig.savefig(buf, format="png", dpi=DPI, pil_kwargs={"compress_level": 1})
    return buf.getvalue()


def _png_chunk(tag: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))


def _png_rgb(rgba) -> bytes:
    """An opaque RGBA pixel buffer (rows, columns, 4) as an RGB PNG: no row filter, zlib level 1.

    Pillow's encoder tries every PNG row filter on every row and keeps the best: on a Play
    figure (845 x 667) that took 7-10 ms of a redraw, for a file no smaller than unfiltered
    rows give, since a chart is mostly runs of one colour (65 against 66 KB; the figures are
    in benchmarks/FINDINGS.md). RGB: a fourth channel is a third more bytes to compress.
    """
    import numpy as np

    pixels = np.asarray(rgba)
    height, width = pixels.shape[:2]
    rows = np.zeros((height, 1 + 3 * width), np.uint8)   # each row: filter type 0 (none), then R G B ...
    # One strided copy per channel: 0.4 ms, where assigning the (rows, columns, 3) slice took 1.9.
    flat, rgb = pixels.reshape(height, 4 * width), rows[:, 1:]
    for channel in range(3):
        rgb[:, channel::3] = flat[:, channel::4]
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)   # 8 bits, RGB, deflate, no interlace
    return (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header)
            + _png_chunk(b"IDAT", zlib.compress(rows, 1)) + _png_chunk(b"IEND", b""))


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


def fmt(value, digits: int = 0) -> str:
    """Format a number for titles and tables: thousands separators, 'never' for infinity."""
    if isinstance(value, float) and math.isinf(value):
        return "never"
    if isinstance(value, float) and math.isnan(value):
        return "n/a"
    return f"{value:,.{digits}f}"
