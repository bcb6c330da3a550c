"""`labkit grade`: grade a batch of notebooks into a CSV gradebook and a JSON record (course tooling).

Each submission runs in its own sandboxed child (see `runner`); a thread pool keeps
`jobs` children busy. The CSV has one row per submission; the JSON next to it keeps every
scenario's verdict and message, and the content hash a re-run uses to skip notebooks that
are already graded.

A gradebook is only ever added to or updated: a run updates the rows of the notebooks it
names and keeps every other row (`prune=True` drops them); a folder with no notebooks, a
missing file, or a gradebook that cannot be read is an error that changes nothing. One run
at a time writes a gradebook (a lock file next to it; a second run is refused). Rows whose
grading ended in a timeout or a grader error are graded again by the next run. The files
are replaced atomically, every few seconds and at the end, so a Ctrl-C or a crash leaves a
consistent gradebook. `merge` combines gradebooks written on several machines.

A row is keyed on the notebook's path inside its submissions folder, with `/` separators
(`alice.ipynb`, `alice/03.ipynb`), whichever way the folder is named (relative, absolute,
through a link). The gradebook remembers the folders it graded, so a file or subfolder
named on its own gets the same key; a file outside them is keyed on its name.
"""
from __future__ import annotations

import concurrent.futures
import contextlib
import csv
import datetime
import fcntl
import hashlib
import importlib.util
import io
import json
import os
import socket
import stat
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from labkit import checking
from labkit.files import write_atomically
from labkit.grading.notebook import MAX_FILE_BYTES
from labkit.grading.runner import (ERROR, GRADER_ERROR, NOT_ATTEMPTED_STATUS, OK, TIMEOUT, DataAnswerCache,
                                   empty_record, grade_notebook)
from labkit.grading.sandbox import Limits, UidPool, compile_labkit, kill_live_children, start_fork_server

FORMAT = "labkit-gradebook/2"
OLD_FORMATS = ("labkit-gradebook/1",)  # keyed on the path as it was typed; read, and re-keyed as rows are graded
FLUSH_EVERY_S = 10.0
GRADED_STATUSES = (OK, NOT_ATTEMPTED_STATUS, TIMEOUT, ERROR)  # the learner's code ran: counts in class statistics
LINK_OUTSIDE = "link outside folder"
RETRIED_STATUSES = (TIMEOUT, GRADER_ERROR)  # may say more about the machine than the notebook: graded again


class GradebookBusy(OSError):
    """Another labkit run is writing this gradebook."""


@dataclass(frozen=True)
class Found:
    """A notebook to grade: its path (folders resolved, a link left a link) and the folder it was found in.

    `outside` is where a link leads when that is outside the folder: such a file is not graded.
    """

    path: Path
    root: Path
    outside: Path | None = None
    in_folder: bool = True   # found in a folder that was named, not named itself


def _absolute(path) -> Path:
    """`path` made absolute with its folders resolved, the last component kept (a link stays a link)."""
    path = Path(os.path.abspath(path))
    return Path(os.path.realpath(path.parent)) / path.name


def _inside(path, folder) -> bool:
    return os.path.commonpath([str(path), str(folder)]) == str(folder)


def collect(paths) -> list[Found]:
    """The notebooks to grade: files as given, folders searched for *.ipynb (hidden names skipped).

    A folder with no notebook in it, or a path that does not exist, is an error (before
    anything is written). Links are not followed out of the folder they are in: such a
    file is returned with `outside` set. Two names for one file are one submission.
    """
    found: list[Found] = []
    for given in paths:
        path = Path(given)
        if path.is_dir():
            root = Path(os.path.realpath(path))
            here = list(_walk(root))
            if not here:
                raise ValueError(f"{path} has no notebooks (*.ipynb) in it; nothing was graded")
            found.extend(here)
        elif path.exists() or path.is_symlink():
            absolute = _absolute(path)
            found.append(_found(absolute, absolute.parent, in_folder=False))
        else:
            raise FileNotFoundError(f"submission {path} does not exist; nothing was graded")
    unique: dict[tuple[str, str], Found] = {}
    for item in found:
        if item.outside is not None:  # not read, so only its own path says which link it is
            unique.setdefault(("link", str(item.path)), item)
            continue
        real = ("file", os.path.realpath(item.path))
        other = unique.get(real)
        if other is None or (other.path.is_symlink() and not item.path.is_symlink()):
            unique.pop(real, None)
            unique[real] = item  # a file and a link to it: the file's own name is the row
    return list(unique.values())


