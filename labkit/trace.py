"""The built-in trace: what happened, when, and where; plus metrics derived from it (lesson 00)."""
from __future__ import annotations

import math
import reprlib
from bisect import bisect_left
from collections.abc import Sequence
from typing import Iterable, NamedTuple

from labkit import validate


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


_new_event = tuple.__new__  # Event(...) without NamedTuple's Python-level __new__: one per event read


class _Kind:
    """The events of one (component, event) kind as columns: their times and their fields."""

    __slots__ = ("index", "component", "event", "times", "fields", "events")

    def __init__(self, index: int, component: str, event: str):
        self.index, self.component, self.event = index, component, event
        self.times: list[float] = []
        self.fields: list[dict] = []
        self.events: list[Event] = []  # Events built so far, on demand (see Trace.select)

    def built(self) -> list[Event]:
        """Every event of this kind as an Event, building the ones recorded since last asked."""
        events, n = self.events, len(self.events)
        if n < len(self.times):
            c, e = self.component, self.event
            events.extend([_new_event(Event, (t, c, e, f)) for t, f in zip(self.times[n:], self.fields[n:])])
        return events


class Trace:
    """An append-only list of events. Plots, widgets and checks all read it (lesson 00).

    Stored as columns per (component, event) kind, plus the order of kinds: a run records
    tens of thousands of events, and a tuple each would be an object for Python's garbage
    collector to scan once after the run (4-5 ms of a breaker redraw), while floats and dicts
    of plain values are not its business. `Event`s are built when someone reads them
    (`select`, `events`, iteration); `times` and `fields` read a kind's columns without.
    """

    def __init__(self):
        self._kinds: dict[tuple[str, str], _Kind] = {}
        self._by_index: list[_Kind] = []
        self._order: list[int] = []      # the kind index of each event, in recording order
        self._all: list[Event] = []      # `events`, built on demand
        self._taken: list[int] = []      # per kind: how many of its events `_all` holds

    def _kind_of(self, component: str, event: str) -> _Kind | None:
        """The kind's columns if any such event was recorded, for the readers (which check their arguments)."""
        _name("component", component), _name("event", event)
        return self._kinds.get((component, event))

    def _kind(self, component: str, event: str) -> _Kind:
        kind = self._kinds.get((component, event))
        if kind is None:
            kind = self._kinds[component, event] = _Kind(len(self._by_index), component, event)
            self._by_index.append(kind)
            self._taken.append(0)
        return kind

    def append(self, time_s: float, component: str, event: str, fields: dict) -> None:
        """Record an event (components call `sim.record`, which stamps the time)."""
        # One test for the usual arguments; anything else gets the careful check.
        if not (type(time_s) is float and 0 <= time_s < math.inf and type(fields) is dict
                and type(component) is str and type(event) is str and component and event):
            _check_event(time_s, component, event, fields)
        kind = self._kinds.get((component, event)) or self._kind(component, event)
        kind.times.append(time_s)
        kind.fields.append(fields)
        self._order.append(kind.index)

    def recorder(self, component: str, event: str):
        """`append` for one kind of event, bound once: `rec(time_s, fields)`.

        For a component that records an event on every simulated call (a service, the
        callers): it skips finding the (component, event) kind each time, and checking the
        arguments: `rec` is for labkit's own components, which pass a clock reading and a dict.
        """
        _name("component", component), _name("event", event)
        kind = self._kind(component, event)
        times_append, fields_append, order_append, index = (kind.times.append, kind.fields.append,
                                                            self._order.append, kind.index)

        def rec(time_s: float, fields: dict) -> None:
            times_append(time_s)
            fields_append(fields)
            order_append(index)

        return rec

    @property
    def events(self) -> "_Events":
        """Every event in recording order: a live, read-only list (it grows as the run records)."""
        return _Events(self)

    def _built(self) -> list[Event]:
        """`events` as a list, building the Events recorded since it was last asked for."""
        out, order = self._all, self._order
        if len(out) < len(order):
            kinds, taken = self._by_index, self._taken
            built = {}
            for k in order[len(out):]:
                if k not in built:
                    built[k] = kinds[k].built()
                i = taken[k]
                out.append(built[k][i])
                taken[k] = i + 1
        return out

    def __len__(self) -> int:
        return len(self._order)

    def __iter__(self):
        return iter(self._built())

    def select(self, component: str | None = None, event: str | None = None, **where) -> list[Event]:
        """The events of one component and/or kind whose fields equal `where`."""
        _name("component", component, optional=True), _name("event", event, optional=True)
        if component is not None and event is not None:
            kind = self._kinds.get((component, event))
            found = kind.built() if kind is not None else []
        else:
            found = [e for e in self._built()
                     if (component is None or e.component == component) and (event is None or e.event == event)]
        if not where:
            return list(found)
        return [e for e in found if all(e.fields.get(k) == v for k, v in where.items())]

    def last(self, event: str, since: int = 0) -> Event | None:
        """The last `event` (of any component) recorded at position `since` or later, or None.

        `since` is a `len(trace)` taken earlier: "what did that call record?" without building
        every Event recorded since.
        """
        _name("event", event)
        validate.number("since", since, lo=0, integer=True)  # past the end: nothing since
        order, kinds = self._order, self._by_index
        later = [0] * len(kinds)  # per kind: its events after the one looked at
        for k in reversed(order[since:]):
            kind = kinds[k]
            later[k] += 1
            if kind.event == event:
                i = len(kind.times) - later[k]
                return _new_event(Event, (kind.times[i], kind.component, event, kind.fields[i]))
        return None

    def components(self, event: str) -> list[str]:
        """The components that recorded `event`, in the order they first did."""
        _name("event", event)
        return [k.component for k in self._by_index if k.event == event and k.times]

    def timed(self, component: str, event: str):
        """(time_s, fields) of one kind's events, in order, without building an Event each.

        An iterator over the trace's own columns: read it before recording more."""
        kind = self._kind_of(component, event)
        return zip(kind.times, kind.fields) if kind is not None else iter(())

    def times(self, component: str, event: str) -> list[float]:
        """The times of one kind's events, in order, without building an Event each."""
        kind = self._kind_of(component, event)
        return list(kind.times) if kind is not None else []

    def fields(self, component: str, event: str) -> list[dict]:
        """The fields of one kind's events, in order, without building an Event each (do not modify them)."""
        kind = self._kind_of(component, event)
        return list(kind.fields) if kind is not None else []

    def count(self, component: str | None = None, event: str | None = None, **where) -> int:
        """How many events match, as `select` would find them."""
        if component is not None and event is not None and not where:
            kind = self._kind_of(component, event)
            return len(kind.times) if kind is not None else 0
        return len(self.select(component, event, **where))

    def values(self, field: str, component: str | None = None, event: str | None = None, **where) -> list:
        """One field of every matching event, in time order."""
        _name("field", field)
        return [e.fields[field] for e in self.select(component, event, **where)]

    def to_rows(self) -> list[dict]:
        """Every event as a flat dict, ready for a table or JSON."""
        return [{"time_s": e.time_s, "component": e.component, "event": e.event, **e.fields} for e in self._built()]


