"""`labkit grade`: grade a batch of notebooks into a CSV gradebook and a JSON record (course tooling).

Each submission runs in its own sandboxed child (see `runner`); a thread pool keeps
`jobs` children busy. The CSV has one row per submission; the JSON next to it keeps every
scenario's verdict and message, and the content hash a re-run uses to skip notebooks that
are already graded. Both files are replaced atomically, every few seconds and at the end,
so a Ctrl-C or a crash leaves a consistent gradebook of what was finished.
"""
from __future__ import annotations

import concurrent.futures
import contextlib
import csv
import hashlib
import importlib.util
import io
import json
import os
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from labkit import checking
from labkit.files import write_atomically
from labkit.grading.runner import (ERROR, GRADER_ERROR, NOT_ATTEMPTED_STATUS, OK, TIMEOUT, DataAnswerCache,
                                   grade_notebook)
from labkit.grading.sandbox import Limits, UidPool, kill_live_children

FORMAT = "labkit-gradebook/1"
FLUSH_EVERY_S = 10.0
GRADED_STATUSES = (OK, NOT_ATTEMPTED_STATUS, TIMEOUT, ERROR)  # the learner's code ran: counts in class statistics


def collect(paths) -> list[Path]:
    """The notebooks to grade: files as given, folders searched for *.ipynb (checkpoints skipped)."""
    found: list[Path] = []
    for given in paths:
        path = Path(given)
        if path.is_dir():
            found.extend(p for p in sorted(path.rglob("*.ipynb"))
                         if p.is_file() and not any(part.startswith(".") for part in p.relative_to(path).parts))
        elif path.exists() or path.is_symlink():
            found.append(path)
        else:
            raise FileNotFoundError(f"submission {path} does not exist")
    unique, seen = [], set()
    for path in found:
        key = os.path.realpath(path)
        if key not in seen:
            seen.add(key)
            unique.append(path)
    return unique


@contextlib.contextmanager
def hidden_tests(directory):
    """Import the hidden-test files (*.py) in `directory`; their scenarios are removed again on exit.

    A hidden-test file registers scenarios on existing exercises, for example
    `labkit.checking.get("03.1").scenario("...", hidden=True)(fn)`. They run in the grader,
    never in the child, and their results go to the hidden columns.
    """
    if directory is None:
        yield []
        return
    directory = Path(directory)
    if not directory.is_dir():
        raise ValueError(f"hidden must be a directory of Python files, got {directory}")
    saved = {e.id: list(e.scenarios) for e in checking.all_exercises()}
    files = sorted(directory.glob("*.py"))
    try:
        for index, path in enumerate(files):
            spec = importlib.util.spec_from_file_location(f"_labkit_hidden_{index}_{path.stem}", path)
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
        yield files
    finally:
        for exercise in checking.all_exercises():
            if exercise.id in saved:
                exercise.scenarios[:] = saved[exercise.id]


def fingerprint(limits: Limits, hidden_files, *, code: bool = True) -> str:
    """Changes when anything that decides a grade changes: labkit's code, the hidden tests, the limits."""
    digest = hashlib.sha256(json.dumps(limits.to_dict(), sort_keys=True).encode())
    package = Path(checking.__file__).parent
    for path in sorted(package.rglob("*.py")) if code else ():
        digest.update(str(path.relative_to(package)).encode() + b"\0" + path.read_bytes())
    for path in hidden_files:
        digest.update(b"hidden\0" + path.name.encode() + b"\0" + Path(path).read_bytes())
    return digest.hexdigest()[:20]


def _sha256(path: Path) -> str | None:
    """The content hash of a regular file (None for anything else: a FIFO must not block the grader)."""
    import stat

    from labkit.grading.notebook import MAX_NOTEBOOK_BYTES

    try:
        info = os.stat(path)
        if not stat.S_ISREG(info.st_mode) or info.st_size > MAX_NOTEBOOK_BYTES:
            return None
        with open(path, "rb") as f:
            return hashlib.sha256(f.read(MAX_NOTEBOOK_BYTES + 1)).hexdigest()
    except OSError:
        return None


@dataclass
class BatchResult:
    """What a batch produced: the records by submission, and how many were graded, reused or left."""

    records: dict[str, dict] = field(default_factory=dict)
    graded: int = 0
    reused: int = 0
    interrupted: bool = False
    csv_path: Path | None = None
    json_path: Path | None = None
    summary: list[dict] = field(default_factory=list)