def _walk(root: Path):
    for folder, dirs, files in os.walk(root):  # does not descend into linked folders
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files) + [d for d in dirs if os.path.islink(os.path.join(folder, d))]:
            if name.startswith(".") or not name.endswith(".ipynb"):
                continue
            path = Path(folder) / name
            item = _found(path, root)
            if item.outside is not None or path.is_file():
                yield item


def _found(path: Path, root: Path, in_folder: bool = True) -> Found:
    if path.is_symlink():
        target = Path(os.path.realpath(path))
        if not _inside(target, root):
            return Found(path, root, outside=target, in_folder=in_folder)
    return Found(path, root, in_folder=in_folder)


@contextlib.contextmanager
def locked(csv_path: Path):
    """Hold the gradebook's lock file (`.NAME.lock` next to it) for the block; GradebookBusy if it is taken."""
    csv_path = Path(csv_path)
    csv_path.parent.mkdir(parents=True, exist_ok=True)
    lock_path = csv_path.with_name(f".{csv_path.name}.lock")
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 300, 0).decode("utf-8", "replace").strip() or "another process"
            raise GradebookBusy(f"{csv_path} is being written by another labkit run ({holder}); nothing was "
                                "graded. Wait for it to finish, or write to another gradebook with -o") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()}, since {_now()}\n".encode(), 0)
        yield lock_path
    finally:
        os.close(fd)  # releases the lock; the file stays (removing it would race with the next run)


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class Book:
    """A gradebook as read from its JSON: the rows by key, and the folders it was graded from."""

    records: dict[str, dict] = field(default_factory=dict)
    folders: list[str] = field(default_factory=list)
    settings: dict = field(default_factory=dict)


def json_path_of(csv_path) -> Path:
    """The JSON twin of a gradebook's CSV: `grades/03.csv` -> `grades/03.json`."""
    return Path(csv_path).with_suffix(".json")


