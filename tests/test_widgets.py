"""labkit.widgets and labkit.plots: tables, Play panels and charts, all testable without a browser (lesson 00)."""
import concurrent.futures
import contextlib
import copy
import functools
import math
import pickle

import ipywidgets as w
import IPython.display
import pytest

import labkit as lk
from labkit import lessons
from labkit.lessons.breaker.panel import OUTAGE_COLOUR, STATE_COLOURS
from labkit.mode import arguments_checked, made_when_read, notebook_cells
from labkit.plots import Chart, fmt, new_figure
from labkit.widgets import Play, Table

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


# --- Table --------------------------------------------------------------------------------------

def test_table_text_aligns_names_left_and_values_right():
    table = Table({"calls": [1234, 5], "p99 latency": [0.25, 12.0]}, title="Runs", columns=["before", "after"])
    assert repr(table).splitlines() == [
        "Runs",
        "             before  after",
        "calls         1,234      5",
        "p99 latency     0.2   12.0",
    ]


def test_table_without_columns_has_one_value_per_row():
    table = Table({"requests": 4500, "success": "99.0 %", "never": math.inf, "flag": True})
    assert repr(table).splitlines() == [
        "requests   4,500",
        "success   99.0 %",
        "never      never",
        "flag        True",
    ]


def test_table_html_escapes_names_values_columns_and_title():
    table = Table({"<b>calls</b>": ["a & b", 3]}, title="x < y", columns=["<i>1</i>", "two"])
    html = table._repr_html_()
    assert "&lt;b&gt;calls&lt;/b&gt;" in html and "<b>calls</b>" not in html
    assert "a &amp; b" in html and "&lt;i&gt;1&lt;/i&gt;" in html and "x &lt; y" in html
    assert html.count("<th") == 3  # a blank corner cell and one per column
    assert html.count("<tr>") == 2 and html.startswith("<table class='labkit-table'>")


def test_table_row_of_the_wrong_length_names_the_row():
    with pytest.raises(ValueError, match=r"row 'short' must have 2 values \(one per column\), got 1"):
        Table({"ok": [1, 2], "short": [1]}, columns=["a", "b"])


# --- Play, without a browser ----------------------------------------------------------------------

class Recorder:
    """A pure run function that remembers the knobs it was called with."""

    def __init__(self):
        self.calls = []

    def __call__(self, **knobs):
        self.calls.append(knobs)
        if knobs.get("rate", 0) < 0:
            raise ValueError(f"rate must be >= 0, got {knobs['rate']}")
        return knobs


def show(result):
    fig, (ax,) = new_figure(1)
    ax.plot([0, 1], [0, result["rate"]])
    return Table({"rate": result["rate"]}), Chart(fig)


def test_render_runs_with_the_knob_defaults_and_returns_a_table_and_png():
    run = Recorder()
    play = Play(run, show, rate=(0, 100, 5, 20), mode=["fast", "slow"], retry=False)
    table, png = play.render()
    assert run.calls == [{"rate": 20, "mode": "fast", "retry": False}]
    assert isinstance(table, Table) and table.rows == {"rate": [20]}
    assert png.startswith(PNG_SIGNATURE)
    assert play.renders == 1


def test_render_accepts_a_bare_matplotlib_figure():
    play = Play(Recorder(), lambda r: (Table({}), new_figure()[0]), rate=(0, 1, 0.1, 0.5))
    assert play.render()[1].startswith(PNG_SIGNATURE)


@pytest.mark.parametrize("spec, widget_type, value", [
    ((1, 10, 1, 3), w.IntSlider, 3),
    ((0, 1, 0.05, 0.5), w.FloatSlider, 0.5),
    ((0, 10, 1, 2.5), w.FloatSlider, 2.5),  # one float makes the whole slider a float slider
    (["a", "b"], w.Dropdown, "a"),
    (True, w.Checkbox, True),
    (w.IntText(value=7), w.IntText, 7),
])
def test_knob_specs_become_controls(spec, widget_type, value):
    control = Play(Recorder(), show, knob=spec).controls["knob"]
    assert type(control) is widget_type and control.value == value


