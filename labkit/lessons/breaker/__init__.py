"""Lesson 03, circuit breaker: a dead dependency, a retry storm, and the breaker that contains it.

`simulate(...)` runs callers in front of a service that dies for a while (with or without
a breaker), `summarize(runs)` compares runs in a table, `plot(runs)` draws them over
time, and `play()` is the Play panel: the same outage without and with labkit's breaker.
"""
from labkit.lessons.breaker.model import simulate
from labkit.lessons.breaker.panel import KNOBS, PANEL, play, plot, summarize
from labkit.resilience import CircuitBreaker
from labkit.traffic import CallsRun

NUMBER, NOTEBOOK, TITLE = "03", "03_circuit_breaker", "circuit breaker"

__all__ = ["CallsRun", "CircuitBreaker", "KNOBS", "PANEL", "play", "plot", "simulate", "summarize"]
