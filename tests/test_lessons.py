"""Tests every lesson inherits, run over every lesson labkit discovers: a new lesson adds only its own wrong answers.

For each lesson package: it speaks the common verbs and has both notebooks; its solution
passes every check with full marks and its untouched lesson is "not attempted"; its Play
panel renders headless and redraws when a knob moves; every knob's extreme settings run;
a knob out of range is refused by name; the same seed gives the same trace in two fresh
processes.
"""
from __future__ import annotations

import inspect
import os
import subprocess
import sys

import pytest

import labkit as lk
from labkit import checking, lessons
from labkit.knobs import Knob, Panel
from support import ROOT, notebook

LESSONS = lessons.discover()
IDS = [m.NOTEBOOK for m in LESSONS]


def _code(folder: str, lesson) -> list[str]:
    """The notebook's code cells, without IPython magics and cells that fail on purpose."""
    cells = [c for c in notebook(folder, lesson.NOTEBOOK).cells if c.cell_type == "code"
             and "raises-exception" not in c.metadata.get("tags", [])]
    return ["\n".join("" if line.lstrip().startswith(("%", "!")) else line for line in c.source.splitlines())
            for c in cells]


def _namespace(folder: str, lesson, monkeypatch) -> dict:
    """A notebook's names after running every code cell, as the grader's child runs them (no checks, no drawing)."""
    monkeypatch.setenv("LABKIT_GRADING_CHILD", "1")
    namespace = {"__name__": "__learner__"}
    for i, source in enumerate(_code(folder, lesson)):
        exec(compile(source, f"<{lesson.NOTEBOOK} cell {i}>", "exec"), namespace)
    monkeypatch.delenv("LABKIT_GRADING_CHILD")
    return namespace


def _exercises(lesson) -> list:
    return [e for e in checking.all_exercises() if e.id.split(".")[0] == lesson.NUMBER]


@pytest.mark.parametrize("lesson", LESSONS, ids=IDS)
def test_a_lesson_speaks_the_common_verbs(lesson):
    missing = [verb for verb in lessons.VERBS if not callable(getattr(lesson, verb, None)) and verb != "PANEL"]
    assert not missing, f"{lesson.__name__} lacks {missing}"
    assert isinstance(lesson.PANEL, Panel) and len(lesson.PANEL.knobs) > 0
    assert lesson.NOTEBOOK.startswith(lesson.NUMBER + "_")
    for folder in ("solutions", "lessons"):
        assert (ROOT / folder / f"{lesson.NOTEBOOK}.ipynb").exists(), f"{folder}/{lesson.NOTEBOOK}.ipynb is missing"
    topic = lesson.__name__.rsplit(".", 1)[-1]
    assert getattr(lk, topic) is lesson   # lk.<topic> reaches it


@pytest.mark.parametrize("lesson", LESSONS, ids=IDS)
def test_the_solution_passes_every_check_with_full_marks(lesson, monkeypatch):
    namespace = _namespace("solutions", lesson, monkeypatch)
    exercises = _exercises(lesson)
    assert exercises, f"lesson {lesson.NUMBER} registers no exercise"
    for exercise in exercises:
        report = exercise.run(namespace[exercise.answer_name])
        assert report.status == checking.PASSED and report.score == report.max_score > 0, report.text()


@pytest.mark.parametrize("lesson", LESSONS, ids=IDS)
def test_the_untouched_lesson_is_not_attempted(lesson, monkeypatch):
    namespace = _namespace("lessons", lesson, monkeypatch)
    for exercise in _exercises(lesson):
        report = exercise.run(namespace[exercise.answer_name])
        assert report.status == checking.NOT_ATTEMPTED and report.score == 0, report.text()
        assert "not attempted" in report.text()


@pytest.mark.parametrize("lesson", LESSONS, ids=IDS)
def test_the_play_panel_renders_headless_and_redraws_when_a_knob_moves(lesson):
    from labkit.widgets import Play

    panel = lesson.PANEL
    play = Play(panel.runs, panel.show, **{k.name: k.widget() for k in panel.knobs})
    table, png = play.render()
    assert png.startswith(b"\x89PNG") and repr(table)
    first = next(iter(panel.knobs))
    play.controls[first.name].value = first.neighbour(first.default)
    moved_table, moved_png = play.render()
    assert (repr(moved_table), moved_png) != (repr(table), png), f"moving {first.name} changed nothing"


