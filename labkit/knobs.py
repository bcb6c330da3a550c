"""Knobs, declared once, and the Play panel built from them (lesson 00).

A lesson declares each knob one time: its name, range, step, default, unit and label.
Everything else is derived from that declaration: the slider or dropdown of the Play
panel, the argument checks of the lesson's `simulate` (an error names the knob and its
range), the cached baseline of a panel that compares two designs, the benchmark's knob
moves and extreme settings, and the browser test's key presses.
"""
from __future__ import annotations

import functools
import inspect
import numbers

from labkit import validate


class Knob:
    """A numeric knob: `name` in [lo, hi] by `step`, starting at `default` (lesson 00).

    All-int declarations make an int knob (an IntSlider; floats are refused); declare a knob
    whose parameter is a float with floats (`Knob("rate_rps", 5.0, 80.0, 5.0, 25.0)`).
    """

    def __init__(self, name: str, lo, hi, step, default, *, unit: str = "", label: str | None = None):
        if not (isinstance(name, str) and name.isidentifier()):
            raise ValueError(f"name must be a Python identifier, got {name!r}")
        self.name, self.unit = name, unit
        self.label = label if label is not None else name.replace("_", " ")
        self.integer = all(isinstance(x, numbers.Integral) and not isinstance(x, bool) for x in (lo, hi, step, default))
        for part, value in (("lo", lo), ("hi", hi), ("step", step)):
            validate.number(f"{name}: {part}", value)
        if not lo < hi:
            raise ValueError(f"{name}: lo must be < hi, got [{lo}, {hi}]")
        validate.number(f"{name}: step", step, lo=0, lo_open=True, hi=hi - lo)
        self.lo, self.hi, self.step = lo, hi, step
        self.default = self.check(default)

    def check(self, value):
        """`value` if it is allowed for this knob, else a ValueError naming the knob and its range."""
        return validate.number(self.name, value, lo=self.lo, hi=self.hi, integer=self.integer)

    @property
    def ends(self) -> tuple:
        """The knob's two extreme settings."""
        return (self.lo, self.hi)

    def neighbour(self, value):
        """A setting one step from `value`: up if the range allows, else down."""
        up = value + self.step
        return up if up <= self.hi + 1e-9 * abs(self.step) else value - self.step

    def widget(self, value=None):
        """The slider for this knob, at `value` (default: the declared default); re-runs when let go."""
        import ipywidgets as w

        value = self.default if value is None else self.check(value)
        common = dict(min=self.lo, max=self.hi, step=self.step, value=value, description=self.label,
                      style={"description_width": "initial"}, layout=w.Layout(width="330px"), continuous_update=False)
        if self.integer:
            return w.IntSlider(**common)
        step = f"{self.step:g}"
        decimals = len(step.split(".")[1]) if "." in step else 0   # as many as the step has: 25 reads "25", not "25.00"
        return w.FloatSlider(readout_format=f".{decimals}f", **common)

    def __repr__(self) -> str:
        unit = f" {self.unit}" if self.unit else ""
        return f"Knob({self.name!r}, {self.lo:g}..{self.hi:g}{unit} by {self.step:g}, default {self.default:g})"


_DEFAULT = object()   # "no value given", where None can be an option


class Choice:
    """A knob with a few named options: a dropdown (lesson 00).

    `options` is a list of values, or a dict of label -> value (for example
    {"off": None, "sticky": "sticky"}); `default` is a value (first option if not given).
    """

    def __init__(self, name: str, options, default=None, *, label: str | None = None, unit: str = ""):
        if not (isinstance(name, str) and name.isidentifier()):
            raise ValueError(f"name must be a Python identifier, got {name!r}")
        pairs = list(options.items()) if isinstance(options, dict) else [(str(v), v) for v in options]
        if not pairs:
            raise ValueError(f"{name}: options must not be empty")
        self.name, self.unit = name, unit
        self.label = label if label is not None else name.replace("_", " ")
        self.options = tuple(pairs)
        self.values = tuple(v for _, v in pairs)
        self.default = self.values[0] if default is None and None not in self.values else self.check(default)

    def check(self, value):
        """`value` if it is one of the options (by value or by label), else a ValueError listing them."""
        if value in self.values:
            return value
        for label, v in self.options:
            if value == label:
                return v
        return validate.choice(self.name, value, self.values)

    @property
    def ends(self) -> tuple:
        """Every option: a dropdown's most expensive setting can be any of them."""
        return self.values

    def neighbour(self, value):
        """The next option after `value` (wrapping round)."""
        i = self.values.index(self.check(value))
        return self.values[(i + 1) % len(self.values)]

    def widget(self, value=_DEFAULT):
        """The dropdown for this knob, at `value` (default: the declared default; None may be an option)."""
        import ipywidgets as w

        value = self.default if value is _DEFAULT else self.check(value)
        # By index: a Dropdown given value=None shows nothing selected, though None is an option ("off").
        return w.Dropdown(options=list(self.options), index=self.values.index(value), description=self.label,
                          style={"description_width": "initial"}, layout=w.Layout(width="330px"))

    def __repr__(self) -> str:
        return f"Choice({self.name!r}, {list(self.values)!r}, default {self.default!r})"