@pytest.mark.parametrize("spec, message", [
    ((1, 10, 1), r"knob: a knob is \(min, max, step, default\)"),
    ("fast", r"knob: a knob is .*got 'fast'"),
    (3, r"knob: a knob is .*got 3"),
    ((1, 10, 1, 11), r"knob: default must be in \[1, 10\], got 11"),
    ((1, 10, 1, 0), r"knob: default must be in \[1, 10\], got 0"),
    ([], r"knob: a dropdown needs at least one option"),
])
def test_bad_knob_specs_name_the_knob(spec, message):
    with pytest.raises(ValueError, match=message):
        Play(Recorder(), show, knob=spec)


@pytest.fixture
def shown(monkeypatch):
    """What Play hands to IPython's display, in order (there is no front end in these tests)."""
    objs = []
    monkeypatch.setattr(IPython.display, "display", lambda *o, **kwargs: objs.extend(o))
    return objs


def test_display_shows_one_panel_of_knobs_table_and_figure_widgets(shown):
    play = Play(Recorder(), show, rate=(0, 100, 5, 20))
    assert play.display() is play
    [output] = shown
    knobs, table, figure = play.panel.children
    assert list(knobs.children) == [play.controls["rate"]]
    assert (table, figure) == (play.table, play.figure)
    assert isinstance(table, w.HTML) and table.value == Table({"rate": 20})._repr_html_()
    assert isinstance(figure, w.Image) and figure.format == "png" and bytes(figure.value).startswith(PNG_SIGNATURE)
    bundle = output._repr_mimebundle_()
    assert bundle["application/vnd.jupyter.widget-view+json"]["model_id"] == play.panel.model_id
    assert bundle["text/plain"] == "rate  20"


def test_the_output_carries_a_static_copy_for_viewers_without_widgets(shown):
    import base64

    play = Play(Recorder(), show, rate=(0, 100, 5, 20)).display()
    static = shown[0]._repr_mimebundle_()["text/html"]
    assert Table({"rate": 20})._repr_html_() in static
    assert "data:image/png;base64," + base64.b64encode(bytes(play.figure.value)).decode() in static
    assert "Run the notebook in JupyterLab to move its knobs" in static
    play.controls["rate"].value = 45
    assert shown[0]._repr_mimebundle_()["text/html"] == static  # a copy of the first render, not live


def test_labkit_execute_stores_the_static_copy_and_drops_the_dead_widget(shown):
    from nbformat.v4 import new_output

    from labkit.assign import _strip_widget_view

    Play(Recorder(), show, rate=(0, 100, 5, 20)).display()
    bundle = shown[0]._repr_mimebundle_()
    panel = new_output("display_data", data=bundle)
    assert _strip_widget_view(panel) and set(panel.data) == {"text/html", "text/plain"}
    assert panel.data["text/html"] == bundle["text/html"]
    bare = new_output("display_data", data=w.Button()._repr_mimebundle_())  # a hints button: nothing to keep
    assert not _strip_widget_view(bare)
    text = new_output("stream", text="hello\n")
    assert _strip_widget_view(text) and text.text == "hello\n"


def test_moving_a_slider_re_renders_into_the_same_widgets(shown):
    run = Recorder()
    play = Play(run, show, rate=(0, 100, 5, 20), mode=["fast", "slow"]).display()
    table, figure, first = play.table, play.figure, play.figure.value
    play.controls["rate"].value = 45
    play.controls["mode"].value = "slow"
    assert play.renders == 3 and len(shown) == 1  # nothing displayed again
    assert run.calls[1:] == [{"rate": 45, "mode": "fast"}, {"rate": 45, "mode": "slow"}]
    assert (play.table, play.figure) == (table, figure)
    assert table.value == Table({"rate": 45})._repr_html_()
    assert bytes(figure.value).startswith(PNG_SIGNATURE) and figure.value != first


