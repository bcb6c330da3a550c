"""Workloads drawn from the simulation's RNG: which keys, reads or writes, and when (lessons 01, 02).

`make_workload(sim, ...)` returns the whole run as a list of `Op(time_s, op, key)`, so a
lesson can count or plot it before running anything; `drive_workload` then replays it
on the sim, calling a handler at each op's time.
"""
from __future__ import annotations

import bisect
import functools
import heapq
import itertools
import math
import numbers
import random as _random
from dataclasses import dataclass
from typing import NamedTuple

from labkit import validate
from labkit.clock import Sim


MAX_RATE_RPS = 100_000      # the highest rate a profile may have
MAX_ARRIVALS = 1_000_000    # the most arrivals one call may draw (about 100 MB of ops)
MAX_DURATION_S = 86_400     # the longest workload: a day of virtual time


class Op(NamedTuple):
    """One operation: when, "read" or "write", which key, and whether it is a read of one's own write (lessons 01, 02)."""

    time_s: float
    op: str
    key: int
    after_write: bool = False


@functools.lru_cache(maxsize=16)
def _zipf_cdf(n_keys: int, s: float) -> tuple:
    weights = [k ** -s for k in range(1, n_keys + 1)]
    total = math.fsum(weights)
    cdf = [c / total for c in itertools.accumulate(weights)]
    cdf[-1] = 1.0  # rounding must not leave a gap that random() could fall into
    return tuple(cdf)


class Zipf:
    """Key popularity: key k in 1..n_keys is drawn with probability proportional to 1/k**s; s=0 is uniform (lesson 02)."""

    def __init__(self, n_keys: int = 1000, s: float = 1.0):
        self.n_keys = validate.number("n_keys", n_keys, lo=1, hi=1_000_000, integer=True)
        self.s = validate.number("s", s, lo=0, hi=5)
        self._cdf = _zipf_cdf(n_keys, float(s))

    def sample(self, rng) -> int:
        """One key, drawn with `rng`; key 1 is the most popular."""
        if type(rng) is not _random.Random:
            _rng(rng)
        return bisect.bisect_right(self._cdf, rng.random()) + 1

    def probability(self, key: int) -> float:
        """The chance that one draw is `key`."""
        validate.number("key", key, integer=True)
        if not 1 <= key <= self.n_keys:
            return 0.0
        return self._cdf[key - 1] - (self._cdf[key - 2] if key > 1 else 0.0)

    def top_share(self, top: int) -> float:
        """The share of draws that hit the `top` most popular keys: an ideal cache of that size's hit ratio."""
        validate.number("top", top, lo=0, integer=True)
        return self._cdf[min(top, self.n_keys) - 1] if top else 0.0


@dataclass(frozen=True)
class Steady:
    """Arrivals at a constant `rate_rps` (Poisson) (lessons 01, 02)."""

    rate_rps: float

    def __post_init__(self):
        validate.number("rate_rps", self.rate_rps, lo=0, lo_open=True, hi=MAX_RATE_RPS)

    @property
    def peak_rps(self) -> float:
        """The highest rate this profile reaches."""
        return self.rate_rps

    def rate_at(self, time_s: float) -> float:
        """The arrival rate at `time_s`."""
        _time(time_s)
        return self.rate_rps


@dataclass(frozen=True)
class Diurnal:
    """A day-shaped rate: `mean_rps` * (1 + amplitude * sin(2 pi t / period_s)) (lessons 01, 02)."""

    mean_rps: float
    amplitude: float = 0.5
    period_s: float = 60.0

    def __post_init__(self):
        validate.number("mean_rps", self.mean_rps, lo=0, lo_open=True, hi=MAX_RATE_RPS / 2)
        validate.number("amplitude", self.amplitude, lo=0, hi=1)
        validate.number("period_s", self.period_s, lo=0, lo_open=True)

    @property
    def peak_rps(self) -> float:
        """The highest rate this profile reaches."""
        return self.mean_rps * (1 + self.amplitude)

    def rate_at(self, time_s: float) -> float:
        """The arrival rate at `time_s`."""
        _time(time_s)
        return self.mean_rps * (1 + self.amplitude * math.sin(2 * math.pi * time_s / self.period_s))


@dataclass(frozen=True)
class Bursty:
    """On-off traffic: `on_rps` for `on_s` seconds, then `off_rps` for `off_s`, repeating (lessons 01, 02)."""

    on_rps: float
    off_rps: float = 0.0
    on_s: float = 1.0
    off_s: float = 4.0

    def __post_init__(self):
        validate.number("on_rps", self.on_rps, lo=0, lo_open=True, hi=MAX_RATE_RPS)
        validate.number("off_rps", self.off_rps, lo=0, hi=self.on_rps)
        validate.number("on_s", self.on_s, lo=0, lo_open=True)
        validate.number("off_s", self.off_s, lo=0)

    @property
    def peak_rps(self) -> float:
        """The highest rate this profile reaches."""
        return self.on_rps

    def rate_at(self, time_s: float) -> float:
        """The arrival rate at `time_s`."""
        _time(time_s)
        return self.on_rps if time_s % (self.on_s + self.off_s) < self.on_s else self.off_rps


def _time(time_s) -> None:
    if not (type(time_s) is float and -math.inf < time_s < math.inf):  # a clock reading, or the careful check
        validate.number("time_s", time_s)


def _rng(rng):
    return validate.instance("rng", rng, _random.Random, "a random.Random (the simulation's sim.rng)")


_PROFILES = (Steady, Diurnal, Bursty)


