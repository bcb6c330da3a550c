"""Widget helpers: Play panels over a pure `run(**knobs)` function, tables, and hint ladders (lesson 00)."""
from __future__ import annotations

import html
import numbers

from labkit import plots, validate
from labkit.clock import gc_paused


class Table:
    """A small table of named numbers that shows as HTML in JupyterLab and as aligned text elsewhere.

    Row names are left-aligned and values right-aligned, as numbers read best; a table of text
    (a timeline of who did what) passes `align="left"` for its values too.
    """

    def __init__(self, rows: dict, title: str = "", columns: list | None = None, *, align: str = "right"):
        validate.instance("rows", rows, dict, "a dict of row name -> value (or a list of values, one per column)")
        validate.instance("title", title, str, "a string")
        self.align = validate.choice("align", align, ("right", "left"))
        columns = None if columns is None else validate.items("columns", columns, (str, numbers.Real), "column names (strings or numbers)")
        self.title, self.columns = title, list(columns) if columns else None
        self.rows = {k: (list(v) if isinstance(v, (list, tuple)) else [v]) for k, v in rows.items()}
        for k, v in self.rows.items():
            if self.columns and len(v) != len(self.columns):
                raise ValueError(f"row {k!r} must have {len(self.columns)} values (one per column), got {len(v)}")

    @staticmethod
    def _cell(value) -> str:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return str(value)
        return plots.fmt(value, 0 if isinstance(value, int) else 1)

    def _grid(self) -> list[list[str]]:
        grid = [[""] + [str(c) for c in self.columns]] if self.columns else []
        return grid + [[str(k)] + [self._cell(v) for v in vals] for k, vals in self.rows.items()]

    def __repr__(self) -> str:
        grid = self._grid()
        widths = [max(len(row[i]) for row in grid) for i in range(len(grid[0]))] if grid else []
        lines = [self.title] if self.title else []
        for row in grid:
            pad = str.ljust if self.align == "left" else str.rjust
            cells = [row[0].ljust(widths[0])] + [pad(c, w) for c, w in zip(row[1:], widths[1:])]
            lines.append("  ".join(cells).rstrip())
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        esc = html.escape
        head = f"<caption style='text-align:left'><b>{esc(self.title)}</b></caption>" if self.title else ""
        grid = self._grid()
        if self.columns:
            head += "<tr>" + "".join(f"<th style='text-align:{self.align}'>{esc(c)}</th>" for c in grid[0]) + "</tr>"
            grid = grid[1:]
        body = "".join("<tr><td style='text-align:left'>" + esc(r[0]) + "</td>"
                       + "".join(f"<td style='text-align:{self.align}'>{esc(c)}</td>" for c in r[1:]) + "</tr>"
                       for r in grid)
        return f"<table class='labkit-table'>{head}{body}</table>"


def _control(name: str, spec):
    import ipywidgets as w

    label = name.replace("_", " ")
    style = {"description_width": "initial"}
    layout = w.Layout(width="330px")
    if isinstance(spec, w.ValueWidget):
        return spec
    if isinstance(spec, bool):
        return w.Checkbox(value=spec, description=label, style=style)
    if isinstance(spec, list):
        if not spec:
            raise ValueError(f"{name}: a dropdown needs at least one option")
        return w.Dropdown(options=spec, value=spec[0], description=label, style=style, layout=layout)
    if isinstance(spec, tuple) and len(spec) == 4:
        lo, hi, step, default = spec
        if not lo <= default <= hi:
            raise ValueError(f"{name}: default must be in [{lo}, {hi}], got {default}")
        ints = all(isinstance(x, int) and not isinstance(x, bool) for x in spec)
        cls = w.IntSlider if ints else w.FloatSlider
        return cls(min=lo, max=hi, step=step, value=default, description=label, style=style,
                   layout=layout, continuous_update=False)
    raise ValueError(f"{name}: a knob is (min, max, step, default), a list of options, a bool or a widget; "
                     f"got {spec!r}")


