"""Lesson 00's model and panel: steady traffic into a healthy service with a fixed pool of workers."""
from __future__ import annotations

from labkit.knobs import Knob, Knobs, Panel
from labkit.mode import arguments_checked, made_when_read
from labkit.plots import (Chart, fmt, latency_percentiles, legend_outside, new_figure, not_drawn_while_grading,
                          peak, round_up, time_series)
from labkit.run import as_runs, only_run
from labkit.traffic import CallsRun, simulate_calls
from labkit.widgets import Table

KNOBS = Knobs(
    Knob("rate_rps", 20.0, 420.0, 20.0, 200.0, unit="requests/s"),
    Knob("max_concurrency", 5, 40, 1, 20, unit="workers"),
    Knob("latency_ms", 10.0, 200.0, 10.0, 50.0, unit="ms"),
)


@KNOBS.validates
@made_when_read(CallsRun)
def simulate(*, rate_rps: float = 200.0, max_concurrency: int = 20, latency_ms: float = 50.0,
             seed: int = 1) -> CallsRun:
    """30 s of Poisson traffic at `rate_rps` into `max_concurrency` workers whose median call takes
    `latency_ms` (lognormal); callers wait as long as it takes (lesson 00)."""
    return simulate_calls(seed=seed, duration_s=30.0, rate_rps=rate_rps, outage_s=0, timeout_s=30.0,
                          latency_s=latency_ms / 1000, max_concurrency=max_concurrency)


@made_when_read(Table)
def summarize(runs):
    """Offered load, capacity, utilisation and latency percentiles of one run, or one column per run (lesson 00)."""
    runs = as_runs(runs, CallsRun, "lk.queueing.simulate")
    arguments_checked()

    def rows(run):
        s, lat = run.summary(), run.latency()
        capacity = run.settings["capacity_rps"]
        return {
            "offered load": f"{run.settings['rate_rps']:,.0f} requests/s",
            "capacity (workers / mean latency)": f"{capacity:,.0f} requests/s",
            "utilisation": f"{100 * run.settings['rate_rps'] / capacity:.0f} %",
            "p50 / p95 / p99 latency": " / ".join(f"{lat[k]:,.0f}" for k in ("p50_ms", "p95_ms", "p99_ms")) + " ms",
            "requests served": s["requests"],
        }

    if len(runs) == 1:
        return Table(rows(next(iter(runs.values()))))
    columns = [rows(run) for run in runs.values()]
    return Table({name: [c[name] for c in columns] for name in columns[0]}, columns=list(runs))


@not_drawn_while_grading
def plot(runs, title: str | None = None):
    """Callers' p50/p95/p99 latency and the service's load over time, for one run (lesson 00)."""
    run = only_run(runs, CallsRun, "lk.queueing.simulate")
    s = run.series()
    lat = run.latency_series()
    fig, (ax_lat, ax_load) = new_figure(2, 1.9, top_in=0.75)   # a legend row above the panels
    latency_percentiles(ax_lat, lat["time_s"], lat["p50_ms"], lat["p95_ms"], lat["p99_ms"])
    legend_outside(ax_lat, loc="lower left", bbox_to_anchor=(0, 1.01), borderaxespad=0, fontsize=8, ncols=3,
                   frameon=False)
    time_series(ax_load, s["time_s"], s["service_load_rps"], "calls to service", 1)
    ax_load.set_xlim(0, run.duration_s)
    ax_lat.set_ylim(0, round_up(1.1 * peak([lat["p99_ms"]])))
    ax_load.set_ylim(0, round_up(1.1 * peak([s["service_load_rps"]])))
    ax_load.set_ylabel("calls (/s)")
    ax_load.set_xlabel("time (s, simulated)")
    if title is None:
        p99 = run.summary()["p99_ms"]
        title = f"{fmt(run.settings['rate_rps'])} requests/s: callers' p99 latency is {fmt(p99)} ms"
    fig.suptitle(title, fontsize=11)
    return Chart(fig)


PANEL = Panel(KNOBS, simulate, summarize, plot)
play = PANEL.play