def test_what_a_reopened_notebook_fetches_from_the_kernel_is_the_current_panel(shown):
    """A front end that reconnects asks the kernel for every widget's state (ipywidgets' request_states)."""
    play = Play(Recorder(), show, rate=(0, 100, 5, 20)).display()
    play.controls["rate"].value = 45
    state = w.Widget.get_manager_state(widgets=[play.panel, play.table, play.figure, *play.controls.values()])
    models = state["state"]
    assert models[play.table.model_id]["state"]["value"] == Table({"rate": 45})._repr_html_()
    assert models[play.controls["rate"].model_id]["state"]["value"] == 45
    assert models[play.panel.model_id]["state"]["children"][1:] == [f"IPY_MODEL_{play.table.model_id}",
                                                                    f"IPY_MODEL_{play.figure.model_id}"]


def test_settings_that_cannot_run_show_an_error_table_instead_of_raising(shown):
    play = Play(Recorder(), show, rate=(-10, 100, 5, 20)).display()
    good = play.figure.value
    play.controls["rate"].value = -5
    error = Table({"error": "rate must be >= 0, got -5"}, "These settings cannot run")._repr_html_()
    assert play.table.value == error
    assert play.figure.value == good  # the last good figure stays
    play.controls["rate"].value = 30  # and the panel keeps working
    assert play.table.value == Table({"rate": 30})._repr_html_() and play.figure.value != good


def test_a_redraw_that_fails_otherwise_raises_into_the_callback():
    """Only ValueError means "these settings cannot run"; any other error is a bug, and ipywidgets reports it."""
    def broken(rate):
        if rate != 20:
            raise RuntimeError("broken on purpose")
        return {"rate": rate}

    play = Play(broken, show, rate=(0, 100, 5, 20)).display()
    with pytest.raises(RuntimeError, match="broken on purpose"):
        play.controls["rate"].value = 25


def test_display_without_a_kernel_prints_the_default_run(capsys):
    Play(Recorder(), show, rate=(0, 100, 5, 20)).display()
    assert capsys.readouterr().out == "rate  20\n"


def test_play_shows_nothing_inside_the_grading_child(shown, monkeypatch):
    monkeypatch.setenv("LABKIT_GRADING_CHILD", "1")
    lk.queueing.play()
    assert shown == []


# --- plots --------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def small_runs():
    return {label: lk.breaker.simulate(seed=1, duration_s=30, outage_start_s=10, outage_s=5, retries=r)
            for label, r in (("plain", 0), ("retries", 2))}


def test_breaker_plot_draws_a_png_chart_with_a_summary_title(small_runs):
    chart = lk.breaker.plot(small_runs)
    assert chart._repr_png_().startswith(PNG_SIGNATURE)
    calls = fmt(small_runs["retries"].summary()["service_calls"])
    assert repr(chart).startswith(f"<Chart: retries: {calls} calls reached the service; ")


def test_breaker_plot_uses_a_given_title_and_accepts_one_run(small_runs):
    chart = lk.breaker.plot(small_runs["plain"], title="Retry storm")
    assert repr(chart) == "<Chart: Retry storm>"
    assert len(chart.fig.axes) == 3


def test_breaker_plot_takes_its_labels_from_a_dict_of_runs_not_a_list(small_runs):
    with pytest.raises(ValueError, match=r"runs must be a non-empty dict of label -> run"):
        lk.breaker.plot(list(small_runs.values()))
    with pytest.raises(ValueError, match=r"runs must map labels to what lk\.breaker\.simulate returns"):
        lk.breaker.plot({"plain": small_runs["plain"], "retries": "a run"})


# A short run of each lesson (found by discovery), for its plot.
SHORT_RUNS = {
    "breaker": lambda: lk.breaker.simulate(seed=1, duration_s=5, outage_start_s=1, outage_s=2),
    "queueing": lambda: lk.queueing.simulate(rate_rps=50, seed=1),
    "replicas": lambda: lk.replicas.simulate(seed=1, duration_s=5),
    "caching": lambda: lk.caching.simulate(seed=1, duration_s=5),
    "bulkhead": lambda: lk.bulkhead.simulate(seed=1, duration_s=4.0, incident=(1.0, 3.0)),
}


def test_every_lesson_has_a_short_run_for_its_plot():
    assert set(SHORT_RUNS) == set(lessons.topics())


