"""The invariants of labkit.plots.LayeredFigure, the two-layer figure every Play panel redraws."""
from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from labkit import lessons, plots
from labkit.plots import KEPT_LAYERS, LayeredFigure, legend_outside, new_figure, png, recycling

LESSONS = lessons.discover()


def _pixels(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


def _one_pass(fig) -> np.ndarray:
    """The figure drawn by matplotlib in one pass, as `savefig` draws it."""
    from matplotlib import rc_context

    buf = io.BytesIO()
    with rc_context({"text.hinting": "no_hinting"}):
        fig.savefig(buf, format="png", dpi=plots.DPI)
    return _pixels(buf.getvalue())


@pytest.mark.parametrize("lesson", LESSONS, ids=[m.NOTEBOOK for m in LESSONS])
def test_two_layers_look_like_one_pass(lesson):
    """Only where the two layers overlap (a band under a grid line) may a pixel differ."""
    _, chart = lesson.PANEL.show(lesson.PANEL.runs())
    layered, plain = _pixels(png(chart.fig)).astype(int), _one_pass(chart.fig).astype(int)
    assert layered.shape == plain.shape
    assert (abs(layered - plain).max(axis=2) > 40).mean() < 0.002


def _draws(fig) -> list:
    """Count the full draws of a figure's canvas (an axes layer being drawn)."""
    calls = []
    real = fig.canvas.draw

    def draw(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    fig.canvas.draw = draw
    return calls


def _plot(pool, top: float, label: str = "series", legend: bool = True):
    with recycling(pool):
        fig, (ax,) = new_figure(1, 2.0)
        ax.plot([0, 1, 2], [0, top / 2, top], label=label)
        ax.set_ylim(0, plots.round_up(top))
        ax.set_xlim(0, 2)
        made = legend_outside(ax, loc="center left", bbox_to_anchor=(1.01, 0.5)) if legend else None
        return fig, made, png(fig)


def test_the_axes_layer_is_drawn_again_exactly_when_its_signature_changes():
    pool: dict = {}
    fig, _, _ = _plot(pool, 9.0)
    draws = _draws(fig)
    _plot(pool, 9.5)                    # same limits (round_up(9.5) = 10), same legend: reuse the layer
    assert draws == []
    _plot(pool, 14.0)                   # new limits: a new axes layer
    assert draws == [1]
    _plot(pool, 9.0)                    # back to the first limits: its pixels are still kept
    assert draws == [1]
    layered = LayeredFigure.of(fig)
    for top in (20.0, 40.0, 70.0, 90.0, 300.0):
        _plot(pool, top)
    assert len(layered.layers) == KEPT_LAYERS     # the least recently used are dropped


def test_a_reused_figure_draws_what_a_fresh_one_draws():
    pool: dict = {}
    _plot(pool, 9.0, label="first")
    _, _, reused = _plot(pool, 14.0, label="second")
    _, _, fresh = _plot({}, 14.0, label="second")
    assert np.array_equal(_pixels(reused), _pixels(fresh))


def test_wipe_keeps_the_axes_and_removes_what_plots_added_and_restarts_the_colours():
    pool: dict = {}
    fig, _, _ = _plot(pool, 9.0, legend=False)
    with recycling(pool):
        again, (ax,) = new_figure(1, 2.0)
        assert again is fig
        assert not ax.lines and not ax.collections and not ax.texts and ax.get_legend() is None
        assert ax.get_xlabel() == ax.get_title() == "" and fig.get_suptitle() == ""
        line, = ax.plot([0, 1], [0, 1])
        fresh_fig, (fresh_ax,) = new_figure(1, 2.1)   # another layout: a new figure
        fresh_line, = fresh_ax.plot([0, 1], [0, 1])
    assert line.get_color() == fresh_line.get_color()


def test_an_outside_legend_is_kept_when_asked_again_and_dropped_when_not():
    pool: dict = {}
    _, legend, _ = _plot(pool, 9.0)
    fig, again, _ = _plot(pool, 9.0)
    assert again is legend                        # same labels, keys and placement: not built again
    _, changed, _ = _plot(pool, 9.0, label="other")
    assert changed is not legend
    fig, none, _ = _plot(pool, 9.0, legend=False)
    assert none is None and fig.axes[0].get_legend() is None   # not asked for: removed before drawing


def test_a_figure_not_made_by_new_figure_is_drawn_in_one_pass():
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(2, 1), dpi=plots.DPI)
    FigureCanvasAgg(fig)
    fig.subplots().plot([0, 1], [1, 0])
    assert LayeredFigure.of(fig) is None
    assert png(fig).startswith(b"\x89PNG")


def test_new_limits_with_the_same_ticks_draw_a_new_axes_layer():
    pool: dict = {}

    def draw(top):
        with recycling(pool):
            fig, (ax,) = new_figure(1, 2.0)
            ax.plot([0, 1], [0, 1])
            ax.set_xlim(0, 1)
            ax.set_ylim(0, top)
            ax.set_yticks([0, 1])
            png(fig)
            return fig

    fig = draw(2.0)
    draws = _draws(fig)
    draw(3.0)
    assert draws == [1]


@pytest.mark.parametrize("fill", [False, True], ids=["line", "band"])
def test_step_collections_draw_what_matplotlib_stairs_draws(fill):
    """plots.step_lines and step_bands draw ax.stairs' pixels, as one collection, without a data-limit update."""
    values, edges, below = [3.0, 7.5, 1.0, 4.0], [0.0, 1.0, 2.0, 3.0, 4.0], [0.5, 1.0, 0.0, 2.0]
    colour = plots.PALETTE[1]

    def draw(how) -> np.ndarray:
        fig, (ax,) = new_figure(1, 2.0)
        ax.set_xlim(0, 4)
        ax.set_ylim(0, 10)
        how(ax)
        return _pixels(png(fig)).astype(int)

    if fill:
        ours = lambda ax: plots.step_bands(ax, edges, [(below, values, colour)], alpha=0.8)  # noqa: E731
        theirs = lambda ax: ax.stairs(values, edges, baseline=below, fill=True, color=colour, alpha=0.8,  # noqa: E731
                                      linewidth=0)
    else:
        ours = lambda ax: plots.step_lines(ax, [(edges, values, colour, "--")], linewidth=1.4)  # noqa: E731
        theirs = lambda ax: ax.stairs(values, edges, baseline=None, color=colour, linestyle="--",  # noqa: E731
                                      linewidth=1.4)
    differ = abs(draw(ours) - draw(theirs)).max(axis=2) > 40
    assert differ.mean() < 0.001   # a line's ends: a collection draws a path open where a patch closes it
    fig, (ax,) = new_figure(1, 2.0)
    ax.set_autoscale_on(False)
    before = ax.dataLim.frozen()
    ours(ax)
    assert ax.dataLim.bounds == before.bounds  # nothing walked the path to grow the limits


def test_step_lines_leave_a_gap_at_nan():
    """A bin with no value (a success rate with no requests) is not drawn, as with ax.stairs."""
    fig, (ax,) = new_figure(1, 2.0)
    ax.set_xlim(0, 4)
    ax.set_ylim(0, 10)
    plots.step_lines(ax, [([0.0, 1.0, 2.0, 3.0, 4.0], [5.0, float("nan"), float("nan"), 5.0], "#ff0000", "-")],
                     linewidth=3)
    pixels = _pixels(png(fig)).astype(int)
    red = (pixels[:, :, 0] > 200) & (pixels[:, :, 1] < 80) & (pixels[:, :, 2] < 80)
    columns = np.nonzero(red.any(axis=0))[0]
    x = lambda data_x: ax.transData.transform((data_x, 0))[0]  # noqa: E731  (figure dpi = png's dpi)
    drawn = lambda a, b: ((columns > x(a)) & (columns < x(b))).any()  # noqa: E731
    assert drawn(0.1, 0.9) and drawn(3.1, 3.9) and not drawn(1.2, 2.8)