class Play:
    """A Play panel: knobs above, a summary table and a figure below, re-drawn on every change.

    The table and the figure live in widgets (an HTML and an Image, in one VBox with the
    knobs), so the kernel holds what the panel shows: a notebook reopened, refreshed or
    opened in a second tab while its kernel runs shows the panel as it is now, and it keeps
    working. The output also carries the first render as plain HTML (`static_html`), which
    is what a viewer without widgets shows: GitHub, nbviewer, `labkit execute`'s stored outputs.
    """

    def __init__(self, run, show, **knobs):
        self.run, self.show = run, show
        self.controls = {name: _control(name, spec) for name, spec in knobs.items()}
        self.renders = 0
        self._figures: dict = {}  # the figures plots.recycling reuses across this panel's redraws
        self.table = self.figure = self.panel = None  # the widgets, once displayed

    def values(self) -> dict:
        return {name: c.value for name, c in self.controls.items()}

    def render(self):
        """Run the simulation at the current knob values; returns (Table, png bytes)."""
        # The collector paused for the whole redraw: a run leaves a big trace behind, and a
        # full collection over it in the middle of drawing costs a slider move tens of ms.
        with gc_paused(), plots.recycling(self._figures):
            result = self.run(**self.values())
            table, chart = self.show(result)
            png = plots.png(getattr(chart, "fig", chart))
        self.renders += 1
        return table, png

    def display(self):
        """Show the panel (a widget); without a kernel, print the default run's table."""
        import ipywidgets as w
        from IPython.display import display

        table, png = self.render()
        self.table = w.HTML(_html(table))
        # JupyterLab's own table style (rows, padding, zebra stripes), as an HTML output has it.
        self.table.add_class("jp-RenderedHTMLCommon")
        self.figure = w.Image(value=png, format="png", layout=w.Layout(max_width="100%", height="auto"))
        knobs = w.Box(list(self.controls.values()), layout=w.Layout(flex_flow="row wrap"))
        # flex-start: the table and figure keep their own width (a stretched PNG is a blurred one).
        self.panel = w.VBox([knobs, self.table, self.figure], layout=w.Layout(align_items="flex-start"))

        def redraw(change):
            try:
                table, png = self.render()
            except ValueError as exc:  # the last good figure stays
                self.table.value = _html(Table({"error": str(exc)}, "These settings cannot run"))
                return
            self.table.value = _html(table)
            self.figure.value = png

        for c in self.controls.values():
            c.observe(redraw, "value")
        display(_Shown(self.panel, table, static_html(table, png)))
        return self


def static_html(table, png: bytes) -> str:
    """A Play panel's first render as plain HTML (table, figure, a note): what a viewer without widgets shows."""
    import base64

    src = "data:image/png;base64," + base64.b64encode(png).decode("ascii")
    note = "A Play panel at its default settings. Run the notebook in JupyterLab to move its knobs."
    return (f"<div class='labkit-play-static'>{_html(table)}<img src='{src}' alt='{html.escape(note)}'>"
            f"<p><i>{html.escape(note)}</i></p></div>")


def _html(table) -> str:
    """A summary table as HTML: its own `_repr_html_` (a `Table`), else its text in a <pre>."""
    to_html = getattr(table, "_repr_html_", None)
    return to_html() if callable(to_html) else f"<pre>{html.escape(repr(table))}</pre>"


class _Shown:
    """What Play displays: the panel widget, with a static HTML copy and the table as text beside it.

    A front end that renders widgets (JupyterLab, Notebook 7, VS Code) picks the widget; one
    that does not picks the HTML; plain Python (no kernel) prints the table.
    """

    def __init__(self, panel, table, html_text: str):
        self.panel, self.table, self.html = panel, table, html_text

    def _repr_mimebundle_(self, include=None, exclude=None):
        bundle = self.panel._repr_mimebundle_()
        bundle.update({"text/html": self.html, "text/plain": repr(self.table)})
        return bundle

    def __repr__(self) -> str:
        return repr(self.table)


def hints(exercise_id: str):
    """A button that reveals an exercise's hints one at a time (lesson 00)."""
    import ipywidgets as w
    from IPython.display import display

    from labkit.checking import get
    from labkit.mode import grading_child

    if grading_child():
        return
    ladder = get(exercise_id).hints
    shown = w.HTML()
    button = w.Button(description=f"Show hint 1 of {len(ladder)}", icon="lightbulb-o")
    revealed = []

    def reveal(_):
        if len(revealed) < len(ladder):
            revealed.append(ladder[len(revealed)])
        shown.value = "".join(f"<p><b>Hint {i}.</b> {html.escape(h)}</p>" for i, h in enumerate(revealed, 1))
        if len(revealed) == len(ladder):
            button.disabled, button.description = True, "No more hints"
        else:
            button.description = f"Show hint {len(revealed) + 1} of {len(ladder)}"

    button.on_click(reveal)
    display(w.VBox([button, shown]))
