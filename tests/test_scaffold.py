"""`labkit new NN topic`: the lesson it writes has the course's shape, and nothing is ever overwritten."""
from __future__ import annotations

import json

import pytest

from labkit.cli import main
from labkit.scaffold import new_lesson

SECTIONS = ["Setup", "Why it matters", "The model", "Play", "Break it", "Exercises", "Key points"]


def test_a_new_lesson_has_its_package_and_a_solution_with_the_seven_sections(tmp_path):
    written = new_lesson("42", "queue_demo", "a demo", root=tmp_path)
    names = sorted(p.relative_to(tmp_path).as_posix() for p in written)
    assert names == ["labkit/lessons/queue_demo/__init__.py", "labkit/lessons/queue_demo/exercises.py",
                     "labkit/lessons/queue_demo/model.py", "labkit/lessons/queue_demo/panel.py",
                     "solutions/42_queue_demo.ipynb"]
    for path in written[:-1]:
        compile(path.read_text(), str(path), "exec")
    init = (tmp_path / "labkit/lessons/queue_demo/__init__.py").read_text()
    assert 'NUMBER, NOTEBOOK, TITLE = "42", "42_queue_demo", "a demo"' in init
    nb = json.loads((tmp_path / "solutions/42_queue_demo.ipynb").read_text())
    headings = [line[3:].strip() for c in nb["cells"] if c["cell_type"] == "markdown"
                for line in "".join(c["source"]).splitlines() if line.startswith("## ")]
    assert headings == SECTIONS
    code = ["".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code"]
    assert "lk.queue_demo.play()" in code and 'lk.check("42.1", ANSWER)' in code
    assert len({c["id"] for c in nb["cells"]}) == len(nb["cells"])


def test_it_refuses_an_existing_number_or_topic_and_bad_names(tmp_path):
    new_lesson("42", "demo", root=tmp_path)
    with pytest.raises(ValueError, match="exists already"):
        new_lesson("42", "other", root=tmp_path)
    with pytest.raises(ValueError, match="exists already"):
        new_lesson("43", "demo", root=tmp_path)
    with pytest.raises(ValueError, match="number must be two digits"):
        new_lesson("4", "x", root=tmp_path)
    with pytest.raises(ValueError, match="topic must be a lower-case Python name"):
        new_lesson("44", "Bulk-head", root=tmp_path)


def test_the_command_names_what_is_wrong(capsys):
    assert main(["new", "4", "x"]) == 1
    assert "number must be two digits" in capsys.readouterr().err