def grade_batch(paths, output="gradebook.csv", *, jobs: int = 1, limits: Limits | None = None,
                expected_lesson: str | None = None, hidden=None, force: bool = False, progress: bool = True,
                on_result=None) -> BatchResult:
    """Grade every submission under `paths` into `output` (CSV) and its JSON twin; see the module docstring.

    `on_result(record)` runs in the calling thread after each submission (tests use it).
    """
    limits = limits or Limits()
    if jobs < 1:
        raise ValueError(f"jobs must be >= 1, got {jobs}")
    if expected_lesson is not None:
        known = sorted({e.id.split(".")[0] for e in checking.all_exercises()})
        if expected_lesson not in known:
            raise ValueError(f"lesson must be one of {', '.join(known)}; got {expected_lesson!r}")
    submissions = collect(paths)
    csv_path = Path(output)
    json_path = csv_path.with_suffix(".json")
    result = BatchResult(csv_path=csv_path, json_path=json_path)
    with hidden_tests(hidden) as hidden_files:
        stamp = fingerprint(limits, hidden_files)
        previous = {} if force else _previous_records(json_path, stamp)
        todo = []
        for path in submissions:
            old = previous.get(str(path))
            if old is not None and old.get("sha256") and old.get("sha256") == _sha256(path) \
                    and old.get("status") != GRADER_ERROR:
                result.records[str(path)] = old
                result.reused += 1
            else:
                todo.append(path)
        settings = {"limits": limits.to_dict(), "lesson": expected_lesson,
                    "hidden": [str(p) for p in hidden_files], "jobs": jobs}
        writer = _Writer(result, stamp, settings)
        _run(todo, result, writer, jobs=jobs, limits=limits, expected_lesson=expected_lesson,
             progress=progress, on_result=on_result)
    return result


def _run(todo, result: BatchResult, writer, *, jobs, limits, expected_lesson, progress, on_result) -> None:
    from tqdm.auto import tqdm

    base_dir = tempfile.mkdtemp(prefix="labkit-grade-")
    if os.geteuid() == 0:
        os.chmod(base_dir, 0o711)  # children reach their own directory inside, and list nothing
    uid_pool = UidPool() if os.geteuid() == 0 else None
    cache = DataAnswerCache()
    stop = threading.Event()
    bar = tqdm(total=len(todo) + result.reused, initial=result.reused, unit="notebook", disable=not progress,
               file=sys.stderr, dynamic_ncols=True)

    def work(path):
        if stop.is_set():
            return None
        return grade_notebook(path, limits=limits, expected_lesson=expected_lesson, uid_pool=uid_pool,
                              base_dir=base_dir, cache=cache).record

    pool = concurrent.futures.ThreadPoolExecutor(max_workers=jobs, thread_name_prefix="labkit-grade")
    try:
        futures = {pool.submit(work, path): path for path in todo}
        pending = set(futures)
        statuses = Counter(r.get("status") for r in result.records.values())
        while pending:
            done, pending = concurrent.futures.wait(pending, timeout=1.0,
                                                    return_when=concurrent.futures.FIRST_COMPLETED)
            for future in done:
                record = future.result()
                if record is None:
                    continue
                result.records[record["submission"]] = record
                result.graded += 1
                statuses[record["status"]] += 1
                bar.update(1)
                bar.set_postfix({k: v for k, v in statuses.items()}, refresh=False)
                if on_result is not None:
                    on_result(record)
            writer.maybe_flush()
    except KeyboardInterrupt:
        # Children are in their own sessions, so Ctrl-C reached only the grader: save what is
        # finished first, then stop the children and drop the submissions they were on.
        result.interrupted = True
        stop.set()
        writer.flush()
        kill_live_children()
        running = [f for f in futures if not f.done()] if "futures" in locals() else []
        while running:
            _, still = concurrent.futures.wait(running, timeout=0.5)
            kill_live_children()  # a worker may have started a fresh child (a restart) meanwhile
            running = list(still)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        bar.close()
        writer.flush()
        import shutil

        shutil.rmtree(base_dir, ignore_errors=True)


def _previous_records(json_path: Path, stamp: str) -> dict:
    try:
        data = json.loads(json_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict) or data.get("format") != FORMAT or data.get("fingerprint") != stamp:
        return {}
    records = data.get("submissions")
    return records if isinstance(records, dict) else {}


