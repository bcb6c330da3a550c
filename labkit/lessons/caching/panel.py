"""Lesson 02's table, figure and Play panel: which level answers each read, and what it costs the database."""
from __future__ import annotations

from labkit.knobs import Panel
from labkit.lessons.caching.model import KNOBS, LEVELS, CachingRun, simulate
from labkit.mode import arguments_checked, made_when_read
from labkit.plots import PALETTE, Chart, fmt, legend_outside, new_figure, not_drawn_while_grading, round_up
from labkit.run import as_runs, only_run
from labkit.widgets import Table


def _pct(value: float, digits: int = 0) -> str:
    return "n/a" if value != value else f"{100 * value:.{digits}f} %"


@made_when_read(Table)
def summarize(runs):
    """A table comparing runs side by side, one column per label (lesson 02)."""
    runs = as_runs(runs, CachingRun, "lk.caching.simulate")
    arguments_checked()
    sums = {label: run.summary() for label, run in runs.items()}
    values = list(sums.values())
    rows = {
        "L1 hit ratio (each server's own)": [_pct(s["l1_hit_ratio"]) for s in values],
        "... if it held just the most popular keys": [_pct(s["ideal_l1_hit_ratio"]) if run.settings["l1_items"]
                                                      else "n/a" for run, s in zip(runs.values(), values)],
        "L2 hit ratio (of L1 misses)": [_pct(s["l2_hit_ratio"]) for s in values],
        "reads served by L1 / L2 / database": [" / ".join(_pct(s[f"{lv}_share"]) for lv in LEVELS) for s in values],
        "database load (mean)": [f"{s['db_qps']:,.0f} queries/s" for s in values],
        "database load (busiest second)": [f"{s['db_peak_qps']:,.0f} queries/s" for s in values],
        "database load without caches": [f"{s['uncached_qps']:,.0f} queries/s" for s in values],
        "L2 load (gets, fills, deletes)": ["n/a" if not run.settings["l2"] else f"{s['l2_ops_per_s']:,.0f} requests/s"
                                           for run, s in zip(runs.values(), values)],
        "stale reads (an L1 held an old version)": [_pct(s["stale_share"], 1) for s in values],
        "mean read latency": [f"{s['mean_latency_ms']:.2f} ms" for s in values],
    }
    return Table(rows, columns=list(runs))


@not_drawn_while_grading
def plot(runs, title: str | None = None):
    """Requests per second answered by each level (L1, L2, the database) over time, for one run (lesson 02).

    The bands are stacked with the database at the bottom, so its band's height is the
    database's load (its reads and every write) and the top of the stack the load it
    would carry without caches.
    """
    from matplotlib.ticker import MaxNLocator, MultipleLocator

    run = only_run(runs, CachingRun, "lk.caching.simulate")
    s = run.series()
    end = run.duration_s
    t = [*s["time_s"], end]

    def steps(values):
        # A step plot ends where its last bin starts; repeat the last value so it reaches the end.
        return [*values, values[-1]]

    # One panel: every text and tick costs drawing time on each slider move.
    fig, (ax,) = new_figure(1, 2.6, right=0.82)   # room for the legend beside the bands, which fill the axes
    bands = (("db", "database\n(and all writes)", PALETTE[5]), ("l2", "L2 (shared)", PALETTE[0]),
             ("l1", "L1 (own server)", PALETTE[2]))
    low = [0.0] * len(t)
    for level, label, colour in bands:
        high = [a + b for a, b in zip(low, steps(s["served_rps"][level]))]
        ax.fill_between(t, low, high, step="post", color=colour, alpha=0.85, linewidth=0, label=label)
        low = high
    handles, labels = ax.get_legend_handles_labels()
    legend_outside(ax, handles[::-1], labels[::-1], loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize=8,
                   frameon=False)
    ax.set_xlim(0, end)
    ax.set_ylim(0, round_up(1.1 * max(low)))
    # Few ticks: each is a label, a tick line and a grid line to draw on every slider move.
    ax.xaxis.set_major_locator(MultipleLocator(20 if end > 40 else 10))
    ax.yaxis.set_major_locator(MaxNLocator(4))
    ax.set_ylabel("requests/s answered by")
    ax.set_xlabel("time (s, simulated)")
    if title is None:
        sm = run.summary()
        shares = ", ".join(f"{name} {fmt(100 * sm[f'{lv}_share'])} %" for lv, name in
                           (("l1", "L1"), ("l2", "L2"), ("db", "the database")))
        title = (f"Reads served by {shares}: {fmt(sm['db_qps'])} queries/s instead of "
                 f"{fmt(sm['uncached_qps'])}")
        if sm["stale_share"] >= 0.0005:
            title += f"; {fmt(100 * sm['stale_share'], 1)} % stale"
    fig.suptitle(title, fontsize=10)
    return Chart(fig)


PANEL = Panel(KNOBS, simulate, summarize, plot)
play = PANEL.play
