"""Widget response: a knob changes -> the simulation re-runs -> the figure is rendered to PNG (Agg).

That is exactly what a lesson's `play()` panel does: `labkit.widgets.Play(PANEL.runs,
PANEL.show, **widgets).render()` after setting a control's value, for every lesson found by
discovery (`labkit.lessons.discover()`), with the knobs, their steps and their extreme
settings taken from the lesson's knob declarations. Nothing is displayed; no browser, no
comm round trip: this is the kernel's share of a slider move.

Caches. A panel may memoise part of its work (the breaker panel keeps the no-breaker
baseline per traffic setting). A knob whose move adds a cache entry is "part of
the cache key": moving it is a miss in real use, so every sample of it starts from empty
caches. A knob whose move adds no entry reuses what the default run cached, a legitimate hit
in real use (the panel always renders the defaults first), so its samples run warm. When
the run caches nothing at all, every knob re-simulates everything and counts with the
misses. The two kinds are reported as separate rows.

Besides wall time (what the budget is about) each sample records the process's CPU time,
which a busy neighbour on a shared machine inflates much less: the table quotes its median.
"""
from __future__ import annotations

import gc
import sys
import time

from benchmarks.harness import Outcome, Row, Stats, log, ms, spread_ms, verdict
from benchmarks.notebooks import kernel_env

NAME = "widget"
TITLE = "Widget response (knob change -> re-run -> PNG)"
STEP_BUDGET_S = 0.100   # p95 at the default knobs, one knob moved one step
WORST_BUDGET_S = 0.300  # p95 at a knob's most expensive setting (its min or max)


# ---------------------------------------------------------------------------------------------
# Caches in labkit (and in the notebook's namespace), found by shape, not by function name


def _caches(namespace: dict) -> list:
    """Module-level memo dicts (named *cache*), functools caches and Play panels (which keep a baseline) in labkit."""
    found, seen = [], set()
    scopes = [vars(m) for name, m in list(sys.modules.items())
              if m is not None and (name == "labkit" or name.startswith("labkit."))] + [namespace]
    for scope in scopes:
        for attr, obj in list(scope.items()):
            is_dict = isinstance(obj, dict) and "cache" in attr.lower()
            is_lru = (not isinstance(obj, type) and callable(getattr(obj, "cache_clear", None))
                      and callable(getattr(obj, "cache_info", None)))
            if (is_dict or is_lru) and id(obj) not in seen:
                seen.add(id(obj))
                found.append(obj)
    return found


def _cache_entries(caches) -> int:
    return sum(len(c) if isinstance(c, dict) else c.cache_info().currsize for c in caches)


def _clear(caches) -> None:
    for c in caches:
        c.clear() if isinstance(c, dict) else c.cache_clear()


# ---------------------------------------------------------------------------------------------


def _timed_render(play, caches, cold: bool, cpu: list) -> float:
    """Wall seconds of one render (its CPU seconds are appended to `cpu`), from empty caches if `cold`."""
    if cold:
        _clear(caches)
    c0, t0 = time.process_time(), time.perf_counter()
    play.render()
    wall = time.perf_counter() - t0
    cpu.append(time.process_time() - c0)
    return wall


def measure_panel(panel, label: str, n_step: int, n_end: int) -> dict:
    """Every knob of one lesson's panel: is it part of a cache key, its ±1-step timings, its min/max timings."""
    from labkit.widgets import Play

    play = Play(panel.runs, panel.show, **{k.name: k.widget() for k in panel.knobs})
    caches = _caches({})
    play.render()  # warm up: imports, font cache, first figure
    knobs = {}
    for knob in panel.knobs:
        name, control, default = knob.name, play.controls[knob.name], knob.default
        step = knob.neighbour(default)
        # Is this knob part of a cache key? Render the defaults from empty caches, then the step.
        _clear(caches)
        control.value = default
        play.render()
        before = _cache_entries(caches)
        control.value = step
        play.render()
        # A miss if the move added an entry, or if nothing is cached at all (all re-simulated).
        keyed = _cache_entries(caches) > before or before == 0
        control.value = default
        play.render()  # what a real panel has cached: the default run

        gc.collect()
        samples, cpu = [], []
        if step != default:
            for i in range(n_step):
                control.value = (step, default)[i % 2]
                samples.append(_timed_render(play, caches, keyed, cpu))
        ends, ends_cpu = {}, {}
        for value in [v for v in knob.ends if v != default]:
            control.value = value
            gc.collect()
            end_cpu: list = []
            ends[value] = Stats.of([_timed_render(play, caches, keyed, end_cpu) for _ in range(n_end)])
            ends_cpu[value] = Stats.of(end_cpu)
        control.value = default
        knob = knobs[name] = {"keyed": keyed, "cached": before > 0, "step": (default, step),
                              "step_stats": Stats.of(samples) if samples else None,
                              "step_cpu": Stats.of(cpu) if cpu else None, "ends": ends, "ends_cpu": ends_cpu}
        worst_end = max(ends.items(), key=lambda kv: kv[1].p95) if ends else None
        log(f"  [widget] {label} {name}: {_kind(knob)}, "
            f"step p95 {ms(knob['step_stats'].p95) if samples else 'n/a'}"
            + (f", worst end {name}={worst_end[0]} p95 {ms(worst_end[1].p95)}" if worst_end else ""))
    return knobs


