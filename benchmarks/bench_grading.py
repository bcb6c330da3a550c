"""Grading throughput for every lesson: 50 submissions each, graded by `labkit grade <dir> -o gradebook.csv --jobs 2`.

For each solutions/NN_*.ipynb the submissions are built from the solution: each exercise
cell is kept (right), swapped for the generated lesson's `...` starter (not attempted), or
mutated into a wrong answer (lesson 03: the mistakes tests/test_checks_03_circuit_breaker.py
names; other lessons: a comparison or a constant changed, as mutation testing does). The
mix is drawn from a seeded RNG, so every run grades the same notebooks. Layout:
`<dir>/<student>/<lesson>.ipynb`, one folder per student, as nbgrader's `submitted/<student>/`.

Three figures per lesson: the batch's wall time (budget 60 s); the grader's time for the
solution alone against the time its checks take in-process, as in a learner's new kernel
(budget: that + 1.5 s; medians of three runs of each, taken in turn); and the batch again
with two CPU-bound processes alongside, where no right exercise may lose a point and no
submission whose every exercise is right may time out.
"""
from __future__ import annotations

import contextlib
import io
import os
import random
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.harness import ERROR, Outcome, Row, log, verdict
from benchmarks.notebooks import LESSONS, SOLUTIONS, kernel_env, notebooks

NAME = "grading"
TITLE = "Grading throughput per lesson (labkit grade --jobs 2)"
LESSON = "03_circuit_breaker"
SUBMISSIONS = 50
JOBS = 2
BUDGET_S = 60.0
SOLO_MARGIN_S = 1.5
SOLO_RUNS = 3
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


# Generic wrong answers for lessons without a table of named mistakes: the first that applies.
GENERIC_MISTAKES = {
    ">= becomes >": _replace(" >= ", " > "),
    "<= becomes <": _replace(" <= ", " < "),
    "< becomes <=": _replace(" < ", " <= "),
    "+= 1 becomes += 2": _replace("+= 1", "+= 2"),
    "a constant becomes 0": _sub(r"^(\w+) = [^\n]*# SOLUTION$", r"\1 = 0"),
}


def lesson_exercises(lesson: str) -> dict:
    """exercise id -> (answer name, {mistake: mutation}) for a lesson notebook name."""
    from labkit import checking

    out = {}
    for exercise in checking.all_exercises():
        if exercise.id.split(".")[0] == lesson[:2]:
            named = EXERCISES.get(exercise.id, (None, {}))[1] if lesson == LESSON else {}
            out[exercise.id] = (exercise.answer_name, named or GENERIC_MISTAKES)
    return out


def build_submissions(dest: Path, lesson: str = LESSON, n: int = SUBMISSIONS, seed: int = SEED) -> dict:
    """Write n submissions under dest; returns {student: {exercise: 'right' | 'not attempted' | mistake}}."""
    import nbformat

    solution = nbformat.read(SOLUTIONS / f"{lesson}.ipynb", as_version=4)
    starter = nbformat.read(LESSONS / f"{lesson}.ipynb", as_version=4)
    solution.metadata.pop("widgets", None)
    for cell in solution.cells:
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    exercises = lesson_exercises(lesson)
    cells = {ex: _cell_index(solution, name) for ex, (name, _) in exercises.items()}
    stubs = {ex: starter.cells[_cell_index(starter, name)].source for ex, (name, _) in exercises.items()}
    rng = random.Random(seed)
    manifest = {}
    for k in range(n):
        student = f"student_{k + 1:02d}"
        nb = nbformat.from_dict(solution)  # a deep copy
        choice = {}
        for ex, (_, mistakes) in exercises.items():
            # The first student is right everywhere, the second hands in the untouched lesson.
            roll = 0.0 if k == 0 else 0.99 if k == 1 else rng.random()
            source = solution.cells[cells[ex]].source
            if roll < 0.5:
                choice[ex] = "right"
            elif roll < 0.65 or k == 1:
                choice[ex], source = "not attempted", stubs[ex]
            else:
                names = sorted(mistakes)
                rng.shuffle(names)
                for mistake in names if mistakes is not GENERIC_MISTAKES else list(mistakes):
                    try:
                        mutated = mistakes[mistake](source)
                    except LookupError:
                        continue
                    if mutated != source:
                        choice[ex], source = mistake, mutated
                        break
                else:  # no mutation applies (the solution changed under it): hand in the starter instead
                    choice[ex], source = "not attempted (no mutation applies)", stubs[ex]
            nb.cells[cells[ex]].source = source
        (dest / student).mkdir(parents=True, exist_ok=True)
        nbformat.write(nb, dest / student / f"{lesson}.ipynb")
        manifest[student] = choice
    return manifest


