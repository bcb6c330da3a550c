"""Generate learner notebooks from solution notebooks, so solutions/ is the one source (course tooling).

`make assign` runs `labkit assign solutions lessons`. The markers are Otter's and nbgrader's:
code between `# BEGIN SOLUTION` and `# END SOLUTION` becomes one `...`; a line ending in
`# SOLUTION` becomes `...`, or `name = ...` when it is an assignment; cells tagged
`solution-only` are dropped.
"""
from __future__ import annotations

import hashlib
import re
import sys
import time
from pathlib import Path

import nbformat

from labkit.files import write_atomically

BEGIN, END, SOLUTION = "# BEGIN SOLUTION", "# END SOLUTION", "# SOLUTION"
SOLUTION_ONLY = "solution-only"
# `x = 1`, `self.rate = f(y)`, `a, b = 1, 2`, `n: int = 3`; not `x == 1`, `x += 1` or `f(a=1)`.
_ASSIGNMENT = re.compile(r"^(\s*)([A-Za-z_][\w.]*(?:\s*,\s*[A-Za-z_][\w.]*)*(?:\s*:[^=]+?)?)\s*=(?!=)")


def strip_solution(source: str, where: str = "cell") -> str:
    """Cell source with its solution code replaced by `...` placeholders (see the module docstring)."""
    out, block_at = [], None
    for number, line in enumerate(source.split("\n"), start=1):
        marker = line.strip()
        if marker == BEGIN:
            if block_at is not None:
                raise ValueError(f"{where} line {number}: {BEGIN!r} inside the block opened on line {block_at}")
            block_at = number
            out.append(line[: len(line) - len(line.lstrip())] + "...")
        elif marker == END:
            if block_at is None:
                raise ValueError(f"{where} line {number}: {END!r} without a {BEGIN!r} before it")
            block_at = None
        elif block_at is not None:
            continue
        elif line.rstrip().endswith(SOLUTION):
            assignment = _ASSIGNMENT.match(line)
            if assignment:
                out.append(f"{assignment[1]}{assignment[2].strip()} = ...")
            else:
                out.append(line[: len(line) - len(line.lstrip())] + "...")
        else:
            out.append(line)
    if block_at is not None:
        raise ValueError(f"{where} line {block_at}: {BEGIN!r} is never closed by {END!r}")
    return "\n".join(out)


def make_lesson(solution: nbformat.NotebookNode, name: str = "notebook") -> nbformat.NotebookNode:
    """The learner's notebook for one solution notebook: placeholders in, outputs and extra metadata out."""
    metadata = {}
    if "kernelspec" in solution.metadata:
        metadata["kernelspec"] = solution.metadata["kernelspec"]
    if "name" in solution.metadata.get("language_info", {}):
        # All of it, as the kernel reports it: with less, JupyterLab fills it in on opening and
        # marks an untouched lesson as modified.
        metadata["language_info"] = dict(solution.metadata["language_info"])
    lesson = nbformat.v4.new_notebook(metadata=metadata)
    for index, cell in enumerate(solution.cells):
        tags = list(cell.metadata.get("tags", []))
        if SOLUTION_ONLY in tags:
            continue
        # Keep the solution's cell ids so a regenerated lesson diffs cleanly; never invent random ones.
        fields = {"id": cell.get("id") or f"cell-{index}", "metadata": {"tags": tags} if tags else {}}
        if cell.cell_type == "code":
            new = nbformat.v4.new_code_cell(strip_solution(cell.source, f"{name} cell {index}"), **fields)
        elif cell.cell_type == "markdown":
            new = nbformat.v4.new_markdown_cell(cell.source, **fields)
            if cell.get("attachments"):
                new.attachments = cell.attachments
        else:
            new = nbformat.v4.new_raw_cell(cell.source, **fields)
        lesson.cells.append(new)
    lesson.metadata["labkit"] = {"generated": cells_digest(lesson)}
    return lesson


def cells_digest(nb) -> str:
    """A fingerprint of a notebook's cells (their kinds and sources): what a learner's edits change."""
    h = hashlib.sha256()
    for cell in nb.cells:
        h.update(f"{cell.cell_type}\0{cell.source}\0".encode())
    return h.hexdigest()[:16]


