"""What every benchmark shares: summary statistics, result rows, the machine's description, the report."""
from __future__ import annotations

import datetime
import os
import platform
import subprocess
import sys
import time
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

from labkit.trace import percentile  # the one percentile of the course: benchmarks quote what lessons compute

ROOT = Path(__file__).resolve().parent.parent

PASS, FAIL, NOT_RUN, ERROR = "pass", "FAIL", "not run", "ERROR"

# Versions worth quoting next to a number: what the figures depend on.
KEY_PACKAGES = ("labkit", "matplotlib", "ipywidgets", "ipykernel", "jupyter_client", "nbclient",
                "nbformat", "simpy", "pyinstrument")


@dataclass(frozen=True)
class Stats:
    """Summary of repeated measurements: n, median, p5, p95, min, max (in the samples' unit)."""

    n: int
    median: float
    p5: float
    p95: float
    min: float
    max: float

    @classmethod
    def of(cls, samples) -> "Stats":
        s = list(samples)
        return cls(len(s), percentile(s, 50), percentile(s, 5), percentile(s, 95), min(s), max(s))


@dataclass
class Row:
    """One line of the results table: a figure, what was measured, its spread, the budget, the verdict."""

    benchmark: str
    figure: str
    measured: str
    spread: str
    budget: str
    status: str
    note: str = ""


@dataclass
class Outcome:
    """What a benchmark hands back: table rows and markdown details for RESULTS.md."""

    rows: list[Row] = field(default_factory=list)
    details: list[str] = field(default_factory=list)


@dataclass
class Context:
    """Settings shared by the benchmarks of one run."""

    quick: bool = False
    shared: dict = field(default_factory=dict)  # results one benchmark leaves for another (course -> memory)

    def repeats(self, full: int, quick: int = 1) -> int:
        """How many times to repeat a measurement: `full` normally, `quick` with --quick."""
        return quick if self.quick else full


def log(message: str) -> None:
    """Progress on stderr, so the table on stdout stays clean."""
    print(message, file=sys.stderr, flush=True)


def verdict(ok: bool) -> str:
    return PASS if ok else FAIL


def ms(seconds: float) -> str:
    return f"{seconds * 1000:,.0f} ms"


def spread_ms(st: Stats, label: str = "") -> str:
    """'median 83 ms, p5–p95 79–96 ms (n=20)' for timings in seconds."""
    return (f"median {st.median * 1000:,.0f} ms, p5–p95 {st.p5 * 1000:,.0f}–{st.p95 * 1000:,.0f} ms "
            f"(n={st.n}{', ' + label if label else ''})")


# ---------------------------------------------------------------------------------------------
# The machine


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def load_average() -> str:
    try:
        return " / ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "n/a"


def speed_probe() -> str:
    """The same pure-Python loop, timed: this machine's speed drifts by up to 1.5x within minutes,
    and a probe before and after each benchmark says how fast it was while that one ran."""
    times = []
    for _ in range(3):
        start = time.perf_counter()
        total = 0
        for i in range(1_000_000):
            total += i
        times.append(time.perf_counter() - start)
    return f"{1000 * sorted(times)[1]:.0f} ms"


def git_revision() -> str:
    try:
        rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                             text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return f"{rev}{' + uncommitted changes' if dirty else ''}" if rev else "unknown"


def package_versions() -> dict:
    out = {}
    for name in KEY_PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed" if name != "labkit" else _labkit_version()
    return out


def _labkit_version() -> str:
    try:
        import labkit
        return f"{labkit.__version__} (from source, not installed)"
    except ImportError:
        return "not importable"


def machine() -> dict:
    """The description RESULTS.md quotes with the numbers."""
    return {
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "CPU": cpu_model(),
        "cores": f"{usable_cores()} usable ({os.cpu_count()} online)",
        "Python": f"{platform.python_version()} ({platform.python_implementation()}, {sys.executable})",
        "OS": f"{platform.system()} {platform.release()}",
        "git": git_revision(),
        "load average at start (1/5/15 min)": load_average(),
        "speed probe at start (a 1M-step Python loop; lower is faster)": speed_probe(),
        **{f"{k}": v for k, v in package_versions().items()},
    }


# ---------------------------------------------------------------------------------------------
# The report

COLUMNS = ("benchmark", "figure", "measured", "spread", "budget", "result")


def _cells(row: Row) -> list[str]:
    return [row.benchmark, row.figure, row.measured, row.spread, row.budget,
            row.status + (f" ({row.note})" if row.note else "")]


def text_table(rows: list[Row]) -> str:
    """The table for a terminal: one row per figure, columns padded."""
    grid = [list(COLUMNS)] + [_cells(r) for r in rows]
    widths = [max(len(g[i]) for g in grid) for i in range(len(COLUMNS))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(g, widths)).rstrip() for g in grid]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def markdown_table(rows: list[Row]) -> str:
    esc = lambda s: s.replace("|", "\\|")  # noqa: E731
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for r in rows:
        cells = _cells(r)
        cells[-1] = f"**{cells[-1]}**" if r.status in (FAIL, ERROR) else cells[-1]
        lines.append("| " + " | ".join(esc(c) for c in cells) + " |")
    return "\n".join(lines)


def results_markdown(rows: list[Row], details: dict, info: dict, selected, argv, elapsed_s: float) -> str:
    missed = [r for r in rows if r.status in (FAIL, ERROR)]
    out = ["# Benchmark results", "",
           "Written by `python -m benchmarks`; see README.md for what each figure means. "
           "Numbers from one machine on one day: compare runs on the same machine.", ""]
    command = " ".join(["python -m benchmarks", *argv])
    out += [f"Command: `{command}`  ",
            f"Benchmarks run: {', '.join(selected)} (took {elapsed_s:,.0f} s)  ",
            f"Verdict: {'every budget met' if not missed else f'{len(missed)} budget(s) missed or errored'}", ""]
    out += ["## Machine", "", "| | |", "|---|---|"]
    out += [f"| {k} | {v} |" for k, v in info.items()]
    out += ["", "## Summary", "", markdown_table(rows), ""]
    for name, lines in details.items():
        if lines:
            out += [f"## Details: {name}", "", *lines, ""]
    findings = Path(__file__).with_name("FINDINGS.md")
    if findings.exists():  # hand-written: what the profiles showed, what was fixed, what is left
        out += [findings.read_text(encoding="utf-8").rstrip(), ""]
    return "\n".join(out)