@pytest.mark.parametrize("lesson", LESSONS, ids=IDS)
def test_every_control_shows_its_setting(lesson):
    """A dropdown whose option is None ("off", "unbounded") shows that option, not an empty box."""
    for knob in lesson.PANEL.knobs:
        for value in knob.ends:
            control = knob.widget(value)
            if isinstance(knob, Knob):
                assert control.value == value, knob.name
            else:
                label = next(label for label, v in knob.options if v == value)
                assert (control.label, control.value) == (label, value), knob.name


@pytest.mark.parametrize("lesson", LESSONS, ids=IDS)
def test_every_knob_runs_at_both_ends(lesson):
    for knob in lesson.PANEL.knobs:
        for value in knob.ends:
            runs = lesson.PANEL.runs(**{knob.name: value})
            table, chart = lesson.PANEL.show(runs)
            assert repr(table), f"{knob.name}={value!r}"


@pytest.mark.parametrize("lesson", LESSONS, ids=IDS)
def test_a_knob_out_of_range_is_refused_by_name(lesson):
    for knob in lesson.PANEL.knobs:
        bad = knob.hi + 10 * knob.step if isinstance(knob, Knob) else "no such option"
        with pytest.raises(ValueError, match=knob.name):
            lesson.PANEL.runs(**{knob.name: bad})
        if knob.name in inspect.signature(lesson.simulate).parameters:
            with pytest.raises(ValueError, match=knob.name):
                lesson.simulate(**{knob.name: bad})
    with pytest.raises(ValueError, match="not a knob"):
        lesson.PANEL.runs(no_such_knob=1)


_TRACE_OF_EVERY_PANEL = """
import hashlib, json, sys
from labkit import lessons
for lesson in lessons.discover():
    for label, run in lesson.PANEL.runs().items():
        rows = json.dumps(run.trace.to_rows(), sort_keys=True, default=repr)
        print(lesson.NOTEBOOK, label, hashlib.sha256(rows.encode()).hexdigest())
"""


def test_the_same_seed_gives_the_same_trace_in_two_fresh_processes():
    env = {**os.environ, "PYTHONHASHSEED": "random"}

    def traces():
        out = subprocess.run([sys.executable, "-c", _TRACE_OF_EVERY_PANEL], capture_output=True, text=True,
                             cwd=ROOT, env=env, timeout=300)
        assert out.returncode == 0, out.stderr
        return out.stdout.splitlines()

    first = traces()
    assert len(first) >= len(LESSONS)
    assert first == traces()


def test_labkit_has_no_import_cycle():
    """Module-level imports between labkit's modules form no cycle (imports inside functions are not counted)."""
    import ast
    import pathlib

    root = pathlib.Path(lk.__file__).parent
    modules = {}
    for path in root.rglob("*.py"):
        parts = path.relative_to(root.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        modules[name] = path
    graph = {name: set() for name in modules}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
        for node in ast.parse(path.read_text()).body:
            targets = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    base = ".".join(package.split(".")[:len(package.split(".")) - node.level + 1] + ([base] if base else []))
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
            for target in targets:
                while target and target not in modules:
                    target = target.rpartition(".")[0]
                if target and target != name and not name.startswith(target + "."):
                    graph[name].add(target)

    done, path = set(), []

    def visit(node):
        if node in path:
            cycle = path[path.index(node):] + [node]
            pytest.fail("import cycle: " + " -> ".join(cycle))
        if node in done:
            return
        path.append(node)
        for nxt in sorted(graph[node]):
            visit(nxt)
        path.pop()
        done.add(node)

    for name in sorted(graph):
        visit(name)


def test_the_top_level_stays_small():
    assert len(lk.__all__) <= 40, sorted(lk.__all__)
    assert set(lk.__all__) <= set(dir(lk))
    for name in lk.__all__:
        assert getattr(lk, name).__doc__, f"lk.{name} has no docstring"