@pytest.mark.parametrize("topic", sorted(SHORT_RUNS))
def test_plots_draw_nothing_inside_the_grading_child(topic, monkeypatch):
    plot = lessons.lesson(topic).plot
    run = SHORT_RUNS[topic]()
    monkeypatch.setenv("LABKIT_GRADING_CHILD", "1")
    chart = plot(run)
    assert chart.fig is None and chart._repr_png_() is None
    assert repr(chart) == "<Chart: not drawn while grading>"
    monkeypatch.delenv("LABKIT_GRADING_CHILD")
    assert plot(run)._repr_png_().startswith(PNG_SIGNATURE)


# --- demo runs in the grader's child: made when read (labkit.mode) ---------------------------------

@pytest.mark.parametrize("topic", sorted(SHORT_RUNS))
def test_a_demo_run_in_the_grading_child_is_made_when_first_read_and_is_the_same_run(topic):
    lesson = lessons.lesson(topic)
    plain = SHORT_RUNS[topic]()
    with notebook_cells():
        run = SHORT_RUNS[topic]()
        table = lesson.summarize({"a": run})
    made = type(plain)
    assert isinstance(run, made) and type(run) is not made   # a stand-in: nothing simulated yet
    assert isinstance(table, Table) and type(table) is not Table
    assert type(run) is not made   # summarizing a stand-in reads nothing
    assert repr(table) == repr(lesson.summarize({"a": plain}))   # reading the table makes it, and the run
    assert type(table) is Table and type(run) is made
    assert run.summary() == plain.summary() and run.settings == plain.settings


def test_a_stand_in_makes_its_object_once_on_any_read_and_becomes_it():
    made = []

    @made_when_read(Table)
    def tabulate(rows, title=""):
        arguments_checked()
        made.append(dict(rows))
        return Table(rows, title)

    @made_when_read(Table)
    def at_once(rows):   # never says its arguments are checked: made at the call
        return Table(rows)

    rows = {"calls": 1}
    with notebook_cells():
        table = tabulate(rows, title="t")
    rows["calls"] = 2   # the arguments were copied at the call
    assert made == [] and tabulate({"calls": 3}).rows == {"calls": [3]} and made == [{"calls": 3}]
    assert vars(table)["rows"] == {"calls": [1]} and made[-1] == {"calls": 1}
    assert type(table) is Table and table.title == "t" and len(made) == 2
    with notebook_cells():
        written, deleted = tabulate({}), tabulate({})
    written.title = "mine"
    del deleted.title
    assert written.title == "mine" and type(written) is Table and not hasattr(deleted, "title")
    with notebook_cells():
        copied, deep, pickled = tabulate({"calls": 4}), tabulate({"calls": 5}), tabulate({"calls": 6})
    assert type(copy.copy(copied)) is Table and copy.copy(copied).rows == {"calls": [4]}
    assert type(copy.deepcopy(deep)) is Table and pickle.loads(pickle.dumps(pickled)).rows == {"calls": [6]}
    with notebook_cells():
        assert type(at_once({"calls": 7})) is Table


@pytest.mark.parametrize("call, error, name", [
    (lambda: lk.caching.simulate(rate=50), TypeError, "rate"),
    (lambda: lk.caching.simulate(l1_items=-1), ValueError, "l1_items"),          # a knob (Knobs.validates)
    (lambda: lk.replicas.simulate(duration_s=-1), ValueError, "duration_s"),     # checked in the function
    (lambda: lk.replicas.simulate(when_all_lagging="x"), ValueError, "when_all_lagging"),   # by the router it builds
    (lambda: lk.breaker.simulate(latency_s=-1), ValueError, "latency_s"),        # by the Service it builds
    (lambda: lk.caching.simulate_hot_key(app=3), TypeError, "app"),
    (lambda: lk.bulkhead.simulate(checkout_workers=40), ValueError, "add up to"),
    (lambda: lk.replicas.summarize({"a": 3}), TypeError, "lk.replicas.simulate"),
])
def test_a_demo_run_s_bad_argument_fails_at_the_call_as_in_a_notebook(call, error, name):
    with pytest.raises(error, match=name):
        call()
    with notebook_cells(), pytest.raises(error, match=name):
        call()


