"""Lesson 01, read replicas: routing reads and writes, replication lag, read-your-writes and capacity.

`simulate(...)` runs a read-heavy profile service on a primary and its replicas through
a router, `summarize(runs)` compares runs in a table, `plot(run)` draws load, lag and
stale reads over time, and `play()` is the Play panel. `ReplicaRouter` is labkit's
reference router.
"""
from labkit.lessons.replicas.model import KNOBS, ReplicaRouter, ReplicasRun, simulate
from labkit.lessons.replicas.panel import PANEL, play, plot, summarize

NUMBER, NOTEBOOK, TITLE = "01", "01_read_replicas", "read replicas"

__all__ = ["KNOBS", "PANEL", "ReplicaRouter", "ReplicasRun", "play", "plot", "simulate", "summarize"]
