"""Test helpers: read the code cells of the committed notebooks and run them outside Jupyter."""
from __future__ import annotations

import pathlib

import nbformat

ROOT = pathlib.Path(__file__).resolve().parent.parent


def notebook(folder: str, lesson: str):
    """The committed notebook `folder/lesson.ipynb` (folder is 'lessons' or 'solutions')."""
    return nbformat.read(ROOT / folder / f"{lesson}.ipynb", as_version=4)


def cell_defining(folder: str, lesson: str, name: str) -> str:
    """The source of the one code cell that defines `name` (a def, class or assignment)."""
    found = [c.source for c in notebook(folder, lesson).cells if c.cell_type == "code" and _defines(c.source, name)]
    assert len(found) == 1, f"expected one cell defining {name} in {folder}/{lesson}, found {len(found)}"
    return found[0]


def _defines(source: str, name: str) -> bool:
    return any(line.startswith((f"def {name}(", f"class {name}(", f"class {name}:", f"{name} =", f"{name}="))
               for line in source.splitlines())


def run_cells(*sources: str, names: dict | None = None) -> dict:
    """Execute sources in one fresh namespace (with `lk` imported), as a notebook would."""
    namespace = {"__name__": "__learner__"}
    exec("import labkit as lk", namespace)
    namespace.update(names or {})
    for i, source in enumerate(sources):
        exec(compile(source, f"<learner-cell-{i}>", "exec"), namespace)
    return namespace


def mutate(source: str, old: str, new: str) -> str:
    """Replace `old` by `new` in a solution, failing loudly if the solution no longer contains `old`."""
    assert old in source, f"mutation target not found in the solution:\n{old}"
    return source.replace(old, new)


def assert_every_check(namespace: dict, exercises, status: str) -> None:
    """Check each (exercise id, answer name) in `namespace`: all 'passed' with full marks, or all 'not attempted'."""
    import labkit as lk

    for exercise_id, name in exercises:
        report = lk.check(exercise_id, namespace[name])
        assert report.status == status, report.text()
        if status == "passed":
            assert report.score == report.max_score > 0
        else:
            assert report.score == 0 and "not attempted" in report.text()