def test_a_demo_run_given_the_learner_s_code_is_made_at_once_as_in_a_notebook():
    # The learner's code then runs when, as often as, and against the state it would in a notebook.
    built = []

    def router(replica_set):
        built.append(replica_set)
        return lk.replicas.ReplicaRouter(replica_set)

    with notebook_cells():
        runs = [lk.replicas.simulate(duration_s=5, router=router),
                lk.replicas.simulate(duration_s=5, spikes=(s for s in [lk.LagSpike(1, 2, extra_s=1)])),
                lk.caching.stale_set_race(type("Mine", (lk.caching.CacheAside,), {}))]
        assert len(built) == 1 and all(type(r) in (lk.replicas.ReplicasRun, lk.caching.RaceRun) for r in runs)
        assert runs[1].summary() == lk.replicas.simulate(duration_s=5, spikes=[lk.LagSpike(1, 2, extra_s=1)]).summary()
        with pytest.raises(ZeroDivisionError):
            lk.replicas.simulate(duration_s=5, router=lambda rs: 1 / 0)


def test_a_stand_in_that_fails_raises_the_same_error_on_every_read_without_trying_again():
    tries, entered = [], []

    @made_when_read(Table)
    def broken():
        arguments_checked()
        tries.append(1)
        raise MemoryError("too big")

    @contextlib.contextmanager
    def allowance():
        entered.append(1)
        yield

    with notebook_cells(allowance):
        table = broken()
    for _ in range(2):
        with pytest.raises(MemoryError, match="too big"):
            table.rows
    assert tries == [1] and entered == [1]


def test_a_first_pass_in_one_thread_leaves_the_others_alone():
    with notebook_cells():
        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            reads = list(pool.map(lambda seed: lk.replicas.simulate(seed=seed, duration_s=5).summary()["reads"],
                                  range(8)))
    assert reads == [lk.replicas.simulate(seed=s, duration_s=5).summary()["reads"] for s in range(8)]
    assert type(lk.simulate_calls(duration_s=5, outage_start_s=1, outage_s=2)) is lk.CallsRun   # no first pass left on


def test_outside_a_notebook_s_cells_in_the_grading_child_a_run_is_made_at_the_call(monkeypatch):
    # The child also runs checks' scenarios (replay.record), which read their runs at once.
    monkeypatch.setenv("LABKIT_GRADING_CHILD", "1")
    assert type(SHORT_RUNS["replicas"]()) is lk.replicas.ReplicasRun


def test_queueing_plot_draws_a_png_chart():
    run = lk.queueing.simulate(rate_rps=100, seed=2)
    chart = lk.queueing.plot(run)
    assert chart._repr_png_().startswith(PNG_SIGNATURE)
    assert repr(chart).startswith("<Chart: 100 requests/s: callers' p99 latency is ")
    with pytest.raises(ValueError, match=r"runs must hold one run for this figure, got 2"):
        lk.queueing.plot({"100 requests/s": run, "again": run})


@pytest.mark.parametrize("value, digits, expected", [
    (math.inf, 0, "never"),
    (-math.inf, 1, "never"),
    (math.nan, 0, "n/a"),
    (1234567.891, 0, "1,234,568"),
    (1234.5678, 2, "1,234.57"),
    (42, 0, "42"),
    (0.04, 1, "0.0"),
])
def test_fmt_formats_numbers_for_titles(value, digits, expected):
    assert fmt(value, digits) == expected


@pytest.mark.parametrize("topic, knob, first, second", [
    ("breaker", "failure_threshold", 1, 5),
    ("queueing", "rate_rps", 400, 100),
    ("replicas", "replicas", 0, 3),
    ("caching", "servers", 16, 2),
])
def test_a_play_panel_that_recycles_its_figure_draws_what_a_fresh_figure_draws(topic, knob, first, second):
    """Play reuses its figure between redraws (plots.recycling); nothing of the last run may remain."""
    panel = lessons.lesson(topic).PANEL
    play = Play(panel.runs, panel.show, **{knob: (min(first, second), max(first, second), 1, first)})
    play.render()
    play.controls[knob].value = second
    _, recycled = play.render()
    assert len(play._figures) == 1
    fresh = lk.plots.png(panel.show(panel.runs(**{knob: second}))[1].fig)
    assert recycled == fresh


