"""`labkit new NN topic`: a new lesson's package and solution notebook, ready to fill in (course tooling).

What it writes runs as it is: a lesson package with a model (`simulate`), a panel
(`KNOBS`, `summarize`, `plot`, `PANEL`, `play`) and one graded exercise, and a solution
notebook with the seven sections. The course's generic tests pick it up at once, so a
new lesson starts green and stays green while its author replaces the placeholders.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

_INIT = '''"""Lesson {number}, {title}: ONE LINE ON WHAT THE LEARNER SEES FAIL, AND THE PATTERN THAT HELPS.

`simulate(...)` runs the lesson's scenario, `summarize(runs)` compares runs in a table,
`plot(runs)` draws them over time, and `play()` is the Play panel.
"""
from labkit.lessons.{topic}.model import KNOBS, simulate
from labkit.lessons.{topic}.panel import PANEL, play, plot, summarize

NUMBER, NOTEBOOK, TITLE = "{number}", "{notebook}", "{title}"

__all__ = ["KNOBS", "PANEL", "play", "plot", "simulate", "summarize"]
'''

_MODEL = '''"""Lesson {number}'s model. A placeholder to replace: Poisson callers into a service with a pool of workers."""
from __future__ import annotations

from labkit.knobs import Knob, Knobs
from labkit.mode import made_when_read
from labkit.traffic import CallsRun, simulate_calls

KNOBS = Knobs(
    Knob("rate_rps", 10.0, 400.0, 10.0, 100.0, unit="requests/s"),
    Knob("workers", 1, 40, 1, 10),
)


@KNOBS.validates
@made_when_read(CallsRun)   # in the grader's child, a demo cell's run is made only if something reads it
def simulate(*, rate_rps: float = 100.0, workers: int = 10, seed: int = 1) -> CallsRun:
    """30 s of traffic at `rate_rps` into `workers` workers of a healthy service (lesson {number})."""
    return simulate_calls(seed=seed, duration_s=30.0, rate_rps=rate_rps, outage_s=0, timeout_s=5.0,
                          max_concurrency=workers)
'''

_PANEL = '''"""Lesson {number}'s table, figure and Play panel."""
from __future__ import annotations

from labkit.knobs import Panel
from labkit.lessons.{topic}.model import KNOBS, simulate
from labkit.mode import arguments_checked, made_when_read
from labkit.plots import Chart, legend_outside, new_figure, not_drawn_while_grading, peak, round_up, time_series
from labkit.run import as_runs
from labkit.traffic import CallsRun
from labkit.widgets import Table


@made_when_read(Table)
def summarize(runs):
    """A table comparing runs side by side, one column per label (lesson {number})."""
    runs = as_runs(runs, CallsRun, "lk.{topic}.simulate")
    arguments_checked()
    sums = [run.summary() for run in runs.values()]
    return Table({{"requests": [s["requests"] for s in sums],
                  "callers' success": [f"{{100 * s['success_rate']:.1f}} %" for s in sums],
                  "callers' p99 latency": [f"{{s['p99_ms']:,.0f}} ms" for s in sums]}}, columns=list(runs))


@not_drawn_while_grading
def plot(runs, title: str | None = None):
    """Callers' p99 latency over time, one line per run (lesson {number})."""
    runs = as_runs(runs, CallsRun, "lk.{topic}.simulate")
    fig, (ax,) = new_figure(1, 2.4, right=0.82)
    for i, (label, run) in enumerate(runs.items()):
        s = run.series()
        time_series(ax, s["time_s"], s["p99_ms"], label, i)
    first = next(iter(runs.values()))
    ax.set_xlim(0, first.duration_s)
    ax.set_ylim(0, round_up(1.1 * peak(run.series()["p99_ms"] for run in runs.values())))
    ax.set_ylabel("callers' p99 (ms)")
    ax.set_xlabel("time (s, simulated)")
    legend_outside(ax, loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize=8, frameon=False)
    fig.suptitle(title or "A TITLE THAT STATES THE FINDING", fontsize=11)
    return Chart(fig)


PANEL = Panel(KNOBS, simulate, summarize, plot)
play = PANEL.play
'''

_EXERCISES = '''"""Exercises of lesson {number}, {title}: scenarios and the messages each mistake earns."""
from __future__ import annotations

from labkit.checking import concept_question

# Feedback for each wrong choice explains the misconception without naming the right one.
_CHOICES = {{
    "a": (True, "Right: REPLACE WITH WHY."),
    "b": (False, "No: REPLACE WITH THE MISCONCEPTION THIS CHOICE REVEALS."),
    "c": (False, "No: REPLACE WITH THE MISCONCEPTION THIS CHOICE REVEALS."),
}}

