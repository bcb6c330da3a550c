"""Grading throughput: 50 circuit-breaker submissions graded by `labkit grade <dir> -o gradebook.csv --jobs 2`.

The submissions are built from solutions/03_circuit_breaker.ipynb: each exercise cell is
kept (right), swapped for the generated lesson's `...` starter (not attempted), or mutated
into a plausible wrong answer (the mistakes tests/test_checks_03_circuit_breaker.py names).
The mix is drawn from a seeded RNG, so every run grades the same 50 notebooks. Layout:
`<dir>/<student>/03_circuit_breaker.ipynb`, one folder per student, as nbgrader's
`submitted/<student>/` keeps them.
"""
from __future__ import annotations

import random
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.harness import ERROR, Outcome, Row, Stats, log, verdict
from benchmarks.notebooks import LESSONS, SOLUTIONS, kernel_env

NAME = "grading"
TITLE = "Grading throughput (labkit grade --jobs 2)"
LESSON = "03_circuit_breaker"
SUBMISSIONS = 50
JOBS = 2
BUDGET_S = 60.0
SEED = 3


def _sub(pattern: str, replacement: str):
    """A mutation that rewrites whole lines matching `pattern` (multiline regex)."""
    return lambda src: re.sub(pattern, replacement, src, count=1, flags=re.M)


def _replace(old: str, new: str):
    def mutate(src: str) -> str:
        if old not in src:
            raise LookupError(old)
        return src.replace(old, new)
    return mutate


# exercise -> (name the cell defines, {mistake: mutation of the solution cell})
EXERCISES = {
    "03.1": ("CircuitBreaker", {
        "never half-opens": _replace(
            '            if self.clock.now - self.opened_at < self.recovery_timeout_s:\n'
            '                return False\n            self.state = "half_open"',
            "            return False"),
        "forgets to reset the failure count on success": _replace(
            '        elif self.state == "closed":\n            self.failures = 0\n', ""),
        "opens one failure late": _replace("if self.failures >= self.failure_threshold:",
                                           "if self.failures > self.failure_threshold:"),
        "re-opens without restarting the timeout": _replace(
            '        if self.state == "half_open":\n            self.state, self.opened_at = "open", self.clock.now',
            '        if self.state == "half_open":\n            self.state = "open"'),
    }),
    "03.2": ("TrialLimitedBreaker", {
        "half-open admits everything": lambda src: src.split("    def allow_request")[0],
        "never frees a trial slot": _replace("            self.trials_in_flight -= 1\n", "            pass\n"),
    }),
    "03.3": ("TUNING", {
        "threshold that flaps": _sub(r"^failure_threshold = .*$", "failure_threshold = 1"),
        "recovery timeout too long": _sub(r"^recovery_timeout_s = .*$", "recovery_timeout_s = 15.0"),
        "threshold too high": _sub(r"^failure_threshold = .*$", "failure_threshold = 200"),
    }),
    "03.4": ("ANSWER", {
        "answer a": _sub(r"^ANSWER = .*$", 'ANSWER = "a"'),
        "answer c": _sub(r"^ANSWER = .*$", 'ANSWER = "c"'),
    }),
}


def _defines(source: str, name: str) -> bool:
    return any(line.startswith((f"class {name}(", f"class {name}:", f"def {name}(", f"{name} =", f"{name}="))
               for line in source.splitlines())


def _cell_index(nb, name: str) -> int:
    found = [i for i, c in enumerate(nb.cells) if c.cell_type == "code" and _defines(c.source, name)]
    if len(found) != 1:
        raise ValueError(f"expected one cell defining {name}, found {len(found)}")
    return found[0]