def arrivals(rng, rate, start_s: float, end_s: float) -> list[float]:
    """Poisson arrival times in [start_s, end_s) following a rate profile (lessons 01, 02).

    Thinning (Lewis and Shedler): draw at the peak rate and keep each arrival with
    probability rate_at(t) / peak, which is exact for any rate shape. At most
    `MAX_ARRIVALS` are expected (peak rate times the window).
    """
    _rng(rng)
    validate.instance("rate", rate, _PROFILES, "a Steady, Diurnal or Bursty profile")
    validate.number("start_s", start_s, lo=0)
    validate.number("end_s", end_s, lo=start_s)
    _bounded(rate, end_s - start_s, "end_s - start_s")
    peak, rate_at = rate.peak_rps, rate.rate_at
    out, t = [], start_s
    expo, random = rng.expovariate, rng.random
    while True:
        t += expo(peak)
        if t >= end_s:
            return out
        r = rate_at(t)
        if r >= peak or random() * peak < r:  # a steady rate never spends a draw here
            out.append(t)


def _bounded(rate, duration_s: float, what: str) -> None:
    expected = rate.peak_rps * duration_s
    if expected > MAX_ARRIVALS:
        raise ValueError(f"{what} at {rate.peak_rps:g} requests/s would draw about {expected:,.0f} arrivals; "
                         f"at most {MAX_ARRIVALS:,} are allowed: shorten {what} or lower the rate")


def make_workload(sim: Sim, *, duration_s: float, rate=100.0, n_keys: int = 1000, zipf_s: float = 1.0,
             write_fraction: float = 0.1, read_after_write_s: float | None = None) -> list[Op]:
    """The ops of a run starting now, in time order, drawn from `sim.rng` (lessons 01, 02).

    `rate` is requests per second (steady) or a `Steady` / `Diurnal` / `Bursty` profile;
    keys follow `Zipf(n_keys, zipf_s)`; each op is a write with probability
    `write_fraction`. With `read_after_write_s`, every write is followed that many
    seconds later by a read of the same key (`after_write=True`): the user who just
    saved a profile and looks at it. At most `MAX_DURATION_S` long and `MAX_ARRIVALS` ops.
    """
    validate.instance("sim", sim, Sim, "a labkit Sim")
    validate.number("duration_s", duration_s, lo=0, lo_open=True, hi=MAX_DURATION_S)
    if isinstance(rate, numbers.Real) and not isinstance(rate, bool):
        validate.number("rate", rate, lo=0, lo_open=True, hi=MAX_RATE_RPS)
        rate = Steady(rate)
    validate.instance("rate", rate, _PROFILES, "requests per second or a Steady, Diurnal or Bursty profile")
    _bounded(rate, duration_s, "duration_s")
    validate.number("n_keys", n_keys, lo=1, hi=1_000_000, integer=True)
    validate.number("zipf_s", zipf_s, lo=0, hi=5)
    validate.number("write_fraction", write_fraction, lo=0, hi=1)
    validate.number("read_after_write_s", read_after_write_s, lo=0, hi=MAX_DURATION_S, optional=True)
    keys = Zipf(n_keys, zipf_s)
    rng = sim.rng
    random, cdf, bisect_right = rng.random, keys._cdf, bisect.bisect_right
    ops, follow_ups = [], []
    for t in arrivals(rng, rate, sim.now, sim.now + duration_s):
        key = bisect_right(cdf, random()) + 1  # Zipf.sample, inlined: this loop is the hot path
        if random() < write_fraction:
            ops.append(Op(t, "write", key))
            if read_after_write_s is not None:
                follow_ups.append(Op(t + read_after_write_s, "read", key, True))
        else:
            ops.append(Op(t, "read", key))
    if follow_ups:
        # Both lists are already in time order; on a tie the earlier-drawn op goes first.
        ops = list(heapq.merge(ops, follow_ups, key=lambda op: op.time_s))
    return ops


def drive_workload(sim: Sim, ops, handler) -> None:
    """Call `handler(op)` at each op's time on the sim; ops must be in time order (lessons 01, 02).

    Only the next op sits in the event queue at any moment, so a long workload costs
    one heap entry, not one per op.
    """
    validate.instance("sim", sim, Sim, "a labkit Sim")
    if isinstance(ops, (str, bytes, dict)) or not hasattr(ops, "__iter__"):
        raise validate.ArgumentTypeError(f"ops must be a list of Op(time_s, op, key), got {ops!r}")
    validate.callable_("handler", handler, "a function called with each op")
    feed = _Feed(sim, iter(ops), handler)
    first = next(feed.ops, None)
    if first is not None:
        sim.at(_op_time(first), feed.fire, first)


class _Feed:
    """`drive_workload`'s state. A method, not a closure that schedules itself: that closure
    would be a reference cycle holding the Sim, keeping each finished run in memory until
    the garbage collector's next pass."""

    __slots__ = ("sim", "ops", "handler")

    def __init__(self, sim, ops, handler):
        self.sim, self.ops, self.handler = sim, ops, handler

    def fire(self, op):
        self.handler(op)
        nxt = next(self.ops, None)
        if nxt is not None:
            self.sim.at(_op_time(nxt), self.fire, nxt)


def _op_time(op) -> float:
    """An op's time; ops come from make_workload or a list of Op (anything with a time_s will do)."""
    time_s = getattr(op, "time_s", None)
    if time_s is None:
        raise validate.ArgumentTypeError(f"ops must hold Op(time_s, op, key) records, got {op!r}")
    return time_s
