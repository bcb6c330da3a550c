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
# Not done yet (issue 16): what is missing, said where the tests that let it pass can print it.
DRAFT = ("its Play panel (a 20 s incident) is not yet measured on a quiet machine against the 0.1 s budget, "
         "04.2 and 04.5 kill fewer than 95 % of their mutants, and 04.5 costs the grader about 89,000 round "
         "trips (about 19 s for the solution)")

__all__ = ["BulkheadRun", "KINDS", "KNOBS", "PANEL", "ThreadPool", "WorkerPool", "executor_timeline", "play",
           "plot", "simulate", "summarize"]