class _Writer:
    """Writes the gradebook's CSV, JSON and summary atomically, at most every FLUSH_EVERY_S seconds."""

    def __init__(self, result: BatchResult, stamp: str, settings: dict):
        self.result, self.stamp, self.settings = result, stamp, settings
        self.last = time.monotonic()

    def maybe_flush(self) -> None:
        if time.monotonic() - self.last >= FLUSH_EVERY_S:
            self.flush()

    def flush(self) -> None:
        self.last = time.monotonic()
        records = dict(sorted(self.result.records.items()))
        self.result.summary = summarize(records.values())
        payload = {"format": FORMAT, "fingerprint": self.stamp, "settings": self.settings,
                   "interrupted": self.result.interrupted, "submissions": records, "summary": self.result.summary}
        write_atomically(self.result.json_path, json.dumps(payload, indent=1, ensure_ascii=False) + "\n")
        write_atomically(self.result.csv_path, gradebook_csv(records.values()))
        write_atomically(self.result.csv_path.with_suffix(".summary.txt"), summary_text(self.result.summary))


def exercise_columns(records) -> list[str]:
    ids = {e for r in records for e in r.get("points", {})}
    lessons = {r.get("lesson") for r in records if r.get("lesson")}
    ids |= {e.id for e in checking.all_exercises() if e.id.split(".")[0] in lessons}
    return sorted(ids, key=lambda i: tuple(int(p) if p.isdigit() else p for p in i.split(".")))


def gradebook_csv(records) -> str:
    """One row per submission: path, lesson, status, points per exercise, totals, and a short reason."""
    records = list(records)
    columns = exercise_columns(records)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["submission", "lesson", "status", *columns, "public", "hidden", "total", "max_total", "reason"])
    for r in records:
        points = r.get("points", {})
        writer.writerow([r["submission"], r.get("lesson") or "", r["status"],
                         *(_num(points[c]) if c in points else "" for c in columns),
                         _num(r.get("public", 0)), _num(r.get("hidden", 0)), _num(r.get("total", 0)),
                         _num(r.get("max_total", 0)), " ".join(str(r.get("reason", "")).split())])
    return out.getvalue()


def _num(value) -> str:
    return f"{value:g}" if isinstance(value, (int, float)) else ""


def summarize(records) -> list[dict]:
    """Per exercise, over submissions whose code ran: pass rate, mean points, most common failure."""
    per: dict[str, dict] = {}
    for record in records:
        if record.get("status") not in GRADED_STATUSES:
            continue
        for exercise_id, report in record.get("exercises", {}).items():
            row = per.setdefault(exercise_id, {"exercise": exercise_id, "title": report.get("title", ""),
                                               "submissions": 0, "passed": 0, "not_attempted": 0,
                                               "points": 0.0, "max_points": report.get("max_score", 0),
                                               "failures": Counter()})
            row["submissions"] += 1
            row["points"] += report.get("score", 0)
            status = report.get("status")
            if status == checking.PASSED:
                row["passed"] += 1
            elif status == checking.NOT_ATTEMPTED:
                row["not_attempted"] += 1
            else:
                first = next((r for r in report.get("results", []) if r.get("status") != checking.PASSED), None)
                if first is not None:
                    line = (first.get("message") or "").strip().splitlines()
                    row["failures"][f"{first.get('scenario')}: {line[0] if line else first.get('status')}"] += 1
    summary = []
    for exercise_id in sorted(per, key=lambda i: tuple(int(p) if p.isdigit() else p for p in i.split("."))):
        row = per[exercise_id]
        failures: Counter = row.pop("failures")
        n = row["submissions"]
        common = failures.most_common(1)
        summary.append({**row, "pass_rate": round(row["passed"] / n, 3) if n else 0.0,
                        "mean_points": round(row.pop("points") / n, 2) if n else 0.0,
                        "most_common_failure": common[0][0] if common else "",
                        "most_common_failure_count": common[0][1] if common else 0})
    return summary


def summary_text(summary: list[dict]) -> str:
    """The per-exercise summary as a small plain-text table."""
    lines = [f"{'exercise':<9}{'passed':>14}{'mean':>12}  most common failure"]
    for row in summary:
        passed = f"{row['passed']}/{row['submissions']} ({100 * row['pass_rate']:.0f} %)"
        mean = f"{row['mean_points']:g}/{row['max_points']:g}"
        failure = row["most_common_failure"]
        failure = (f"{failure[:90]}{'...' if len(failure) > 90 else ''} (x{row['most_common_failure_count']})"
                   if failure else "-")
        lines.append(f"{row['exercise']:<9}{passed:>14}{mean:>12}  {failure}")
        lines.append(f"{'':<9}{row['title']}; not attempted: {row['not_attempted']}")
    return "\n".join(lines) + "\n"


def status_counts(records) -> Counter:
    """How many submissions have each status."""
    return Counter(r.get("status") for r in records)

