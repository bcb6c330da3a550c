"""Memory: a lesson kernel's peak resident memory after running every cell.

Each lesson runs in a fresh nbclient kernel; a final cell asks the kernel for its own
peak RSS, `resource.getrusage(resource.RUSAGE_SELF).ru_maxrss`. When the course benchmark
ran in the same invocation its kernels already answered, and their numbers are reused.
MB here is 10^6 bytes.
"""
from __future__ import annotations

from benchmarks.harness import ERROR, Outcome, Row, Stats, log, verdict
from benchmarks.notebooks import LESSONS, execute, notebooks

NAME = "memory"
TITLE = "Peak RSS of a lesson kernel"
BUDGET_MB = 250.0


def run(ctx) -> Outcome:
    out = Outcome()
    paths = notebooks(LESSONS)
    if not paths:
        out.rows.append(Row(NAME, "lesson kernels", "no lessons", "", "", "not run"))
        return out
    measured = ctx.shared.get("peak_rss_bytes", {})
    reused = all(measured.get(p) for p in paths)
    if not reused:
        measured = {}
        for i in range(ctx.repeats(2, 1)):
            for path in paths:
                result = execute(path, peak_rss=True)
                if result.error or result.peak_rss_bytes is None:
                    out.rows.append(Row(NAME, f"lessons/{path.name}", "not measured", "", "", ERROR,
                                        result.error or "the kernel did not report its peak RSS"))
                    continue
                measured.setdefault(path, []).append(result.peak_rss_bytes)
                log(f"  [memory] run {i + 1} lessons/{path.name}: {result.peak_rss_bytes / 1e6:.0f} MB")
    if not measured:
        return out
    worst = max(measured, key=lambda p: max(measured[p]))
    st = Stats.of(b / 1e6 for b in measured[worst])
    over = [p for p in measured if max(measured[p]) / 1e6 > BUDGET_MB]
    out.rows.append(Row(NAME, "largest lesson kernel, peak RSS", f"{st.max:.0f} MB",
                        f"lessons/{worst.name}, min–max {st.min:.0f}–{st.max:.0f} MB (n={st.n})",
                        f"<= {BUDGET_MB:g} MB", verdict(not over),
                        f"{len(over)} over" if over else ""))
    out.details += ["| lesson | peak RSS, max | min–max | runs |", "|---|---|---|---|"]
    for path in sorted(measured):
        s = Stats.of(b / 1e6 for b in measured[path])
        out.details.append(f"| lessons/{path.name} | {s.max:.0f} MB | {s.min:.0f}–{s.max:.0f} MB | {s.n} |")
    out.details += ["", "Measured during the course benchmark's runs." if reused else
                    "Measured in dedicated runs (the course benchmark was not selected).",
                    "The budget applies to the largest value seen: memory varies little between runs."]
    return out