def _kind(knob) -> str:
    return "hit" if not knob["keyed"] else "miss" if knob["cached"] else "no cache"


def _cell(st: Stats, cpu: Stats) -> str:
    return f"{ms(st.p95)} / {ms(st.median)} / {ms(cpu.median)}"


def run(ctx) -> Outcome:
    kernel_env()
    import matplotlib

    matplotlib.use("Agg")
    # 40 moves per knob: with 20, the p95 was the slowest move or the one before it, so one
    # collector pause or a slow minute of this shared machine decided a row on its own.
    n_step, n_end = ctx.repeats(40, 6), ctx.repeats(12, 4)
    from labkit import lessons

    found = lessons.discover()
    out = Outcome()
    if not found:
        out.rows.append(Row(NAME, "Play widgets", "none found", "", "", "not run", "no lesson in labkit/lessons"))
        return out
    from labkit.plots import DPI

    out.details.append(
        f"Each sample: set one control, then `Play.render()` (run + show + PNG at {DPI:g} dpi, Agg). "
        f"±1 step: {n_step} alternating moves between the default and one step from it; "
        f"min/max: {n_end} renders at each end of each knob, the others at their defaults. "
        "Cache 'miss' knobs start every sample from empty caches; 'hit' knobs reuse what the default run "
        "cached; 'no cache': the run function caches nothing, every move re-simulates. "
        "Cells: wall p95 / wall median / CPU median.")
    out.details += ["", "| widget | knob | cache | ±1 step | at min | at max |", "|---|---|---|---|---|---|"]
    for lesson in found:
        label = f"{lesson.NOTEBOOK}: lk.{lesson.__name__.rsplit('.', 1)[-1]}.play()"
        log(f"[widget] {label}")
        try:
            knobs = measure_panel(lesson.PANEL, label, n_step, n_end)
        except Exception as exc:  # noqa: BLE001 - a broken widget is a result, not a crash of the suite
            out.rows.append(Row(NAME, label, "", "", "", "ERROR", f"{type(exc).__name__}: {exc}"))
            continue
        for name, k in knobs.items():
            st = k["step_stats"]
            ends = [f"{_cell(s, k['ends_cpu'][v])} ({v})" for v, s in k["ends"].items()]
            out.details.append(f"| {label} | {name} | {_kind(k)} | "
                               f"{_cell(st, k['step_cpu']) if st else 'n/a'} | "
                               + " | ".join((ends + ["", ""])[:2]) + " |")
        for keyed in (True, False):
            group = {n: k for n, k in knobs.items() if k["keyed"] == keyed and k["step_stats"]}
            if not group:
                continue
            if not keyed:
                kind = "±1 step, cached baseline reused (cache hit)"
            elif any(k["cached"] for k in group.values()):
                kind = "±1 step, re-simulated (cache miss)"
            else:
                kind = "±1 step, re-simulated (nothing cached)"
            worst = max(group, key=lambda n: group[n]["step_stats"].p95)
            st, cpu = group[worst]["step_stats"], group[worst]["step_cpu"]
            out.rows.append(Row(NAME, f"{label}, {kind}", f"p95 {ms(st.p95)}",
                                spread_ms(st, f"CPU median {ms(cpu.median)}; worst of {len(group)} knob(s): {worst}"),
                                f"p95 <= {ms(STEP_BUDGET_S)}", verdict(st.p95 <= STEP_BUDGET_S)))
        ends = [(n, v, s, k["ends_cpu"][v]) for n, k in knobs.items() for v, s in k["ends"].items()]
        if ends:
            name, value, st, cpu = max(ends, key=lambda e: e[2].p95)
            out.rows.append(Row(NAME, f"{label}, most expensive knob setting", f"p95 {ms(st.p95)}",
                                spread_ms(st, f"CPU median {ms(cpu.median)}; worst of {len(ends)} min/max "
                                              f"settings: {name}={value}"),
                                f"p95 <= {ms(WORST_BUDGET_S)}", verdict(st.p95 <= WORST_BUDGET_S)))
    return out
