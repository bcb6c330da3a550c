"""`labkit assign`: solution notebooks -> learner notebooks, and lessons/ committed == generated."""
from __future__ import annotations

import shutil
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output

from labkit.assign import cells_digest, make_lesson, strip_solution
from labkit.cli import main

ROOT = Path(__file__).resolve().parents[1]


def lesson_of(*cells, **metadata):
    return make_lesson(new_notebook(cells=list(cells), metadata=metadata))


def code(*lines):
    return "\n".join(lines)


def test_begin_end_block_in_a_method_keeps_the_begin_indentation():
    source = code(
        "class Breaker:",
        "    def allow(self):",
        "        # BEGIN SOLUTION",
        "        if self.state == 'open':",
        "            return False",
        "        return True",
        "        # END SOLUTION",
        "",
        "    def reset(self):",
        "        self.state = 'closed'",
    )
    expected = code("class Breaker:", "    def allow(self):", "        ...", "",
                    "    def reset(self):", "        self.state = 'closed'")
    assert strip_solution(source) == expected
    compile(expected, "lesson", "exec")


def test_nested_indentation_inside_a_block_collapses_to_one_placeholder():
    source = code(
        "def run(n):",
        "    total = 0",
        "    # BEGIN SOLUTION",
        "    for i in range(n):",
        "        if i % 2:",
        "            for j in range(i):",
        "                total += j",
        "    # END SOLUTION",
        "    return total",
    )
    assert strip_solution(source) == code("def run(n):", "    total = 0", "    ...", "    return total")


def test_solution_line_that_assigns_keeps_its_name():
    source = code(
        "threshold = 5  # SOLUTION",
        "def f(self):",
        "    self.timeout_s = 2.0 * base  # SOLUTION",
        "    low, high = 1, 9 # SOLUTION",
        "    n: int = 3  # SOLUTION",
    )
    assert strip_solution(source) == code(
        "threshold = ...", "def f(self):", "    self.timeout_s = ...", "    low, high = ...", "    n: int = ...")


def test_solution_line_that_does_not_assign_becomes_a_placeholder():
    source = code(
        "def f(x):",
        "    return x * 2  # SOLUTION",
        "x == 3  # SOLUTION",
        "count += 1  # SOLUTION",
        "call(a=1)  # SOLUTION",
        "kept = 1  # not a solution",
    )
    assert strip_solution(source) == code(
        "def f(x):", "    ...", "...", "...", "...", "kept = 1  # not a solution")


@pytest.mark.parametrize("source, message", [
    (code("# BEGIN SOLUTION", "x = 1"), "never closed"),
    (code("x = 1", "# END SOLUTION"), "without"),
    (code("# BEGIN SOLUTION", "    # BEGIN SOLUTION", "# END SOLUTION"), "inside the block"),
])
def test_unbalanced_markers_are_refused_with_the_line(source, message):
    with pytest.raises(ValueError, match=message):
        strip_solution(source, "x.ipynb cell 2")


def test_solution_only_cells_are_dropped():
    lesson = lesson_of(
        new_markdown_cell("# Title"),
        new_code_cell("secret = 42", metadata={"tags": ["solution-only"]}),
        new_code_cell("answer = ...", metadata={"tags": ["nbval-ignore-output"]}),
    )
    assert [c.source for c in lesson.cells] == ["# Title", "answer = ..."]
    assert lesson.cells[1].metadata == {"tags": ["nbval-ignore-output"]}


def test_outputs_cleared_and_metadata_cleaned():
    cell = new_code_cell("print(1)", execution_count=7, metadata={"tags": ["raises-exception"], "scrolled": True,
                                                                    "collapsed": False})
    cell.outputs = [new_output("stream", text="1\n")]
    lesson = lesson_of(
        cell,
        new_markdown_cell("text", metadata={"editable": False}),
        kernelspec={"name": "python3", "display_name": "Python 3", "language": "python"},
        language_info={"name": "python", "version": "3.11.7", "mimetype": "text/x-python"},
        widgets={"application/vnd.jupyter.widget-state+json": {}},
        celltoolbar="Tags",
    )
    first, second = lesson.cells
    assert first.outputs == [] and first.execution_count is None
    assert first.metadata == {"tags": ["raises-exception"]} and second.metadata == {}
    # All of language_info, as the kernel reports it (JupyterLab would fill in what is missing and mark
    # the lesson modified); the fingerprint of its cells, so an edited lesson is never overwritten.
    assert lesson.metadata == {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
                               "language_info": {"name": "python", "version": "3.11.7", "mimetype": "text/x-python"},
                               "labkit": {"generated": cells_digest(lesson)}}
    nbformat.validate(lesson)


