"""The virtual clock and event queue every labkit simulation runs on (lesson 00)."""
from __future__ import annotations

import contextlib
import gc
import heapq
import itertools
import math
import random

from labkit import validate
from labkit.trace import Trace


class Sim:
    """A simulation: a virtual clock, an event queue, one seeded RNG and a trace (lesson 00).

    Time is a float in seconds and only moves forward. Nothing here reads the wall
    clock or sleeps: `run(until=10)` finishes as fast as the callbacks do.
    """

    MAX_EVENTS = 100_000_000  # the most `run(max_events=)` allows: a runaway run stops, never hangs

    def __init__(self, seed: int = 0):
        self.seed = validate.number("seed", seed, integer=True)
        self.now = 0.0
        self.rng = random.Random(seed)
        self.trace = Trace()
        # Heap entries are (time, priority, serial, callback, args). The serial breaks
        # ties in scheduling order, so two runs with one seed pop events identically.
        self._queue: list = []
        self._serial = itertools.count()

    def at(self, time_s: float, callback, *args, priority: int = 0) -> None:
        """Call `callback(*args)` when the clock reaches `time_s`."""
        # One test on the hot path (False for the past, NaN and infinity alike); anything
        # else (an int time, a bad argument) goes through the careful check.
        if not (type(time_s) is float and self.now <= time_s < math.inf and type(priority) is int
                and callable(callback)):
            self._check(time_s, callback, priority)
        heapq.heappush(self._queue, (time_s, priority, next(self._serial), callback, args))

    def after(self, delay_s: float, callback, *args, priority: int = 0) -> None:
        """Call `callback(*args)` `delay_s` seconds from now."""
        if not (type(delay_s) is float and 0 <= delay_s < math.inf):
            validate.number("delay_s", delay_s, lo=0)
        # `at` inlined: this is the busiest call of every simulation, and delay_s >= 0 rules out the past.
        time_s = self.now + delay_s
        if not (time_s < math.inf and type(priority) is int and callable(callback)):
            self._check(time_s, callback, priority)
        heapq.heappush(self._queue, (time_s, priority, next(self._serial), callback, args))

    def _check(self, time_s, callback, priority) -> None:
        if isinstance(time_s, float) and math.isinf(time_s):
            raise ValueError(f"time_s must be a finite number of seconds, got {time_s!r}")
        validate.number("time_s", time_s)
        if not self.now <= time_s:
            raise ValueError(f"time_s must be >= now ({self.now:g} s): time never goes backwards, got {time_s:g}")
        validate.callable_("callback", callback)
        validate.number("priority", priority, integer=True)

    def step(self) -> bool:
        """Run the next event; return False when the queue is empty."""
        if not self._queue:
            return False
        time_s, _, _, callback, args = heapq.heappop(self._queue)
        self.now = time_s
        callback(*args)
        return True

    def run(self, until: float | None = None, max_events: int = 10_000_000) -> "Sim":
        """Run events up to and including time `until` (or until idle); the clock ends at `until`.

        More than `max_events` events (at most `Sim.MAX_EVENTS`) is taken for a runaway and
        raises RuntimeError.
        """
        if validate.number("until", until, optional=True) is not None and until < self.now:
            raise ValueError(f"until must be >= now ({self.now:g} s), got {until:g}")
        validate.number("max_events", max_events, lo=1, hi=self.MAX_EVENTS, integer=True)
        queue, pop = self._queue, heapq.heappop
        limit = math.inf if until is None else until
        ran = 0
        with gc_paused():
            while queue and queue[0][0] <= limit:
                if ran == max_events:
                    raise RuntimeError(
                        f"simulation ran {max_events:,} events without finishing: "
                        "is something rescheduling itself forever?"
                    )
                time_s, _, _, callback, args = pop(queue)
                self.now = time_s
                callback(*args)
                ran += 1
        if until is not None:
            self.now = until
        return self

    def advance(self, delay_s: float) -> "Sim":
        """Move the clock forward by `delay_s`, running whatever falls due."""
        validate.number("delay_s", delay_s, lo=0)
        return self.run(until=self.now + delay_s)

    @property
    def pending(self) -> int:
        """How many events are waiting in the queue."""
        return len(self._queue)

    def record(self, component: str, event: str, **fields) -> None:
        """Append an event to the trace, stamped with the current time."""
        self.trace.append(self.now, component, event, fields)

    def __repr__(self) -> str:
        return f"Sim(seed={self.seed}, now={self.now:g}, pending={self.pending})"


@contextlib.contextmanager
def gc_paused():
    """Pause Python's cyclic garbage collector inside the block (a run, a redraw).

    A simulation allocates small objects for every event (heap entries, trace events) and
    keeps most of them, so the collector would re-scan a growing heap again and again.
    Reference counting still frees everything that is not a cycle; cycles wait for the
    collector's next turn after the block. Nested blocks leave it to the outermost.
    """
    collecting = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if collecting:
            gc.enable()
