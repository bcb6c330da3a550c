"""Circuit breakers: the component lesson 03 teaches, reused by every resilience lesson after it."""
from __future__ import annotations

from labkit import validate

CLOSED, OPEN, HALF_OPEN = "closed", "open", "half_open"
STATES = (CLOSED, OPEN, HALF_OPEN)


class CircuitBreaker:
    """labkit's reference circuit breaker, in resilience4j's vocabulary (lesson 03).

    closed: calls flow; `failure_threshold` consecutive failures open it (or, when
    `failure_rate_threshold` is set, a failure rate >= that share over the last
    `window_size` calls, once `minimum_calls` have been seen).
    open: calls are rejected at once. The first call after `recovery_timeout_s` moves it
    to half_open; nothing happens without a call (lazy, as resilience4j and Polly do).
    half_open: at most `half_open_max_calls` trial calls in flight; `success_threshold`
    successes close it; any failed trial re-opens it and restarts the timeout.
    """

    def __init__(self, clock, *, failure_threshold: int = 5, recovery_timeout_s: float = 10.0,
                 success_threshold: int = 1, half_open_max_calls: int = 1,
                 failure_rate_threshold: float | None = None, window_size: int = 20,
                 minimum_calls: int = 10):
        self.clock = validate.clock("clock", clock)
        self.failure_threshold = validate.number("failure_threshold", failure_threshold, lo=1, integer=True)
        self.recovery_timeout_s = validate.number("recovery_timeout_s", recovery_timeout_s, lo=0, lo_open=True)
        self.success_threshold = validate.number("success_threshold", success_threshold, lo=1, integer=True)
        self.half_open_max_calls = validate.number("half_open_max_calls", half_open_max_calls, lo=1, integer=True)
        if failure_rate_threshold is not None:
            validate.number("failure_rate_threshold", failure_rate_threshold, lo=0, hi=1, lo_open=True)
        self.failure_rate_threshold = failure_rate_threshold
        self.window_size = validate.number("window_size", window_size, lo=1, integer=True)
        self.minimum_calls = validate.number("minimum_calls", minimum_calls, lo=1, hi=window_size, integer=True)
        self.state = CLOSED
        self._failures = 0            # consecutive failures while closed
        self._window: list[bool] = []  # recent outcomes (True = failure), rate mode only
        self._opened_at = 0.0
        self._trials_in_flight = 0
        self._trial_successes = 0

    def allow_request(self) -> bool:
        """Ask before each call: True means go ahead, False means fail fast (use a fallback)."""
        if self.state == OPEN:
            if self.clock.now - self._opened_at < self.recovery_timeout_s:
                return False
            self.state, self._trials_in_flight, self._trial_successes = HALF_OPEN, 0, 0
        if self.state == HALF_OPEN:
            if self._trials_in_flight >= self.half_open_max_calls:
                return False
            self._trials_in_flight += 1
        return True

    def on_success(self) -> None:
        """Report that an admitted call succeeded."""
        if self.state == CLOSED:
            self._failures = 0
            self._remember(False)
            # resilience4j re-evaluates after every outcome: a success can still leave the rate above.
            if self.failure_rate_threshold is not None and self._should_open():
                self._open()
        elif self.state == HALF_OPEN:
            self._trials_in_flight = max(0, self._trials_in_flight - 1)
            self._trial_successes += 1
            if self._trial_successes >= self.success_threshold:
                self.state, self._failures, self._window = CLOSED, 0, []
        # A late success from before the breaker opened changes nothing.

    def on_failure(self) -> None:
        """Report that an admitted call failed (an error or a timeout)."""
        if self.state == CLOSED:
            self._failures += 1
            self._remember(True)
            if self._should_open():
                self._open()
        elif self.state == HALF_OPEN:
            self._open()

    def _remember(self, failed: bool) -> None:
        if self.failure_rate_threshold is not None:
            self._window.append(failed)
            if len(self._window) > self.window_size:
                del self._window[0]

    def _should_open(self) -> bool:
        if self.failure_rate_threshold is None:
            return self._failures >= self.failure_threshold
        calls = len(self._window)
        # resilience4j: below minimum_calls no rate is computed; at the threshold it opens (>=).
        return calls >= self.minimum_calls and sum(self._window) / calls >= self.failure_rate_threshold

    def _open(self) -> None:
        self.state, self._opened_at = OPEN, self.clock.now

    def __repr__(self) -> str:
        return f"CircuitBreaker(state={self.state!r}, failure_threshold={self.failure_threshold})"
