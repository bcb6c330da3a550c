"""Lesson 02, multi-level caching: L1 and a shared L2, the stale-set race, a hot key's stampede, write-behind.

`simulate(...)` runs profile traffic through app servers with an L1 each and a shared L2,
`summarize(runs)` compares runs in a table, `plot(run)` draws which level answered, and
`play()` is the Play panel. `simulate_hot_key`, `summarize_hot_key` and `plot_hot_key`
show a hot key's expiry; `stale_set_race` scripts the cache-aside race. `CacheAside` is
the naive baseline, `SlowDatabase` the database whose queries take time.
"""
from labkit.lessons.caching.model import (KNOBS, CacheAside, CachingRun, DatabaseDown, HotKeyRun, RaceRun,
                                          SlowDatabase, plot_hot_key, simulate, simulate_hot_key, stale_set_race,
                                          summarize_hot_key)
from labkit.lessons.caching.panel import PANEL, play, plot, summarize

NUMBER, NOTEBOOK, TITLE = "02", "02_caching", "multi-level caching"

__all__ = ["KNOBS", "PANEL", "CacheAside", "CachingRun", "DatabaseDown", "HotKeyRun", "RaceRun", "SlowDatabase",
           "play", "plot", "plot_hot_key", "simulate", "simulate_hot_key", "stale_set_race", "summarize",
           "summarize_hot_key"]
