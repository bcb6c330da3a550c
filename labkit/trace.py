"""The built-in trace: what happened, when, and where; plus metrics derived from it (lesson 00)."""
from __future__ import annotations

import math
import operator
from bisect import bisect_left
from typing import Callable, Iterable, NamedTuple


class Event(NamedTuple):
    """One trace record: time in seconds, the component, what happened, and its fields."""

    time_s: float
    component: str
    event: str
    fields: dict

    def __getattr__(self, name):
        # trace.select(...)[0].ok reads a field directly; NamedTuple attributes win first.
        try:
            return self.fields[name]
        except KeyError:
            raise AttributeError(name) from None


_new_event = tuple.__new__  # Event(...) without NamedTuple's Python-level __new__: one record per simulated call


class Trace:
    """An append-only list of events. Plots, widgets and checks all read it (lesson 00)."""

    def __init__(self):
        self.events: list[Event] = []
        # The same events grouped by (component, event), in time order: plots and checks select
        # one kind many times per run, and a scan of the whole trace each time dominated redraws.
        self._kinds: dict[tuple[str, str], list[Event]] = {}

    def append(self, time_s: float, component: str, event: str, fields: dict) -> None:
        """Record an event (components call `sim.record`, which stamps the time)."""
        e = _new_event(Event, (time_s, component, event, fields))
        self.events.append(e)
        kind = self._kinds.get((component, event))
        if kind is None:
            self._kinds[component, event] = [e]
        else:
            kind.append(e)

    def recorder(self, component: str, event: str):
        """`append` for one kind of event, bound once: `rec(time_s, fields)`.

        For a component that records an event on every simulated call (a service, the
        callers): it skips building and hashing the (component, event) key each time.
        """
        events_append = self.events.append
        kind_append = self._kinds.setdefault((component, event), []).append

        def rec(time_s: float, fields: dict) -> None:
            e = _new_event(Event, (time_s, component, event, fields))
            events_append(e)
            kind_append(e)

        return rec

    def __len__(self) -> int:
        return len(self.events)

    def __iter__(self):
        return iter(self.events)

    def select(self, component: str | None = None, event: str | None = None, **where) -> list[Event]:
        """The events of one component and/or kind whose fields equal `where`."""
        if component is not None and event is not None:
            found = self._kinds.get((component, event), [])
        else:
            found = [e for e in self.events
                     if (component is None or e.component == component) and (event is None or e.event == event)]
        if not where:
            return list(found)
        return [e for e in found if all(e.fields.get(k) == v for k, v in where.items())]

    def count(self, component: str | None = None, event: str | None = None, **where) -> int:
        """How many events match, as `select` would find them."""
        return len(self.select(component, event, **where))

    def values(self, field: str, component: str | None = None, event: str | None = None, **where) -> list:
        """One field of every matching event, in time order."""
        return [e.fields[field] for e in self.select(component, event, **where)]

    def to_rows(self) -> list[dict]:
        """Every event as a flat dict, ready for a table or JSON."""
        return [{"time_s": e.time_s, "component": e.component, "event": e.event, **e.fields} for e in self.events]


class SimRun:
    """Base of a simulation's result (a run): its trace, and what is derived from it, computed once.

    A run does not change once simulated, so a series or summary that the table, the title
    and the plot all ask for is computed on first use and kept (`_once`).
    """

    @property
    def trace(self) -> Trace:
        return self.sim.trace

    def _once(self, key, compute):
        memo = self.__dict__.setdefault("_memo", {})
        if key not in memo:
            memo[key] = compute()
        return memo[key]


def percentile(values: Iterable[float], q: float) -> float:
    """The q-th percentile (0..100) with linear interpolation; NaN for no values."""
    if not 0 <= q <= 100:
        raise ValueError(f"q must be between 0 and 100, got {q!r}")
    data = sorted(values)
    if not data:
        return math.nan
    pos = (len(data) - 1) * q / 100
    lo = math.floor(pos)
    hi = min(lo + 1, len(data) - 1)
    return data[lo] + (data[hi] - data[lo]) * (pos - lo)


def latency_summary(latencies_s: Iterable[float]) -> dict:
    """p50/p95/p99 in milliseconds of a list of latencies in seconds."""
    data = sorted(latencies_s)
    return {f"p{q}_ms": percentile(data, q) * 1000 for q in (50, 95, 99)}


def bins(start_s: float, end_s: float, bin_s: float) -> list[float]:
    """The left edges of equal time bins covering [start_s, end_s)."""
    if not bin_s > 0:
        raise ValueError(f"bin_s must be > 0, got {bin_s!r}")
    if not end_s > start_s:
        raise ValueError(f"end_s must be > start_s ({start_s:g}), got {end_s!r}")
    n = math.ceil((end_s - start_s) / bin_s - 1e-9)
    return [start_s + i * bin_s for i in range(n)]


def time_series(
    events: Iterable[Event],
    start_s: float,
    end_s: float,
    bin_s: float = 1.0,
    reduce: Callable[[list[Event]], float] = len,
) -> tuple[list[float], list[float]]:
    """Group events into time bins and reduce each bin (default: count); returns (bin starts, values)."""
    edges = bins(start_s, end_s, bin_s)
    events = sorted(events, key=_time)
    cuts = bin_cuts([e[0] for e in events], start_s, bin_s, len(edges), end_s)
    return edges, [reduce(events[a:b]) for a, b in zip(cuts, cuts[1:])]


def rate_per_s(events: Iterable[Event], start_s: float, end_s: float, bin_s: float = 1.0):
    """Events per second in each time bin; returns (bin starts, rates)."""
    edges = bins(start_s, end_s, bin_s)
    cuts = bin_cuts(sorted(map(_time, events)), start_s, bin_s, len(edges), end_s)
    return edges, [(b - a) / bin_s for a, b in zip(cuts, cuts[1:])]


_time = operator.itemgetter(0)  # an Event's time_s, at C speed


def bin_cuts(times: list[float], start_s: float, bin_s: float, n: int, end_s: float) -> list[int]:
    """Where sorted `times` enter each of `n` bins from start_s: times[c[i]:c[i + 1]] fall in bin i.

    Times before start_s and from end_s on fall in none. Bisection, not a pass over every
    event: a run's trace is in time order, and its series are drawn on every slider move.
    """
    return [bisect_left(times, start_s + i * bin_s) for i in range(n)] + [bisect_left(times, end_s)]


def fraction(predicate: Callable[[Event], bool]) -> Callable[[list[Event]], float]:
    """A reducer for `time_series`: the share of a bin's events for which `predicate` holds (NaN if empty)."""

    def reduce(group: list[Event]) -> float:
        return sum(1 for e in group if predicate(e)) / len(group) if group else math.nan

    return reduce