def _pixels(png_bytes):
    import io

    import numpy as np
    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(png_bytes)).convert("RGB")).astype(int)


def test_a_redraw_that_keeps_the_axes_reuses_their_layer_and_draws_what_a_fresh_figure_draws():
    panel = lk.breaker.PANEL
    play = Play(panel.runs, panel.show, failure_threshold=(1, 50, 1, 5))
    play.render()
    (layered,) = play._figures.values()
    (signature, pixels), = layered.layers.items()
    play.controls["failure_threshold"].value = 6   # same traffic: the same axes, another breaker
    _, redrawn = play.render()
    assert layered.layers == {signature: pixels}
    assert redrawn == lk.plots.png(panel.show(panel.runs(failure_threshold=6))[1].fig)
    play.controls["failure_threshold"].value = 5
    assert play.render()[1] == lk.plots.png(panel.show(panel.runs(failure_threshold=5))[1].fig)


def test_a_redraw_whose_axes_change_draws_another_layer_and_keeps_the_last_few():
    panel = lk.queueing.PANEL
    play = Play(panel.runs, panel.show, rate_rps=(100, 400, 100, 100))
    play.render()
    (layered,) = play._figures.values()
    kept = layered.layers
    first = dict(kept)
    play.controls["rate_rps"].value = 400          # more load: taller axes, other tick labels
    _, redrawn = play.render()
    assert len(kept) == 2 and first.items() <= kept.items()
    assert redrawn == lk.plots.png(panel.show(panel.runs(rate_rps=400))[1].fig)
    play.controls["rate_rps"].value = 100          # back: the first layer is reused, not redrawn
    assert play.render()[1] == lk.plots.png(panel.show(panel.runs(rate_rps=100))[1].fig)
    assert len(kept) == 2 and first.items() <= kept.items()
    for latency in (10.0, 20.0, 40.0, 80.0, 160.0):  # each a different y-axis
        play.run = functools.partial(panel.runs, latency_ms=latency)
        play.render()
    assert len(kept) == lk.plots.KEPT_LAYERS and not first.items() <= kept.items()


def test_a_legend_outside_the_axes_is_drawn_with_them_and_a_new_label_redraws_them():
    panel = lk.breaker.PANEL
    play = Play(panel.runs, panel.show, outage_s=(0, 60, 5, 30))
    play.render()
    (layered,) = play._figures.values()
    fig = layered.fig
    legend = fig.axes[0].get_legend()
    assert legend not in layered._top_layer()
    kept = layered.layers
    play.controls["outage_s"].value = 0            # no outage: the legend loses its "outage" entry
    _, redrawn = play.render()
    assert "outage" not in [t.get_text() for t in fig.axes[0].get_legend().texts]
    assert len(kept) == 2
    assert redrawn == lk.plots.png(panel.show(panel.runs(outage_s=0))[1].fig)


def test_an_outside_legend_whose_labels_change_redraws_the_axes_layer():
    def draw(label, pool):
        with lk.plots.recycling(pool):
            fig, (ax,) = new_figure(1)
            ax.plot([0, 1], [0, 1], label=label)
            ax.set_xlim(0, 1)
            ax.set_ylim(0, 1)
            lk.plots.legend_outside(ax, loc="center left", bbox_to_anchor=(1.01, 0.5))
            return fig, lk.plots.png(fig)

    pool: dict = {}
    fig, _ = draw("first label", pool)
    again, png = draw("second label", pool)     # the same axes, another legend
    assert again is fig and len(lk.plots.LayeredFigure.of(fig).layers) == 2
    assert png == draw("second label", {})[1]


