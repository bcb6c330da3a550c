"""Course execution: every lesson and solution run headless with nbclient, total and per notebook.

Each notebook runs top to bottom in a fresh kernel whose working directory is its folder,
as nbval and CI run them. A notebook's time is kernel start to kernel shutdown. The course
is run end to end several times; the budget applies to the median.

Lessons get one extra, tiny last cell asking the kernel for its peak RSS; the memory
benchmark reuses those numbers when it runs in the same invocation.
"""
from __future__ import annotations

from benchmarks.harness import ERROR, Outcome, Row, Stats, log, verdict
from benchmarks.notebooks import LESSONS, SOLUTIONS, execute, notebooks

NAME = "course"
TITLE = "Course execution (nbclient, headless)"
TOTAL_BUDGET_S = 90.0
NOTEBOOK_BUDGET_S = 8.0


def run(ctx) -> Outcome:
    out = Outcome()
    paths = notebooks(LESSONS) + notebooks(SOLUTIONS)
    if not paths:
        out.rows.append(Row(NAME, "whole course", "no notebooks", "", "", "not run"))
        return out
    passes = ctx.repeats(3, 1)
    walls = {p: [] for p in paths}
    cells = {p: [] for p in paths}
    totals, errors = [], {}
    rss = ctx.shared.setdefault("peak_rss_bytes", {})
    for i in range(passes):
        total = 0.0
        for path in paths:
            is_lesson = path.parent == LESSONS
            result = execute(path, peak_rss=is_lesson)
            total += result.wall_s
            walls[path].append(result.wall_s)
            cells[path].append(result.cells_s)
            if result.error:
                errors[path] = result.error
            if result.peak_rss_bytes is not None:
                rss.setdefault(path, []).append(result.peak_rss_bytes)
            log(f"  [course] pass {i + 1}/{passes} {path.parent.name}/{path.name}: {result.wall_s:.1f} s"
                + (f"  {result.error}" if result.error else ""))
        totals.append(total)
    st = Stats.of(totals)
    out.rows.append(Row(NAME, f"whole course ({len(paths)} notebooks, sequential)", f"{st.median:.1f} s",
                        f"median of {st.n} runs, min–max {st.min:.1f}–{st.max:.1f} s",
                        f"<= {TOTAL_BUDGET_S:g} s", verdict(st.median <= TOTAL_BUDGET_S)))
    slowest = max(paths, key=lambda p: Stats.of(walls[p]).median)
    sl = Stats.of(walls[slowest])
    over = [p for p in paths if Stats.of(walls[p]).median > NOTEBOOK_BUDGET_S]
    out.rows.append(Row(NAME, "slowest notebook", f"{sl.median:.1f} s",
                        f"{slowest.parent.name}/{slowest.name}, min–max {sl.min:.1f}–{sl.max:.1f} s (n={sl.n})",
                        f"each <= {NOTEBOOK_BUDGET_S:g} s", verdict(not over),
                        f"{len(over)} over: " + ", ".join(f"{p.parent.name}/{p.name}" for p in over) if over else ""))
    for path, error in errors.items():
        out.rows.append(Row(NAME, f"{path.parent.name}/{path.name} runs without error", "raised", "", "no error",
                            ERROR, error[:200]))
    out.details += ["| notebook | median | min–max | cells only (median) | kernel start + shutdown (median) |",
                    "|---|---|---|---|---|"]
    for path in paths:
        w, c = Stats.of(walls[path]), Stats.of(cells[path])
        out.details.append(f"| {path.parent.name}/{path.name} | {w.median:.2f} s | {w.min:.2f}–{w.max:.2f} s | "
                           f"{c.median:.2f} s | {w.median - c.median:.2f} s |")
    out.details += ["", f"{passes} end-to-end runs of the course; nbclient with the `python3` kernel "
                        "(this interpreter), one fresh kernel per notebook."]
    return out
