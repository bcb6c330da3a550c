"""Reading a submitted notebook defensively, and telling which lesson it is (course tooling)."""
from __future__ import annotations

import hashlib
import json
import os
import re
import stat
from dataclasses import dataclass, field
from pathlib import Path

MAX_NOTEBOOK_BYTES = 20 * 1024 * 1024


class NotANotebook(Exception):
    """The file is not a readable Jupyter notebook; the message says why, in a few words."""

    sha256: str | None = None


@dataclass
class Submission:
    """A submitted notebook's bytes, hash and code cells (index in the notebook, source)."""

    path: Path
    data: bytes
    sha256: str
    cells: list[tuple[int, str]] = field(default_factory=list)


def read_submission(path: Path) -> Submission:
    """The submission at `path`; NotANotebook for anything that is not a v4 (or v3) notebook."""
    try:
        # Opened without blocking and checked to be a regular file: a FIFO, /dev/zero or a
        # symlink to one must not hang the grader or fill its memory.
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
        with open(fd, "rb") as f:
            if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
                raise NotANotebook("it is not a regular file")
            data = f.read(MAX_NOTEBOOK_BYTES + 1)
        if len(data) > MAX_NOTEBOOK_BYTES:
            raise NotANotebook(f"the file is over {MAX_NOTEBOOK_BYTES // 2**20} MB; a notebook that big is not graded")
    except OSError as exc:
        raise NotANotebook(f"cannot read the file ({exc.strerror or exc})") from None
    submission = Submission(path, data, hashlib.sha256(data).hexdigest())
    try:
        _parse(submission)
    except NotANotebook as exc:
        exc.sha256 = submission.sha256
        raise
    return submission


def _parse(submission: Submission) -> None:
    data = submission.data
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise NotANotebook(f"the file is not UTF-8 text (byte {exc.start})") from None
    try:
        raw = json.loads(text)
    except RecursionError:
        raise NotANotebook("the JSON is nested too deeply") from None
    except ValueError as exc:
        raise NotANotebook(f"the file is not JSON ({str(exc)[:80]})") from None
    if not isinstance(raw, dict) or not isinstance(raw.get("cells", raw.get("worksheets")), list):
        raise NotANotebook("the JSON has no list of cells")
    if isinstance(raw.get("cells"), list):
        # nbformat 4, as every JupyterLab saves: the cells are all the grader needs. nbformat's
        # reader would also validate it against the schema, which costs 2 s of imports here.
        notebook = raw
    else:
        try:  # an older format ("worksheets"): let nbformat convert it
            import nbformat

            notebook = nbformat.reads(text, as_version=4)
        except Exception as exc:  # noqa: BLE001 - nbformat raises many kinds for broken input
            raise NotANotebook(f"nbformat cannot read it ({type(exc).__name__}: {str(exc)[:80]})") from None
    for index, cell in enumerate(notebook.get("cells", [])):
        if isinstance(cell, dict) and cell.get("cell_type") == "code":
            source = cell.get("source", "")
            if isinstance(source, list):
                source = "".join(s for s in source if isinstance(s, str))
            if isinstance(source, str):
                submission.cells.append((index, source))


_CHECK_CALL = re.compile(r"""\b(?:check|hints)\(\s*["'](\d+)\.(\d+)["']""")


def _defines(source: str, name: str) -> bool:
    return re.search(rf"^(?:class\s+{re.escape(name)}\b|def\s+{re.escape(name)}\s*\(|{re.escape(name)}\s*[:=](?!=))",
                     source, re.MULTILINE) is not None


def detect_lesson(submission: Submission, exercises) -> str | None:
    """The lesson ("03") whose exercises this notebook checks or defines; its filename breaks ties.

    `lk.check("03.1", ...)` and `lk.hints("03.1")` calls count twice, a definition of an
    exercise's answer name once; a filename starting with the lesson number breaks ties and
    names the lesson of a notebook with no other clue.
    """
    lessons = {e.id.split(".")[0] for e in exercises}
    score = dict.fromkeys(lessons, 0)
    sources = [source for _, source in submission.cells]
    seen = set()
    for source in sources:
        for lesson, number in _CHECK_CALL.findall(source):
            if lesson in score and (lesson, number) not in seen:
                seen.add((lesson, number))
                score[lesson] += 2
    for exercise in exercises:
        if any(_defines(source, exercise.answer_name) for source in sources):
            score[exercise.id.split(".")[0]] += 1
    prefix = re.match(r"(\d+)", submission.path.name)
    named = prefix[1] if prefix and prefix[1] in score else None
    best = max(score.values(), default=0)
    if best == 0:
        return named
    leaders = sorted(lesson for lesson, s in score.items() if s == best)
    return named if named in leaders else leaders[0]


def defining_cell(submission: Submission, name: str) -> int | None:
    """The index of the last code cell that defines `name` (a class, def or assignment)."""
    found = [index for index, source in submission.cells if _defines(source, name)]
    return found[-1] if found else None