def read_gradebook(csv_path, *, must_exist: bool = False) -> Book:
    """The gradebook whose CSV is `csv_path` (or its JSON path); an empty Book when neither file exists.

    Anything else that is not a readable gradebook is a ValueError: a run must not replace
    what it cannot read.
    """
    csv_path = Path(csv_path)
    json_path = json_path_of(csv_path)
    if csv_path.suffix == ".json":
        csv_path = csv_path.with_suffix(".csv")
    if not json_path.exists():
        if must_exist:
            raise FileNotFoundError(f"{json_path} does not exist: a gradebook is the JSON file next to its CSV")
        if csv_path.exists():
            raise ValueError(f"{csv_path} exists without its {json_path.name}, so its rows cannot be kept; "
                             "move it away or write to another gradebook with -o")
        return Book()
    try:
        data = json.loads(json_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ValueError(f"{json_path} cannot be read as a gradebook ({str(exc)[:100]}); move it away or write "
                         "to another gradebook with -o") from None
    if not isinstance(data, dict) or data.get("format") not in (FORMAT, *OLD_FORMATS) \
            or not isinstance(data.get("submissions"), dict):
        raise ValueError(f"{json_path} is not a labkit gradebook; move it away or write to another gradebook "
                         "with -o")
    old = data["format"] != FORMAT
    records = {}
    for key, record in data["submissions"].items():
        if not isinstance(record, dict) or not isinstance(record.get("status"), str):
            raise ValueError(f"{json_path}: the row {key!r} is not a gradebook row (it has no status); "
                             "nothing was written")
        record = dict(record, submission=key)
        record.setdefault("fingerprint", data.get("fingerprint"))
        if old:  # keyed on the path typed then, relative to a folder we no longer know: found by path
            record["legacy_key"] = True
            record.setdefault("path", str(_absolute(key)))
        records[key] = record
    folders = [f for f in data.get("folders", []) if isinstance(f, str)]
    settings = data.get("settings") if isinstance(data.get("settings"), dict) else {}
    return Book(records, folders, settings)


def assign_keys(found: list[Found], book: Book) -> tuple[dict[str, tuple[Found, str | None]], list[str]]:
    """Each submission's row key with the key of its row so far (or None), and the folders after this run.

    A file already in the gradebook (by its path on this machine) keeps its row; otherwise
    the key is its path inside the first remembered folder that holds it, else inside the
    folder it was found in (a file named on its own: its name). Two files, one key: ValueError.
    """
    folders = list(book.folders)
    for item in found:
        if item.in_folder and str(item.root) not in folders:
            folders.append(str(item.root))
    by_path = {r["path"]: key for key, r in book.records.items() if isinstance(r.get("path"), str)}
    keys: dict[str, tuple[Found, str | None]] = {}
    for item in found:
        key = previous = by_path.get(str(item.path))
        if key is None or book.records[key].get("legacy_key"):
            root = next((Path(f) for f in folders if _inside(item.path, f)), item.root)
            key = item.path.relative_to(root).as_posix() if _inside(item.path, root) else item.path.name
        if previous is None and key in book.records:
            previous = key  # another file with this name before (a resubmission): it takes over the row
        if key in keys:
            raise ValueError(f"{keys[key][0].path} and {item.path} would both be the row {key!r}; grade them "
                             "into separate gradebooks, or name the folder that holds both; nothing was graded")
        keys[key] = (item, previous)
    return keys, folders


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
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
        with open(fd, "rb") as f:
            info = os.fstat(f.fileno())
            if not stat.S_ISREG(info.st_mode) or info.st_size > MAX_FILE_BYTES:
                return None
            digest = hashlib.sha256()
            for chunk in iter(lambda: f.read(1 << 20), b""):
                digest.update(chunk)
            return digest.hexdigest()
    except OSError:
        return None


def needs_grading(record: dict) -> bool:
    """True for a row whose grading ended in a timeout or a grader error (a cell's timeout included).

    A busy machine makes correct code miss its deadlines; the next run tries again.
    """
    return record.get("status") in RETRIED_STATUSES or any(
        isinstance(c, dict) and c.get("status") == "timeout" for c in record.get("cells", []))


@dataclass
class BatchResult:
    """What a run produced: every row by key, and how many were graded, reused, kept or dropped."""

    records: dict[str, dict] = field(default_factory=dict)
    graded: int = 0          # graded by this run
    reused: int = 0          # named, unchanged since they were graded
    retried: int = 0         # named, unchanged, graded again after a timeout or grader error
    kept: int = 0            # rows of earlier runs this run did not name
    kept_stale: int = 0      # ... of which graded with other code, limits or hidden tests
    pruned: int = 0          # rows dropped because this run did not name them (prune=True)
    interrupted: bool = False
    csv_path: Path | None = None
    json_path: Path | None = None
    summary: list[dict] = field(default_factory=list)


def grade_batch(paths, output="gradebook.csv", *, jobs: int = 1, limits: Limits | None = None,
                expected_lesson: str | None = None, hidden=None, force: bool = False, progress: bool = True,
                on_result=None, prune: bool = False) -> BatchResult:
    """Grade every submission under `paths` into `output` (CSV) and its JSON twin; see the module docstring.

    `force` regrades the named submissions even when unchanged; `prune` drops the rows of
    submissions this run does not name. `on_result(record)` runs in the calling thread
    after each submission (tests use it).
    """
    limits = limits or Limits()
    if jobs < 1:
        raise ValueError(f"jobs must be >= 1, got {jobs}")
    if expected_lesson is not None:
        known = sorted({e.id.split(".")[0] for e in checking.all_exercises()})
        if expected_lesson not in known:
            raise ValueError(f"lesson must be one of {', '.join(known)}; got {expected_lesson!r}")
    csv_path = Path(output)
    if csv_path.suffix == ".json":
        raise ValueError(f"the output is the CSV gradebook; its JSON is written next to it, so -o must not end "
                         f"in .json (got {csv_path})")
    json_path = json_path_of(csv_path)
    found = collect(paths)
    result = BatchResult(csv_path=csv_path, json_path=json_path)
    with hidden_tests(hidden) as hidden_files, locked(csv_path):
        stamp = fingerprint(limits, hidden_files)
        book = read_gradebook(csv_path)
        keys, folders = assign_keys(found, book)
        previous = {key: book.records[old] for key, (_, old) in keys.items() if old is not None}
        replaced = {old for key, (_, old) in keys.items() if old is not None and old != key}
        for key, record in book.records.items():
            if key in keys or key in replaced:
                continue
            if prune:
                result.pruned += 1
            else:
                result.records[key] = record
                result.kept += 1
                result.kept_stale += record.get("fingerprint") != stamp
        todo = []
        for key, (item, _) in keys.items():
            old = previous.get(key)
            if old is not None:  # kept until graded again, so a Ctrl-C keeps it
                result.records[key] = {**{k: v for k, v in old.items() if k != "legacy_key"},
                                       "submission": key, "path": str(item.path)}
            if item.outside is not None:
                record = empty_record(item.path)
                record.update(status=LINK_OUTSIDE, reason=f"a link to {item.outside}, outside the folder "
                              f"{item.root}; links that leave the folder are not followed: copy the notebook in")
                result.records[key] = _stamped(record, key, item, stamp, expected_lesson)
                result.graded += 1
                continue
            if old is not None and not force and old.get("fingerprint") == stamp and old.get("sha256") \
                    and old.get("expected_lesson") == expected_lesson and old.get("sha256") == _sha256(item.path):
                if not needs_grading(old):
                    result.reused += 1
                    continue
                result.retried += 1
            todo.append((key, item))
        settings = {"limits": limits.to_dict(), "lesson": expected_lesson,
                    "hidden": [str(p) for p in hidden_files], "jobs": jobs}
        writer = _Writer(result, stamp, settings, folders)
        _run(todo, result, writer, stamp=stamp, jobs=jobs, limits=limits, expected_lesson=expected_lesson,
             progress=progress, on_result=on_result)
    return result


def _stamped(record: dict, key: str, item: Found, stamp: str, expected_lesson: str | None) -> dict:
    """The record as a gradebook row: its key, where the file was on this machine, how and when graded."""
    record.pop("legacy_key", None)
    return {**record, "submission": key, "path": str(item.path), "fingerprint": stamp,
            "expected_lesson": expected_lesson, "graded_at": _now()}


def _run(todo, result: BatchResult, writer, *, stamp, jobs, limits, expected_lesson, progress,
         on_result) -> None:
    from tqdm.auto import tqdm

    base_dir = tempfile.mkdtemp(prefix="labkit-grade-")
    if os.geteuid() == 0:
        os.chmod(base_dir, 0o711)  # children reach their own directory inside, and list nothing
    uid_pool = UidPool() if os.geteuid() == 0 else None
    cache = DataAnswerCache()
    compile_labkit()
    if len(todo) > jobs:   # the first `jobs` children start as new interpreters while it starts
        start_fork_server(limits)
    stop = threading.Event()
    done_before = result.reused + result.graded
    bar = tqdm(total=len(todo) + done_before, initial=done_before, unit="notebook", disable=not progress,
               file=sys.stderr, dynamic_ncols=True)

    def work(key, item):
        if stop.is_set():
            return None
        record = grade_notebook(item.path, limits=limits, expected_lesson=expected_lesson, uid_pool=uid_pool,
                                base_dir=base_dir, cache=cache).record
        return _stamped(record, key, item, stamp, expected_lesson)

    pool = concurrent.futures.ThreadPoolExecutor(max_workers=jobs, thread_name_prefix="labkit-grade")
    try:
        futures = {pool.submit(work, key, item): key for key, item in todo}
        pending = set(futures)
        statuses = Counter(r.get("status") for r in result.records.values())
        while pending:
            done, pending = concurrent.futures.wait(pending, timeout=1.0,
                                                    return_when=concurrent.futures.FIRST_COMPLETED)
            for future in done:
                record = future.result()
                if record is None:
                    continue
                old = result.records.get(record["submission"])
                if old is not None:
                    statuses[old.get("status")] -= 1
                result.records[record["submission"]] = record
                result.graded += 1
                statuses[record["status"]] += 1
                bar.update(1)
                bar.set_postfix({k: v for k, v in statuses.items() if v}, refresh=False)
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


class _Writer:
    """Writes the gradebook's JSON, CSV and summary atomically, at most every FLUSH_EVERY_S seconds."""

    def __init__(self, result, stamp: str | None, settings: dict, folders: list[str]):
        self.result, self.stamp, self.settings, self.folders = result, stamp, settings, folders
        self.last = time.monotonic()

    def maybe_flush(self) -> None:
        if time.monotonic() - self.last >= FLUSH_EVERY_S:
            self.flush()

    def flush(self) -> None:
        self.last = time.monotonic()
        self.result.summary = write_gradebook(self.result.csv_path, self.result.records, stamp=self.stamp,
                                              settings=self.settings, folders=self.folders,
                                              interrupted=self.result.interrupted)


def write_gradebook(csv_path, records: dict, *, stamp, settings: dict, folders: list[str],
                    interrupted: bool = False) -> list[dict]:
    """Replace the gradebook's JSON (first: it is the record), CSV and summary, each atomically; the summary."""
    csv_path = Path(csv_path)
    records = dict(sorted(records.items()))
    summary = summarize(records.values())
    payload = {"format": FORMAT, "fingerprint": stamp, "settings": settings, "folders": folders,
               "interrupted": interrupted, "submissions": records, "summary": summary}
    write_atomically(json_path_of(csv_path), json.dumps(payload, indent=1, ensure_ascii=False) + "\n")
    write_atomically(csv_path, gradebook_csv(records.values()))
    write_atomically(csv_path.with_suffix(".summary.txt"), summary_text(summary))
    return summary


@dataclass
class MergeResult:
    """What `merge` did: the merged rows, and how many rows each source added or updated."""

    records: dict[str, dict] = field(default_factory=dict)
    added: int = 0
    updated: int = 0
    unchanged: int = 0
    conflicts: list[str] = field(default_factory=list)   # one key, two different notebooks: the newer one won
    fingerprints: int = 0                                 # how many ways the merged rows were graded
    csv_path: Path | None = None
    json_path: Path | None = None
    summary: list[dict] = field(default_factory=list)


def _rank(record: dict) -> tuple:
    # A finished grading beats one that ended in a timeout or grader error; then the later one wins.
    return (not needs_grading(record), str(record.get("graded_at") or ""))


def merge(sources, output) -> MergeResult:
    """Merge the gradebooks `sources` (their CSV or JSON paths) into `output`, keeping the rows it has.

    Rows are matched by key. When two gradebooks have a row for one key, a finished
    grading beats a timeout or grader error, and then the later grading wins; a key whose
    two rows graded different notebooks is listed in `conflicts`. Every source must be a
    readable gradebook, else nothing is written.
    """
    csv_path = Path(output)
    if csv_path.suffix == ".json":
        raise ValueError(f"the output is the CSV gradebook; its JSON is written next to it (got {csv_path})")
    books = [(Path(source), read_gradebook(source, must_exist=True)) for source in sources]
    if not books:
        raise ValueError("name at least one gradebook to merge")
    result = MergeResult(csv_path=csv_path, json_path=json_path_of(csv_path))
    with locked(csv_path):
        base = read_gradebook(csv_path)
        records = {key: dict(r) for key, r in base.records.items()}
        folders = list(base.folders)
        for source, book in books:
            if os.path.realpath(json_path_of(source)) == os.path.realpath(result.json_path):
                continue
            for folder in book.folders:
                if folder not in folders:
                    folders.append(folder)
            for key, record in book.records.items():
                mine = records.get(key)
                if mine is None:
                    records[key] = record
                    result.added += 1
                elif mine == record:
                    result.unchanged += 1
                else:
                    if mine.get("sha256") != record.get("sha256") and key not in result.conflicts:
                        result.conflicts.append(key)
                    if _rank(record) >= _rank(mine):
                        records[key] = record
                        result.updated += 1
                    else:
                        result.unchanged += 1
        stamps = Counter(r.get("fingerprint") for r in records.values())
        result.fingerprints = len(stamps)
        result.records = records
        settings = {"merged": [str(source) for source, _ in books]}
        result.summary = write_gradebook(csv_path, records, stamp=stamps.most_common(1)[0][0] if stamps else None,
                                         settings=settings, folders=folders)
    return result


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