def edited_since_generated(path: Path, new_lesson) -> bool:
    """True if the notebook at `path` has cells that are neither what `assign` last wrote there nor `new_lesson`'s.

    A notebook with no fingerprint whose cells differ from the new lesson's counts as edited:
    it is someone's work.
    """
    try:
        nb = nbformat.read(path, as_version=4)
    except Exception:  # noqa: BLE001 - unreadable is nobody's lesson to overwrite silently either
        return True
    current = cells_digest(nb)
    return current not in (nb.metadata.get("labkit", {}).get("generated"), cells_digest(new_lesson))


def assign(source: str | Path, dest: str | Path, *, force: bool = False) -> list[Path]:
    """Write the lesson for a solution notebook, or for every *.ipynb directly inside a directory.

    A lesson whose cells were edited since it was generated (a learner's answers) is left
    alone and said so; with `force`, it is first kept as a dated copy beside it, then replaced.
    """
    source, dest = Path(source), Path(dest)
    if not source.exists():
        raise FileNotFoundError(f"source {source} does not exist")
    if source.is_dir():
        if dest.is_file() or dest.suffix == ".ipynb":
            raise ValueError(f"dest must be a directory when source is one, got {dest}")
        pairs = [(path, dest / path.name) for path in sorted(source.glob("*.ipynb"))]
        found = {p.name for p in dest.glob("*.ipynb") if ".edited-" not in p.name} if dest.is_dir() else set()
        orphans = sorted(found - {p.name for p, _ in pairs})
        for name in orphans:
            print(f"warning: {dest / name} has no {source / name}; delete it or add the solution", file=sys.stderr)
    else:
        pairs = [(source, dest / source.name if dest.is_dir() or dest.suffix != ".ipynb" else dest)]
    written = []
    for solution_path, lesson_path in pairs:
        if lesson_path.resolve() == solution_path.resolve():
            raise ValueError(f"dest would overwrite the solution itself: {lesson_path}")
        lesson = make_lesson(nbformat.read(solution_path, as_version=4), str(solution_path))
        text = nbformat.writes(lesson).rstrip("\n") + "\n"
        if lesson_path.exists() and lesson_path.read_text(encoding="utf-8") == text:
            print(f"unchanged {lesson_path}")
            continue
        if lesson_path.exists() and edited_since_generated(lesson_path, lesson):
            if not force:
                print(f"kept {lesson_path}: its cells were edited since it was generated (someone's work?); "
                      "`labkit assign --force` replaces it and keeps the edited one as a dated copy", file=sys.stderr)
                continue
            copy = lesson_path.with_name(f"{lesson_path.stem}.edited-{time.strftime('%Y%m%d-%H%M%S')}.ipynb")
            write_atomically(copy, lesson_path.read_text(encoding="utf-8"))
            print(f"kept the edited {lesson_path} as {copy}")
        write_atomically(lesson_path, text)
        print(f"wrote {lesson_path}")
        written.append(lesson_path)
    return written


def execute(paths, timeout_s: float = 120) -> None:
    """Run notebooks top to bottom in a fresh kernel and store their outputs in place (for solutions/).

    Timing metadata and live widgets are not stored: without a kernel a widget is a dead
    control, and its random model id would change every run. An output that carries a
    static copy beside its widget (a Play panel's table and figure as HTML) keeps the copy,
    so re-executing an unchanged solution changes nothing.
    """
    from nbclient import NotebookClient

    for path in map(Path, paths):
        nb = nbformat.read(path, as_version=4)
        NotebookClient(nb, timeout=timeout_s, kernel_name="python3", record_timing=False,
                       store_widget_state=False, resources={"metadata": {"path": str(path.parent)}}).execute()
        nb.metadata.pop("widgets", None)
        for cell in nb.cells:
            if cell.cell_type == "code":
                cell.outputs = [o for o in cell.outputs if _strip_widget_view(o)]
        write_atomically(path, nbformat.writes(nb).rstrip("\n") + "\n")
        print(f"executed {path}")


def _strip_widget_view(output) -> bool:
    """Remove an output's widget view in place; whether anything worth keeping is left (not for a bare widget)."""
    data = output.get("data", {})
    if data.pop("application/vnd.jupyter.widget-view+json", None) is None:
        return True
    return bool(set(data) - {"text/plain"})
