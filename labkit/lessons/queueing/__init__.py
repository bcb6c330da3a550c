"""Lesson 00, start here: the virtual clock, a Play panel, a check, and a queue in front of workers.

`simulate(...)` sends steady traffic into a healthy service with a fixed pool of workers,
`summarize(runs)` tabulates load, capacity and latency, `plot(run)` draws latency
percentiles and load over time, and `play()` is the Play panel.
"""
from labkit.lessons.queueing.model import KNOBS, PANEL, play, plot, simulate, summarize
from labkit.traffic import CallsRun

NUMBER, NOTEBOOK, TITLE = "00", "00_start_here", "start here"

__all__ = ["CallsRun", "KNOBS", "PANEL", "play", "plot", "simulate", "summarize"]