def _name(name: str, value, optional: bool = False):
    """A component or event name: a non-empty string."""
    if not (type(value) is str and value):
        validate.text(name, value, optional=optional)
    return value


def _check_event(time_s, component, event, fields) -> None:
    validate.number("time_s", time_s, lo=0)
    _name("component", component), _name("event", event)
    validate.instance("fields", fields, dict, "a dict of field name -> plain value")


class _Events(Sequence):
    """`Trace.events`: the trace's events in recording order, read-only and always current."""

    __slots__ = ("_trace",)

    def __init__(self, trace: Trace):
        self._trace = trace

    def __len__(self) -> int:
        return len(self._trace)

    def __getitem__(self, index):
        return self._trace._built()[index]

    def __iter__(self):
        return iter(self._trace._built())

    def __eq__(self, other) -> bool:
        return isinstance(other, (Sequence, list)) and list(self) == list(other)

    def __repr__(self) -> str:
        return f"<{len(self)} trace events>"


MAX_BINS = 1_000_000  # the most time bins a series may ask for (one float each)


def _sorted_numbers(name: str, values) -> list:
    """`values` sorted, if they are finite numbers; else the error saying which is not."""
    if isinstance(values, (str, bytes, dict)) or not hasattr(values, "__iter__"):
        raise validate.ArgumentTypeError(f"{name} must be a list of numbers, got {reprlib.repr(values)}")
    try:
        data = sorted(values)
        total = math.fsum(data)
    except TypeError:
        raise validate.ArgumentTypeError(f"{name} must be a list of numbers, got {reprlib.repr(values)}") from None
    except OverflowError:
        total = 0.0  # finite, only large
    except ValueError:  # inf - inf
        total = math.nan
    if not math.isfinite(total):
        bad = next(v for v in data if not math.isfinite(v))
        raise ValueError(f"{name} must be finite numbers, got {bad!r} among them")
    return data


def percentile(values: Iterable[float], q: float) -> float:
    """The q-th percentile (0..100) with linear interpolation; NaN for no values."""
    validate.number("q", q, lo=0, hi=100)
    data = _sorted_numbers("values", values)
    if not data:
        return math.nan
    pos = (len(data) - 1) * q / 100
    lo = math.floor(pos)
    hi = min(lo + 1, len(data) - 1)
    return data[lo] + (data[hi] - data[lo]) * (pos - lo)


def latency_summary(latencies_s: Iterable[float]) -> dict:
    """p50/p95/p99 in milliseconds of a list of latencies in seconds."""
    data = _sorted_numbers("latencies_s", latencies_s)
    return {f"p{q}_ms": percentile(data, q) * 1000 for q in (50, 95, 99)}


def bins(start_s: float, end_s: float, bin_s: float) -> list[float]:
    """The left edges of equal time bins covering [start_s, end_s), at most `MAX_BINS` of them."""
    validate.number("start_s", start_s, lo=0)
    validate.number("bin_s", bin_s, lo=0, lo_open=True)
    validate.number("end_s", end_s)
    if not end_s > start_s:
        raise ValueError(f"end_s must be > start_s ({start_s:g}), got {end_s!r}")
    n = math.ceil((end_s - start_s) / bin_s - 1e-9)
    if n > MAX_BINS:
        raise ValueError(f"bin_s must give at most {MAX_BINS:,} bins from start_s to end_s; "
                         f"{bin_s:g} s over {end_s - start_s:g} s gives {n:,}")
    return [start_s + i * bin_s for i in range(n)]


def bin_cuts(times: list[float], start_s: float, bin_s: float, n: int, end_s: float) -> list[int]:
    """Where sorted `times` enter each of `n` bins from start_s: times[c[i]:c[i + 1]] fall in bin i.

    Times before start_s and from end_s on fall in none. Bisection, not a pass over every
    event: a run's trace is in time order, and its series are drawn on every slider move.
    """
    return [bisect_left(times, start_s + i * bin_s) for i in range(n)] + [bisect_left(times, end_s)]