def test_the_breaker_figure_legend_keys_the_outage_and_the_breaker_states_in_their_colours():
    from matplotlib.colors import to_rgba

    fig = lk.breaker.PANEL.show(lk.breaker.PANEL.runs())[1].fig
    legend = fig.axes[0].get_legend()
    keys = {t.get_text(): h for t, h in zip(legend.texts, legend.legend_handles)}
    assert list(keys) == ["outage", "breaker open", "breaker half-open", "without breaker", "with breaker"]
    assert keys["outage"].get_visible() and keys["breaker open"].get_visible()
    assert keys["outage"].get_facecolor() == to_rgba(OUTAGE_COLOUR, 0.15)
    assert keys["breaker open"].get_facecolor() == to_rgba(*STATE_COLOURS["open"])
    bands = [c for c in fig.axes[1].collections if len(c.get_paths()) > 1]
    assert len(bands) == 1   # the outage and every state interval: one collection per panel


def test_shade_takes_any_matplotlib_colour_or_a_colour_with_its_own_alpha():
    from matplotlib.colors import to_rgba

    fig, (ax,) = new_figure(1)
    lk.plots.shade(ax, [(0, 1, "rgb"), (1, 2, "pair"), (2, 3, "clear")],
                   {"rgb": (0.1, 0.2, 0.3), "pair": ("#D55E00", 0.5), "clear": None}, alpha=0.25)
    (bands,) = ax.collections
    assert [tuple(c) for c in bands.get_facecolor()] == [to_rgba((0.1, 0.2, 0.3), 0.25), to_rgba("#D55E00", 0.5)]


def test_shade_keys_each_coloured_name_once_under_its_label():
    fig, (ax,) = new_figure(1)
    lk.plots.shade(ax, [(0, 1, "open"), (1, 2, "closed"), (2, 3, "open"), (3, 4, "half_open")],
                   {"open": "#D55E00", "half_open": "#F0E442", "closed": None}, label_once=set(),
                   labels={"open": "breaker open"})
    assert ax.get_legend_handles_labels()[1] == ["breaker open", "half_open"]   # no label given: the name


def _draw_with_legend(pool, colour="C0", legend=True):
    with lk.plots.recycling(pool):
        fig, (ax,) = new_figure(1)
        ax.plot([0, 1], [0, 1], label="a line", color=colour)
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        made = lk.plots.legend_outside(ax, loc="center left", bbox_to_anchor=(1.01, 0.5)) if legend else None
        return fig, made, lk.plots.png(fig)


def test_a_recycled_figure_keeps_an_outside_legend_asked_for_again_and_rebuilds_a_changed_one():
    pool: dict = {}
    _, first, _ = _draw_with_legend(pool)
    _, again, png = _draw_with_legend(pool)
    assert again is first                                   # same labels, keys and settings: kept
    assert png == _draw_with_legend({})[2]
    _, recoloured, png = _draw_with_legend(pool, colour="C3")
    assert recoloured is not first                          # another key colour: built again
    assert png == _draw_with_legend({}, colour="C3")[2]


def test_a_redraw_that_asks_for_no_legend_shows_none():
    pool: dict = {}
    _draw_with_legend(pool)
    fig, _, png = _draw_with_legend(pool, legend=False)
    assert fig.axes[0].get_legend() is None
    assert png == _draw_with_legend({}, legend=False)[2]


@pytest.mark.parametrize("value, expected", [(1, 1), (1.05, 1.2), (101, 120), (0.29, 0.3), (3.01, 4), (7, 8),
                                             (8.5, 10), (300.0000000001, 300), (0.00042, 0.0005), (1234, 1500)])
def test_round_up_picks_the_next_round_number(value, expected):
    assert lk.plots.round_up(value) == expected


@pytest.mark.parametrize("value", [0, -1, math.nan, math.inf])
def test_round_up_refuses_what_has_no_round_number_above_it(value):
    with pytest.raises(ValueError, match="value must be a positive finite number"):
        lk.plots.round_up(value)


def test_axes_end_at_round_numbers_so_a_small_move_keeps_them():
    panel = lk.breaker.PANEL
    before = panel.show(panel.runs(rate_rps=50))[1].fig
    after = panel.show(panel.runs(rate_rps=60))[1].fig
    assert [ax.get_ylim() for ax in before.axes] == [ax.get_ylim() for ax in after.axes]
    assert all(ax.get_xlim() == (0, 90) for ax in after.axes)
