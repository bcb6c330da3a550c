"""Lesson 04, bulkhead: one slow dependency takes every shared worker, and partitions keep the rest of the work alive.

`simulate(...)` runs one web service with three kinds of work (checkout, product pages,
reporting), each calling its own dependency, through one shared pool of workers or a
partition per kind; `summarize(runs)` compares runs in a table, `plot(runs)` draws workers
in use, success, p99 and rejections over time, and `play()` is the Play panel: the same
incident with one shared pool and with bulkheads.
"""
from labkit.lessons.bulkhead.model import KINDS, BulkheadRun, simulate
from labkit.lessons.bulkhead.panel import KNOBS, PANEL, play, plot, summarize
from labkit.service import ThreadPool, WorkerPool, executor_timeline

NUMBER, NOTEBOOK, TITLE = "04", "04_bulkhead", "bulkhead"

__all__ = ["BulkheadRun", "KINDS", "KNOBS", "PANEL", "ThreadPool", "WorkerPool", "executor_timeline", "play",
           "plot", "simulate", "summarize"]