concept = concept_question("{number}.1", "a concept question", _CHOICES,
                           hints=("A FIRST NUDGE.", "A HINT CLOSE TO THE WHOLE ARGUMENT, NEVER THE ANSWER."))
'''


def _md(text: str) -> dict:
    return {"cell_type": "markdown", "metadata": {}, "source": text.strip("\n").splitlines(keepends=True)}


def _code(text: str, *tags: str) -> dict:
    return {"cell_type": "code", "execution_count": None, "metadata": {"tags": list(tags)} if tags else {},
            "outputs": [], "source": text.strip("\n").splitlines(keepends=True)}


def _notebook(number: str, topic: str, title: str) -> dict:
    lk = f"lk.{topic}"
    cells = [
        _md(f"# {number} · {title.capitalize()}\n\nONE PARAGRAPH: WHAT THE LEARNER WILL SEE, BREAK AND BUILD."),
        _md("## Setup"),
        _code("import labkit as lk"),
        _md("## Why it matters\n\nOPEN WITH A CONCRETE INCIDENT, IN NUMBERS FROM THE RUNS BELOW."),
        _code(f"calm = {lk}.simulate(rate_rps=100)\nbusy = {lk}.simulate(rate_rps=350)\n"
              f'{lk}.summarize({{"100 requests/s": calm, "350 requests/s": busy}})'),
        _code(f'{lk}.plot({{"100 requests/s": calm, "350 requests/s": busy}})', "nbval-ignore-output"),
        _md("## The model\n\n```mermaid\nflowchart LR\n    C[callers] --> S[service]\n```\n\nWHAT REAL SYSTEMS DO."),
        _md("## Play\n\nTHINGS TO TRY."),
        _code(f"{lk}.play()", "nbval-ignore-output"),
        _md("## Break it\n\n*Predict before you run:* A QUESTION WHOSE ANSWER THE NEXT CELL SHOWS."),
        _code(f'{lk}.summarize({{"1 worker": {lk}.simulate(workers=1, rate_rps=10)}})'),
        _md("## Exercises\n\n### Exercise 1: a concept question\n\nTHE QUESTION.\n\n- **a.** ...\n- **b.** ...\n"
            "- **c.** ...\n\nSet `ANSWER` to the letter of your choice."),
        _code('ANSWER = "a"  # SOLUTION'),
        _code(f'lk.check("{number}.1", ANSWER)'),
        _code(f'lk.hints("{number}.1")', "nbval-ignore-output"),
        _md("## Key points\n\n- FIVE OR FEWER CLAIMS THE LESSON DEMONSTRATED.\n- THE LAST ONE LINKS TO THE NEXT LESSON."),
    ]
    for i, cell in enumerate(cells):
        cell["id"] = f"{topic[:20]}-{i:02d}"   # nbformat 4.5 wants every cell to have an id
    return {"cells": cells, "metadata": {"kernelspec": {"display_name": "Python 3", "language": "python",
                                                        "name": "python3"},
                                         "language_info": {"name": "python"}},
            "nbformat": 4, "nbformat_minor": 5}


def new_lesson(number: str, topic: str, title: str | None = None, root: Path = ROOT) -> list[Path]:
    """Write lesson `number`'s package (labkit/lessons/<topic>/) and its solution notebook; returns what was written.

    Refuses to overwrite anything: a lesson number or topic that exists already is an error.
    """
    if not re.fullmatch(r"\d\d", str(number)):
        raise ValueError(f"number must be two digits, like 04; got {number!r}")
    if not re.fullmatch(r"[a-z][a-z0-9_]*", topic):
        raise ValueError(f"topic must be a lower-case Python name, like bulkhead; got {topic!r}")
    title = title or topic.replace("_", " ")
    notebook = f"{number}_{topic}"
    package = root / "labkit" / "lessons" / topic
    solution = root / "solutions" / f"{notebook}.ipynb"
    taken = [p for p in (package, solution) if p.exists()]
    taken += sorted((root / "solutions").glob(f"{number}_*.ipynb"))
    if taken:
        raise ValueError(f"lesson {number} or topic {topic!r} exists already: {', '.join(map(str, taken))}")
    fields = dict(number=number, topic=topic, title=title, notebook=notebook)
    package.mkdir(parents=True)
    written = []
    for name, template in (("__init__.py", _INIT), ("model.py", _MODEL), ("panel.py", _PANEL),
                           ("exercises.py", _EXERCISES)):
        path = package / name
        path.write_text(template.format(**fields), encoding="utf-8")
        written.append(path)
    solution.parent.mkdir(parents=True, exist_ok=True)
    solution.write_text(json.dumps(_notebook(number, topic, title), indent=1, ensure_ascii=False) + "\n",
                        encoding="utf-8")
    return [*written, solution]