def labkit_command() -> list[str]:
    """The `labkit` console script of this interpreter's environment, else `python -m labkit.cli`."""
    script = Path(sys.executable).with_name("labkit")
    return [str(script)] if script.exists() else [sys.executable, "-m", "labkit.cli"]


def _grade(cmd: list[str], folder: Path, gradebook: Path) -> tuple[float, subprocess.CompletedProcess]:
    args = [*cmd, "grade", str(folder), "-o", str(gradebook), "--jobs", str(JOBS), "--force"]
    t0 = time.perf_counter()
    proc = subprocess.run(args, capture_output=True, text=True, timeout=1800)
    return time.perf_counter() - t0, proc


def _records(gradebook: Path) -> dict:
    import json

    data = json.loads(gradebook.with_suffix(".json").read_text(encoding="utf-8"))
    return {Path(k).parent.name: v for k, v in data["submissions"].items()}


def _lost_points(manifest: dict, records: dict) -> list[str]:
    """Right exercises that did not get full points, and all-right submissions that timed out.

    An exercise counts as right when it and every earlier exercise of its lesson are: a later
    answer may build on an earlier one (01.2's router subclasses 01.1's), and then inherits its mistakes.
    """
    lost = []
    for student, choice in manifest.items():
        record = records.get(student)
        if record is None:
            lost.append(f"{student}: no record")
            continue
        so_far_right = True
        for ex, what in sorted(choice.items()):
            so_far_right = so_far_right and what == "right"
            report = record["exercises"].get(ex)
            if so_far_right and (report is None or report["score"] < report["max_score"]):
                lost.append(f"{student} {ex}: {report and report['score']}/{report and report['max_score']}")
        if all(w == "right" for w in choice.values()) and record["status"] != "ok":
            lost.append(f"{student}: status {record['status']} ({record['reason'][:80]})")
    return lost


def in_notebook_check_s(lesson: str) -> float:
    """Seconds the lesson's checks take in-process on the solution's answers, as its check cells run them."""
    import json

    from labkit import checking
    from benchmarks.notebooks import _python

    nb = json.loads((SOLUTIONS / f"{lesson}.ipynb").read_text(encoding="utf-8"))
    namespace: dict = {"__name__": "__main__"}
    saved = os.environ.get("LABKIT_GRADING_CHILD")
    os.environ["LABKIT_GRADING_CHILD"] = "1"  # lk.check and the plots are skipped while the cells run
    try:
        with contextlib.redirect_stdout(io.StringIO()):   # what the cells print is not the benchmark's
            for cell in nb["cells"]:
                if cell["cell_type"] == "code":
                    try:
                        exec(compile(_python("".join(cell["source"])), "<cell>", "exec"), namespace)
                    except Exception:  # noqa: BLE001 - a display() or a widget outside Jupyter
                        pass
    finally:
        if saved is None:
            os.environ.pop("LABKIT_GRADING_CHILD", None)
        else:
            os.environ["LABKIT_GRADING_CHILD"] = saved
    t0 = time.perf_counter()
    for exercise in checking.all_exercises():
        if exercise.id.split(".")[0] == lesson[:2]:
            exercise.run(namespace.get(exercise.answer_name, ...))
    return time.perf_counter() - t0


def in_notebook_check_s_fresh(lesson: str) -> float:
    """`in_notebook_check_s` in a new process, as a learner's kernel is: checks that memoise a run are not warm."""
    code = f"from benchmarks.bench_grading import in_notebook_check_s; print(in_notebook_check_s({lesson!r}))"
    proc = subprocess.run([sys.executable, "-c", code], cwd=Path(__file__).resolve().parent.parent,
                          capture_output=True, text=True, timeout=600, env={**os.environ, "MPLBACKEND": "Agg"})
    try:
        return float(proc.stdout.strip().splitlines()[-1])
    except (IndexError, ValueError):
        raise RuntimeError(f"measuring {lesson}'s checks in-process failed: {proc.stderr.strip()[-300:]}") from None


def _burners(n: int) -> list[subprocess.Popen]:
    return [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(n)]