def build_submissions(dest: Path, n: int = SUBMISSIONS, seed: int = SEED) -> dict:
    """Write n submissions under dest; returns {student: {exercise: 'right' | 'not attempted' | mistake}}."""
    import nbformat

    solution = nbformat.read(SOLUTIONS / f"{LESSON}.ipynb", as_version=4)
    lesson = nbformat.read(LESSONS / f"{LESSON}.ipynb", as_version=4)
    solution.metadata.pop("widgets", None)
    for cell in solution.cells:
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    cells = {ex: _cell_index(solution, name) for ex, (name, _) in EXERCISES.items()}
    stubs = {ex: lesson.cells[_cell_index(lesson, name)].source for ex, (name, _) in EXERCISES.items()}
    rng = random.Random(seed)
    manifest = {}
    for k in range(n):
        student = f"student_{k + 1:02d}"
        nb = nbformat.from_dict(solution)  # a deep copy
        choice = {}
        for ex, (_, mistakes) in EXERCISES.items():
            # The first student is right everywhere, the second hands in the untouched lesson.
            roll = 0.0 if k == 0 else 0.99 if k == 1 else rng.random()
            source = solution.cells[cells[ex]].source
            if roll < 0.5:
                choice[ex] = "right"
            elif roll < 0.65 or k == 1:
                choice[ex], source = "not attempted", stubs[ex]
            else:
                mistake = rng.choice(sorted(mistakes))
                try:
                    source = mistakes[mistake](source)
                    choice[ex] = mistake
                except LookupError:  # the solution changed under the mutation: hand in the starter instead
                    choice[ex], source = "not attempted (mutation no longer applies)", stubs[ex]
            nb.cells[cells[ex]].source = source
        (dest / student).mkdir(parents=True, exist_ok=True)
        nbformat.write(nb, dest / student / f"{LESSON}.ipynb")
        manifest[student] = choice
    return manifest


def labkit_command() -> list[str]:
    """The `labkit` console script of this interpreter's environment, else `python -m labkit.cli`."""
    script = Path(sys.executable).with_name("labkit")
    return [str(script)] if script.exists() else [sys.executable, "-m", "labkit.cli"]


def run(ctx) -> Outcome:
    kernel_env()
    out = Outcome()
    figure = f"{SUBMISSIONS} submissions of {LESSON}, --jobs {JOBS}"
    budget = f"<= {BUDGET_S:g} s"
    cmd = labkit_command()
    walls = []
    with tempfile.TemporaryDirectory(prefix="labkit-bench-grade-") as tmp:
        tmp = Path(tmp)
        manifest = build_submissions(tmp / "submissions")
        for i in range(ctx.repeats(3, 1)):
            gradebook = tmp / f"gradebook-{i}.csv"
            args = [*cmd, "grade", str(tmp / "submissions"), "-o", str(gradebook), "--jobs", str(JOBS)]
            t0 = time.perf_counter()
            proc = subprocess.run(args, capture_output=True, text=True, timeout=1800)
            wall = time.perf_counter() - t0
            text = gradebook.read_text(encoding="utf-8") if gradebook.exists() else ""
            missing = [s for s in manifest if s not in text]
            if not text or missing:
                tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
                out.rows.append(Row(NAME, figure, f"{wall:.1f} s", "", budget, ERROR,
                                    f"exit {proc.returncode}; gradebook " +
                                    ("missing" if not text else f"lacks {len(missing)} students") + f": {tail}"))
                return out
            walls.append(wall)
            log(f"  [grading] run {i + 1}: {wall:.1f} s (exit {proc.returncode})")
    st = Stats.of(walls)
    out.rows.append(Row(NAME, figure, f"{st.median:.1f} s",
                        f"median of {st.n}, min–max {st.min:.1f}–{st.max:.1f} s; "
                        f"{SUBMISSIONS / st.median:.1f} submissions/s",
                        budget, verdict(st.median <= BUDGET_S)))
    kinds: dict = {}
    for choice in manifest.values():
        for ex, what in choice.items():
            kinds.setdefault(ex, {}).setdefault(what, 0)
            kinds[ex][what] += 1
    out.details += ["| exercise | submissions by kind |", "|---|---|"]
    out.details += [f"| {ex} | " + ", ".join(f"{what}: {n}" for what, n in sorted(c.items())) + " |"
                    for ex, c in kinds.items()]
    out.details += ["", f"Command: `labkit grade <dir> -o <tmp>/gradebook.csv --jobs {JOBS}`; "
                        "each run grades the same submissions into a fresh gradebook."]
    return out