def test_cli_writes_a_directory_atomically_and_says_what_it_wrote(tmp_path, capsys):
    solutions, lessons = tmp_path / "solutions", tmp_path / "lessons"
    solutions.mkdir()
    nb = new_notebook(cells=[new_code_cell("rate = 0.5  # SOLUTION", id="rate")])
    nbformat.write(nb, solutions / "01_x.ipynb")
    assert main(["assign", str(solutions), str(lessons)]) == 0
    assert capsys.readouterr().out == f"wrote {lessons / '01_x.ipynb'}\n"
    assert nbformat.read(lessons / "01_x.ipynb", as_version=4).cells[0].source == "rate = ..."
    assert [p.name for p in lessons.iterdir()] == ["01_x.ipynb"]  # no temp files left behind
    assert main(["assign", str(solutions / "01_x.ipynb"), str(lessons)]) == 0
    assert capsys.readouterr().out == f"unchanged {lessons / '01_x.ipynb'}\n"


def test_cli_reports_bad_input_without_a_traceback(tmp_path, capsys):
    assert main(["assign", str(tmp_path / "missing"), str(tmp_path)]) == 1
    assert "labkit assign: error: source" in capsys.readouterr().err


def notebook_names(folder: Path) -> set[str]:
    return {path.name for path in folder.glob("*.ipynb")}


def comparable(nb):
    return [(cell.cell_type, cell.source, cell.metadata.get("tags", [])) for cell in nb.cells]


def test_committed_lessons_match_solutions(tmp_path, capsys):
    solutions, lessons = ROOT / "solutions", ROOT / "lessons"
    missing = notebook_names(solutions) - notebook_names(lessons)
    orphans = notebook_names(lessons) - notebook_names(solutions)
    assert not missing, f"no lesson for {sorted(missing)}: run `make assign`"
    assert not orphans, f"lessons without a solution: {sorted(orphans)}; add it to solutions/ or delete it"
    for name in sorted(notebook_names(solutions)):
        main(["assign", str(solutions / name), str(tmp_path)])
        generated = comparable(nbformat.read(tmp_path / name, as_version=4))
        committed = comparable(nbformat.read(lessons / name, as_version=4))
        assert generated == committed, (
            f"lessons/{name} is not what solutions/{name} generates: edit the solution, then run `make assign`")


def _type_an_answer(path):
    """Edit a lesson as a learner would: fill in the first `...` placeholder, save."""
    nb = nbformat.read(path, as_version=4)
    cell = next(c for c in nb.cells if c.cell_type == "code" and "..." in c.source)
    cell.source = cell.source.replace("...", "42  # my answer", 1)
    nbformat.write(nb, path)
    return cell.id


def _still_there(path, cell_id) -> bool:
    nb = nbformat.read(path, as_version=4)
    return any(c.id == cell_id and "# my answer" in c.source for c in nb.cells)


def test_no_command_that_writes_notebooks_overwrites_a_learners_edits(tmp_path, capsys):
    shutil.copytree(ROOT / "solutions", tmp_path / "solutions")
    assert main(["assign", str(tmp_path / "solutions"), str(tmp_path / "lessons")]) == 0
    lesson = tmp_path / "lessons" / "03_circuit_breaker.ipynb"
    cell_id = _type_an_answer(lesson)
    # What `make assign` and `make execute` run (execute writes solutions/, then assigns again).
    assert main(["assign", str(tmp_path / "solutions"), str(tmp_path / "lessons")]) == 0
    assert main(["assign", str(tmp_path / "solutions" / lesson.name), str(lesson)]) == 0
    assert _still_there(lesson, cell_id)
    err = capsys.readouterr().err
    assert f"kept {lesson}" in err and "--force" in err
    # An untouched lesson is still regenerated.
    other = tmp_path / "lessons" / "00_start_here.ipynb"
    other.unlink()
    assert main(["assign", str(tmp_path / "solutions"), str(tmp_path / "lessons")]) == 0 and other.exists()


def test_force_replaces_an_edited_lesson_but_keeps_a_dated_copy(tmp_path, capsys):
    shutil.copytree(ROOT / "solutions", tmp_path / "solutions")
    main(["assign", str(tmp_path / "solutions"), str(tmp_path / "lessons")])
    lesson = tmp_path / "lessons" / "01_read_replicas.ipynb"
    cell_id = _type_an_answer(lesson)
    assert main(["assign", "--force", str(tmp_path / "solutions"), str(tmp_path / "lessons")]) == 0
    assert not _still_there(lesson, cell_id)
    copies = list(lesson.parent.glob("01_read_replicas.edited-*.ipynb"))
    assert len(copies) == 1 and _still_there(copies[0], cell_id)
    assert "kept the edited" in capsys.readouterr().out
    # The copy is not mistaken for an orphan lesson on the next run.
    main(["assign", str(tmp_path / "solutions"), str(tmp_path / "lessons")])
    assert "has no" not in capsys.readouterr().err


def test_a_notebook_assign_did_not_write_is_never_replaced_silently(tmp_path, capsys):
    shutil.copytree(ROOT / "solutions", tmp_path / "solutions")
    (tmp_path / "lessons").mkdir()
    mine = tmp_path / "lessons" / "02_caching.ipynb"
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("print('my own notes')")])
    nbformat.write(nb, mine)
    main(["assign", str(tmp_path / "solutions"), str(tmp_path / "lessons")])
    assert "my own notes" in mine.read_text()