def run(ctx) -> Outcome:
    kernel_env()
    out = Outcome()
    cmd = labkit_command()
    out.details += ["| lesson | exercise | submissions by kind |", "|---|---|---|"]
    for path in notebooks(SOLUTIONS):
        lesson = path.stem
        with tempfile.TemporaryDirectory(prefix="labkit-bench-grade-") as tmp:
            tmp = Path(tmp)
            manifest = build_submissions(tmp / "submissions", lesson)
            figure = f"{SUBMISSIONS} submissions of {lesson}, --jobs {JOBS}"
            wall, proc = _grade(cmd, tmp / "submissions", tmp / "gradebook.csv")
            text = (tmp / "gradebook.csv").read_text(encoding="utf-8") if (tmp / "gradebook.csv").exists() else ""
            missing = [s for s in manifest if s not in text]
            if not text or missing:
                tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
                out.rows.append(Row(NAME, figure, f"{wall:.1f} s", "", f"<= {BUDGET_S:g} s", ERROR,
                                    f"exit {proc.returncode}; gradebook " +
                                    ("missing" if not text else f"lacks {len(missing)} students") + f": {tail}"))
                continue
            records = _records(tmp / "gradebook.csv")
            lost = _lost_points(manifest, records)
            log(f"  [grading] {lesson}: {wall:.1f} s (exit {proc.returncode}); {len(lost)} right answers lost points")
            out.rows.append(Row(NAME, figure, f"{wall:.1f} s", f"{SUBMISSIONS / wall:.1f} submissions/s",
                                f"<= {BUDGET_S:g} s", verdict(wall <= BUDGET_S and not lost),
                                f"lost: {'; '.join(lost)[:200]}" if lost else ""))

            # The solution alone, against its checks run in-process.
            # A student folder inside, as in a class: the gradebook names each submission by its folder.
            solo = tmp / "solo"
            (solo / "solo").mkdir(parents=True)
            (solo / "solo" / f"{lesson}.ipynb").write_bytes((tmp / "submissions" / "student_01" / f"{lesson}.ipynb").read_bytes())
            # Medians of SOLO_RUNS, the two taken in turn: the machine's speed drifts, and one sample is noise.
            graded, local, walls = [], [], []
            for i in range(SOLO_RUNS):
                book = tmp / f"solo{i}.csv"
                solo_wall, _ = _grade(cmd, solo, book)
                walls.append(solo_wall)
                graded.append(_records(book)["solo"]["seconds"] if book.exists() else float("nan"))
                local.append(in_notebook_check_s_fresh(lesson))
            graded_s, local_s, solo_wall = statistics.median(graded), statistics.median(local), statistics.median(walls)
            out.rows.append(Row(NAME, f"{lesson}: the solution alone, grader vs in-notebook checks "
                                      f"(medians of {SOLO_RUNS})",
                                f"{graded_s:.2f} s", f"checks in-process {local_s:.2f} s; whole command "
                                f"{solo_wall:.1f} s", f"<= {local_s + SOLO_MARGIN_S:.2f} s",
                                verdict(graded_s <= local_s + SOLO_MARGIN_S)))

            # The batch again, with two CPU-bound processes on the machine.
            burners = _burners(2)
            try:
                loaded_wall, _ = _grade(cmd, tmp / "submissions", tmp / "loaded.csv")
            finally:
                for b in burners:
                    b.send_signal(signal.SIGKILL)
                    b.wait()
            lost = _lost_points(manifest, _records(tmp / "loaded.csv"))
            timeouts = sum(1 for r in _records(tmp / "loaded.csv").values() if r["status"] == "timeout")
            out.rows.append(Row(NAME, f"{lesson}: the same batch with 2 CPU-bound processes alongside",
                                f"{len(lost)} right answers lost points", f"{loaded_wall:.1f} s; "
                                f"{timeouts} submissions timed out", "0 lost", verdict(not lost),
                                f"lost: {'; '.join(lost)[:200]}" if lost else ""))
        kinds: dict = {}
        for choice in manifest.values():
            for ex, what in choice.items():
                kinds.setdefault(ex, {}).setdefault(what, 0)
                kinds[ex][what] += 1
        out.details += [f"| {lesson} | {ex} | " + ", ".join(f"{what}: {n}" for what, n in sorted(c.items())) + " |"
                        for ex, c in kinds.items()]
    out.details += ["", f"Command: `labkit grade <dir> -o <tmp>/gradebook.csv --jobs {JOBS} --force`, one run per "
                        "figure. 'The solution alone' is the `seconds` the gradebook records for it (child start, "
                        "notebook and checks); 'checks in-process' runs the lesson's checks on the solution's "
                        "answers in this process."]
    return out