class Knobs:
    """A lesson's knobs, in the order the panel shows them (lesson 00)."""

    def __init__(self, *knobs):
        for knob in knobs:
            if not isinstance(knob, (Knob, Choice)):
                raise ValueError(f"knobs must be Knob or Choice declarations, got {knob!r}")
        self._by_name = {k.name: k for k in knobs}
        if len(self._by_name) != len(knobs):
            raise ValueError("knobs must have distinct names")

    def __iter__(self):
        return iter(self._by_name.values())

    def __len__(self) -> int:
        return len(self._by_name)

    def __getitem__(self, name: str):
        return self._by_name[name]

    def __contains__(self, name) -> bool:
        return name in self._by_name

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self._by_name)

    def defaults(self) -> dict:
        """Every knob at its default."""
        return {k.name: k.default for k in self}

    def check(self, values: dict) -> dict:
        """The defaults updated with `values`, each checked against its knob; an unknown name is an error."""
        unknown = [name for name in values if name not in self._by_name]
        if unknown:
            raise ValueError(f"{unknown[0]} is not a knob here; the knobs are {', '.join(self.names)}")
        out = self.defaults()
        out.update({name: self._by_name[name].check(value) for name, value in values.items()})
        return out

    def validates(self, fn):
        """Decorator: check every argument of `fn` that is a knob here (given or defaulted) before the call."""
        signature = inspect.signature(fn)
        names = [n for n in signature.parameters if n in self._by_name]

        @functools.wraps(fn)
        def checked(*args, **kwargs):
            bound = signature.bind(*args, **kwargs)
            for name in names:
                if name in bound.arguments:
                    self._by_name[name].check(bound.arguments[name])
            return fn(*args, **kwargs)

        checked.knobs = self
        return checked


class Panel:
    """A lesson's Play panel: its knobs, the runs behind a setting, and the table and figure it shows (lesson 00).

    `run(**knobs)` simulates one setting. A panel that compares a design against a
    baseline gives `baseline(**some_knobs)` and the knobs it depends on: the baseline is
    kept per setting of those knobs, so moving any other knob re-simulates one run, not two.
    `summarize(runs)` and `plot(runs)` are the lesson's own verbs.
    """

    def __init__(self, knobs: Knobs, run, summarize, plot, *, label: str = "this run", baseline=None,
                 baseline_label: str = "baseline", baseline_knobs: tuple = (), cache_size: int = 64):
        if not isinstance(knobs, Knobs):
            raise ValueError(f"knobs must be a Knobs declaration, got {knobs!r}")
        for name in baseline_knobs:
            if name not in knobs:
                raise ValueError(f"baseline_knobs: {name!r} is not a knob of this panel")
        self.knobs, self.run, self.summarize, self.plot = knobs, run, summarize, plot
        self.label, self.baseline_label, self.baseline_knobs = label, baseline_label, tuple(baseline_knobs)
        self._baseline = functools.lru_cache(maxsize=cache_size)(baseline) if baseline is not None else None

    def runs(self, **values) -> dict:
        """label -> run at these knob values (defaults for the rest), checked against the knobs."""
        values = self.knobs.check(values)
        out = {}
        if self._baseline is not None:
            out[self.baseline_label] = self._baseline(**{k: values[k] for k in self.baseline_knobs})
        out[self.label] = self.run(**values)
        return out

    def show(self, runs: dict):
        """(table, chart) of some runs: what the panel displays."""
        return self.summarize(runs), self.plot(runs)

    def play(self, **start) -> None:
        """Show the Play panel, its knobs at their defaults or at `start` (for example `retries=0`)."""
        from labkit.mode import grading_child
        from labkit.widgets import Play

        start = self.knobs.check(start)   # an unknown knob or a value out of range fails here, by name
        if not grading_child():   # the grader's child shows nothing: no widgets (nor ipywidgets' import) there
            Play(self.runs, self.show, **{k.name: k.widget(start[k.name]) for k in self.knobs}).display()

    # Benchmarks find memoised work by these two names (a move that adds an entry is a cache miss).
    def cache_info(self):
        return self._baseline.cache_info() if self._baseline is not None else functools._CacheInfo(0, 0, 0, 0)

    def cache_clear(self) -> None:
        if self._baseline is not None:
            self._baseline.cache_clear()
