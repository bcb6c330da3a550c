"""Lesson 03's model: callers with retries in front of a service that dies, with or without a breaker."""
from __future__ import annotations

from labkit.knobs import Knob, Knobs
from labkit.mode import made_when_read
from labkit.traffic import CallsRun, simulate_calls

# The traffic knobs are arguments of `simulate`; the breaker knobs are the settings of labkit's
# CircuitBreaker, which checks them itself. The Play panel shows them all.
TRAFFIC = Knobs(
    Knob("rate_rps", 5.0, 80.0, 5.0, 25.0, unit="requests/s"),
    Knob("outage_s", 0.0, 60.0, 5.0, 30.0, unit="s"),
    Knob("retries", 0, 5, 1, 3),
)


@TRAFFIC.validates
@made_when_read(CallsRun)
def simulate(*, seed: int = 1, duration_s: float = 90.0, rate_rps: float = 25.0, outage_start_s: float = 20.0,
             outage_s: float = 30.0, timeout_s: float = 1.0, retries: int = 0, breaker=None, latency_s: float = 0.05,
             error_rate: float = 0.0, max_concurrency: int = 10, faults=None):
    """Callers at `rate_rps` hit a service that dies for `outage_s` (from `outage_start_s`); returns a CallsRun (lesson 03).

    `breaker` is a factory called with the simulation's clock (for example
    `lambda clock: lk.CircuitBreaker(clock, failure_threshold=5)`), or None for no breaker.
    Failed calls are retried at once up to `retries` times, as naive clients do. The
    service has `max_concurrency` workers and a median latency of `latency_s`.
    """
    return simulate_calls(seed=seed, duration_s=duration_s, rate_rps=rate_rps, outage_start_s=outage_start_s,
                          outage_s=outage_s, timeout_s=timeout_s, retries=retries, breaker=breaker,
                          latency_s=latency_s, error_rate=error_rate, max_concurrency=max_concurrency, faults=faults)
