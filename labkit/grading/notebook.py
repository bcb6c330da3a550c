"""Reading a submitted notebook defensively, and telling which lesson it is (course tooling)."""
from __future__ import annotations

import hashlib
import json
import os
import re
import stat
from dataclasses import dataclass, field
from pathlib import Path

# A notebook is graded on its code. Its outputs (images, widget state) can make the file far
# bigger than its code: a file over COPY_BYTES is parsed as it is read (ijson), keeping only
# its code cells, up to MAX_FILE_BYTES. More code than MAX_CODE_BYTES is not a lesson.
MAX_FILE_BYTES = 512 * 1024 * 1024
MAX_CODE_BYTES = 4 * 1024 * 1024
COPY_BYTES = 20 * 1024 * 1024      # a bigger file reaches the child as its code cells only


def cell_name(index: int) -> str:
    """How a message names the cell at `index` in the notebook's list: counted from 1 over every cell,
    markdown too, as a reader counts them down the page in JupyterLab."""
    return f"cell {index + 1}"


class NotANotebook(Exception):
    """The file is not a readable Jupyter notebook; the message says why, in a few words."""

    status = "not a notebook"
    sha256: str | None = None


class TooBig(NotANotebook):
    """The file, or the code in it, is too big to be a lesson notebook's code; the message says which."""

    status = "too big"


@dataclass
class Submission:
    """A submitted notebook: what the child gets (`data`), the file's hash and its code cells (index, source).

    `data` is the file's bytes, or for a file over COPY_BYTES a notebook of its code cells
    alone, so a notebook heavy with outputs costs no memory or disk while it is graded.
    """

    path: Path
    data: bytes
    sha256: str
    cells: list[tuple[int, str]] = field(default_factory=list)


def _mb(size: int) -> str:
    return f"{size / 2**20:.0f} MB" if size >= 2**20 else f"{size / 2**10:.0f} KB"


def read_submission(path: Path) -> Submission:
    """The submission at `path`; NotANotebook (TooBig) for anything that is not a v4 (or v3) notebook's code."""
    try:
        # Opened without blocking and checked to be a regular file: a FIFO, /dev/zero or a
        # symlink to one must not hang the grader or fill its memory.
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
        with open(fd, "rb") as f:
            info = os.fstat(f.fileno())
            if not stat.S_ISREG(info.st_mode):
                raise NotANotebook("it is not a regular file")
            if info.st_size > MAX_FILE_BYTES:
                raise TooBig(f"the file is {_mb(info.st_size)}, over {_mb(MAX_FILE_BYTES)}: too big to be a "
                             "notebook's code even with its outputs; clear its outputs and submit it again")
            if info.st_size > COPY_BYTES:
                return _read_streamed(f, Path(path))
            return _read(f, Path(path))
    except OSError as exc:
        raise NotANotebook(f"cannot read the file ({exc.strerror or exc})") from None


def _read(f, path: Path) -> Submission:
    data = f.read(MAX_FILE_BYTES + 1)
    if len(data) > MAX_FILE_BYTES:
        raise TooBig(f"the file is over {_mb(MAX_FILE_BYTES)}: too big to be a notebook's code even with "
                     "its outputs; clear its outputs and submit it again")
    sha256 = hashlib.sha256(data).hexdigest()
    try:
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
        cells = _code_cells(raw, text)
    except NotANotebook as exc:
        exc.sha256 = sha256
        raise
    return Submission(path, data, sha256, cells)


