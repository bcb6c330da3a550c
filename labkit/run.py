"""The result of a simulation (a run): its trace, and what every lesson derives from it (lesson 00).

One implementation of time bins for the whole course: a kind of event's times are in
order in the trace, so bisection finds where each bin starts, and a bin's events are one
slice of each column. A lesson's Run class adds only what is specific to it.
"""
from __future__ import annotations

import numbers

from labkit import validate
from labkit.trace import Trace, bin_cuts, bins, percentile


class Run:
    """Base of a simulation's result: its trace, per-bin series of any kind of event, and memoised summaries.

    A run does not change once simulated, so what the table, the title and the plot all
    ask for is computed on first use and kept (`_once`). Subclasses are dataclasses with
    a `sim` and a `duration_s`.
    """

    @property
    def trace(self) -> Trace:
        return self.sim.trace

    def _once(self, key, compute):
        memo = self.__dict__.setdefault("_memo", {})
        if key not in memo:
            memo[key] = compute()
        return memo[key]

    def times(self, component: str, event: str) -> list[float]:
        """When each event of one kind happened, in order (read once)."""
        _kind(component, event)
        return self._once(("times", component, event), lambda: self.trace.times(component, event))

    def column(self, component: str, event: str, field: str) -> list:
        """One field of every event of one kind, in order (read once); a field an event lacks is None."""
        _kind(component, event)
        validate.text("field", field)
        return self._once(("column", component, event, field),
                          lambda: [f.get(field) for f in self.trace.fields(component, event)])

    def bin_starts(self, bin_s: float) -> list[float]:
        """The left edges of the time bins of width `bin_s` that cover the run."""
        validate.number("bin_s", bin_s, lo=0, lo_open=True)
        return self._once(("bins", float(bin_s)), lambda: bins(0.0, self.duration_s, bin_s))

    def cuts(self, component: str, event: str, bin_s: float) -> list[int]:
        """Where each bin's events start in that kind's columns: bin i is [cuts[i], cuts[i + 1])."""
        _kind(component, event)
        validate.number("bin_s", bin_s, lo=0, lo_open=True)

        def compute():
            n = len(self.bin_starts(bin_s))
            return bin_cuts(self.times(component, event), 0.0, bin_s, n, n * bin_s)

        return self._once(("cuts", component, event, bin_s), compute)

    def per_bin(self, component: str, event: str, bin_s: float, field: str | None = None, reduce=None) -> list:
        """Per time bin: how many events of one kind (no `field`), or `reduce(values)` of one field's values.

        `reduce` defaults to `sum`, so `per_bin("app", "read", 1.0, "stale")` counts stale reads per second.
        """
        validate.callable_("reduce", reduce, optional=True)
        cuts = self.cuts(component, event, bin_s)
        pairs = zip(cuts, cuts[1:])
        if field is None:
            return [b - a for a, b in pairs]
        values, reduce = self.column(component, event, field), reduce or sum
        return [reduce(values[a:b]) for a, b in pairs]

    def rate(self, component: str, event: str, bin_s: float) -> list[float]:
        """Events of one kind per second, per time bin."""
        return [n / bin_s for n in self.per_bin(component, event, bin_s)]

    def percentiles(self, component: str, event: str, field: str, bin_s: float | None = None, scale: float = 1.0,
                    qs=(50, 95, 99)) -> dict:
        """`p50`... of one field (times `scale`) over the whole run, or per bin (NaN where a bin is empty)."""
        validate.number("scale", scale, lo=0, lo_open=True)
        qs = validate.items("qs", qs, numbers.Real, "percentiles (numbers from 0 to 100)")
        for q in qs:
            validate.number("qs", q, lo=0, hi=100)
        values = self.column(component, event, field)
        if bin_s is None:
            data = sorted(values)
            return {f"p{q}": percentile(data, q) * scale for q in qs}
        cuts = self.cuts(component, event, bin_s)
        groups = [sorted(values[a:b]) for a, b in zip(cuts, cuts[1:])]
        return {f"p{q}": [percentile(g, q) * scale if g else float("nan") for g in groups] for q in qs}




def _kind(component, event) -> None:
    validate.text("component", component)
    validate.text("event", event)


def as_runs(runs, run_type: type, made_by: str) -> dict:
    """`runs` as a dict of label -> run: one run becomes {"this run": run}; a dict is checked."""
    if isinstance(runs, run_type):
        return {"this run": runs}
    return validate.runs(runs, run_type, made_by)


def only_run(runs, run_type: type, made_by: str):
    """The one run in `runs` (a run, or a dict holding one): for a figure that draws a single run."""
    found = as_runs(runs, run_type, made_by)
    if len(found) != 1:
        raise ValueError(f"runs must hold one run for this figure, got {len(found)} ({', '.join(map(str, found))}); "
                         "compare runs side by side with summarize(...)")
    return next(iter(found.values()))