def _read_streamed(f, path: Path) -> Submission:
    """A big file, parsed as it is read: its outputs go by one string at a time, only the code is kept.

    json.loads would hold the file's text (2 bytes a character once one is outside Latin-1)
    and every output at once: about 3.5 times the file.
    """
    import ijson

    digest, size = hashlib.sha256(), 0

    class Hashed:
        def read(self, n):
            nonlocal size
            chunk = f.read(n)
            size += len(chunk)
            if size > MAX_FILE_BYTES:
                raise TooBig(f"the file is over {_mb(MAX_FILE_BYTES)}: too big to be a notebook's code even "
                             "with its outputs; clear its outputs and submit it again")
            digest.update(chunk)
            return chunk

    stream = Hashed()
    cells: list[tuple[int, str]] = []
    index, kind, parts, has_cells, worksheets, code = -1, None, [], False, False, 0
    try:
        try:
            for prefix, event, value in ijson.parse(stream, buf_size=1 << 20):
                if prefix == "cells.item":
                    if event in ("start_map", "start_array", "string", "number", "boolean", "null"):
                        index, kind, parts = index + 1, None, []  # every item counts, as in the notebook
                    elif event == "end_map" and kind == "code":
                        cells.append((index, "".join(parts)))
                        code += len(cells[-1][1].encode("utf-8", "surrogatepass"))
                        if code > MAX_CODE_BYTES:
                            raise TooBig(f"its code cells hold over {_mb(MAX_CODE_BYTES)} of code: too big to be "
                                         "a lesson notebook's code")
                elif prefix == "cells.item.cell_type" and event == "string":
                    kind = value
                elif prefix == "cells.item.source":
                    parts = [value] if event == "string" else [] if event == "start_array" else parts
                elif prefix == "cells.item.source.item" and event == "string":
                    parts.append(value)
                elif prefix == "cells" and event == "start_array":
                    has_cells, cells, index = True, [], -1  # a repeated key: the last one counts, as in json
                elif prefix == "worksheets" and event == "start_array":
                    worksheets = True
        except (ijson.JSONError, UnicodeError, ValueError) as exc:
            raise NotANotebook(f"the file is not JSON ({str(exc)[:80]})") from None
        while stream.read(1 << 20):
            pass  # the rest of the file, for its hash
        if not has_cells:
            raise NotANotebook("an nbformat 3 notebook this big is not read; open it in JupyterLab and save it "
                               "again" if worksheets else "the JSON has no list of cells")
    except NotANotebook as exc:
        exc.sha256 = digest.hexdigest() if size <= MAX_FILE_BYTES else None
        raise
    return Submission(path, code_only(cells), digest.hexdigest(), cells)


def _code_cells(raw, text: str | None) -> list[tuple[int, str]]:
    if not isinstance(raw, dict) or not isinstance(raw.get("cells", raw.get("worksheets")), list):
        raise NotANotebook("the JSON has no list of cells")
    if isinstance(raw.get("cells"), list):
        # nbformat 4: the cells are all the grader needs. nbformat's reader would also
        # validate it against the schema, which costs 2 s of imports here.
        notebook = raw
    else:
        try:  # an older format ("worksheets"): let nbformat convert it
            import nbformat

            notebook = nbformat.reads(text, as_version=4)
        except Exception as exc:  # noqa: BLE001 - nbformat raises many kinds for broken input
            raise NotANotebook(f"nbformat cannot read it ({type(exc).__name__}: {str(exc)[:80]})") from None
    cells = []
    for index, cell in enumerate(notebook.get("cells", [])):
        if isinstance(cell, dict) and cell.get("cell_type") == "code":
            source = cell.get("source", "")
            if isinstance(source, list):
                source = "".join(s for s in source if isinstance(s, str))
            if isinstance(source, str):
                cells.append((index, source))
    code = sum(len(source.encode("utf-8", "surrogatepass")) for _, source in cells)
    if code > MAX_CODE_BYTES:
        raise TooBig(f"its code cells hold {_mb(code)} of code, over {_mb(MAX_CODE_BYTES)}: too big to be a "
                     "lesson notebook's code")
    return cells


def code_only(cells: list[tuple[int, str]]) -> bytes:
    """A v4 notebook of just these code cells, without outputs or metadata (what a big file's child gets)."""
    notebook = {"cells": [{"cell_type": "code", "execution_count": None, "metadata": {}, "outputs": [],
                           "source": source} for _, source in cells],
                "metadata": {}, "nbformat": 4, "nbformat_minor": 5}
    return json.dumps(notebook, ensure_ascii=False).encode("utf-8", "surrogatepass")


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
