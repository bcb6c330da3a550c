"""Hostile and broken submissions for the grader, made from the committed notebooks.

Lesson 03 gets every case; every other lesson (found by globbing solutions/*.ipynb) gets the
lesson-independent ones (`every_lesson_cases`), named NN_case.

`build(directory)` writes every case as a .ipynb (or deliberately not one) and returns the
cases with what the grader must make of each: a status, and the points per exercise
(None: not checked by number; a callable: computed from the grading of other cases).
Run `python tests/grading/corpus.py DIR` to write them out and look at them.
"""
from __future__ import annotations

import copy
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[2]
LESSON = "03_circuit_breaker"
FULL = {"03.1": 5, "03.2": 3, "03.3": 3, "03.4": 1}
NONE = dict.fromkeys(FULL, 0)


@dataclass
class Case:
    """One submission and the verdict the grader must reach for it."""

    name: str
    status: str
    points: dict | None = None          # points per exercise, or None when not compared by number
    why: str = ""
    reason_contains: str = ""
    notes: dict = field(default_factory=dict)

    @property
    def filename(self) -> str:
        return f"{self.name}.ipynb"


def _read(folder: str, lesson: str = LESSON):
    return nbformat.read(ROOT / folder / f"{lesson}.ipynb", as_version=4)


def _index_defining(nb, text: str) -> int:
    found = [i for i, c in enumerate(nb.cells) if c.cell_type == "code" and text in c.source]
    assert len(found) == 1, f"expected one cell containing {text!r}, found {len(found)}"
    return found[0]


def _after_setup(nb, source: str):
    """A copy of `nb` with a new code cell right after the setup cell (`import labkit as lk`)."""
    nb = copy.deepcopy(nb)
    at = _index_defining(nb, "import labkit as lk") + 1
    nb.cells.insert(at, nbformat.v4.new_code_cell(source))
    return nb


def _at_end(nb, source: str):
    nb = copy.deepcopy(nb)
    nb.cells.append(nbformat.v4.new_code_cell(source))
    return nb


def _edit(nb, marker: str, old: str, new: str):
    nb = copy.deepcopy(nb)
    cell = nb.cells[_index_defining(nb, marker)]
    assert old in cell.source, f"{old!r} not found in the cell containing {marker!r}"
    cell.source = cell.source.replace(old, new)
    return nb


def _drop(nb, *markers: str):
    nb = copy.deepcopy(nb)
    for marker in markers:
        del nb.cells[_index_defining(nb, marker)]
    return nb


# A wrong breaker that never closes from half-open, and the same one reporting its state
# as a str whose __eq__ always says True: locally that hides the bug from the checks.
_NEVER_CLOSES = '''
class AlwaysEqual(str):
    def __eq__(self, other):
        return True

    def __ne__(self, other):
        return False

    __hash__ = str.__hash__


class CircuitBreaker:
    def __init__(self, clock, failure_threshold=5, recovery_timeout_s=10.0, success_threshold=1):
        self.clock, self.failure_threshold = clock, failure_threshold
        self.recovery_timeout_s, self.success_threshold = recovery_timeout_s, success_threshold
        self._state, self.failures, self.opened_at = "closed", 0, None

    @property
    def state(self):
        return STATE_WRAPPER(self._state)

    def allow_request(self):
        if self._state == "open":
            if self.clock.now - self.opened_at < self.recovery_timeout_s:
                return False
            self._state = "half_open"
        return True

    def on_success(self):
        if self._state == "closed":
            self.failures = 0

    def on_failure(self):
        if self._state == "half_open":
            self._state, self.opened_at = "open", self.clock.now
        elif self._state == "closed":
            self.failures += 1
            if self.failures >= self.failure_threshold:
                self._state, self.opened_at = "open", self.clock.now
'''

_ANYTHING = '''
class Anything:
    def __eq__(self, other):
        return True

    def __ne__(self, other):
        return False

    __hash__ = object.__hash__


ANSWER = Anything()
'''

OUTSIDE_TARGETS = ("{repo}/GRADER-PWNED.txt", "/root/GRADER-PWNED.txt", "/tmp/GRADER-PWNED-{token}.txt",
                   "/etc/GRADER-PWNED.txt", "{repo}/labkit/GRADER-PWNED.py")


def outside_paths(token: str) -> list[Path]:
    return [Path(t.format(repo=ROOT, token=token)) for t in OUTSIDE_TARGETS]


def cases(token: str = "x", port: int = 9) -> dict[str, tuple[Case, object]]:
    """Every case and its content (a notebook node, or bytes for the ones that are not notebooks)."""
    solution, lesson = _read("solutions"), _read("lessons")
    out: dict[str, tuple[Case, object]] = {}

    def add(case: Case, content) -> None:
        assert case.name not in out
        out[case.name] = (case, content)

    add(Case("solution", "ok", FULL, "the committed solution"), solution)
    add(Case("lesson", "not attempted", NONE, "the generated lesson, untouched",
             reason_contains="still the starter's ..."), lesson)
    add(Case("other_lesson", "ok", {"00.1": 1}, "lesson 00's solution is graded as lesson 00"),
        _read("solutions", "00_start_here"))
    add(Case("other_lesson_untouched", "not attempted", {"00.1": 0}, "lesson 00, untouched"),
        _read("lessons", "00_start_here"))

    # Not notebooks at all.
    add(Case("not_json", "not a notebook", None, "plain text", reason_contains="not JSON"),
        b"this is not JSON {\n")
    add(Case("not_utf8", "not a notebook", None, "Latin-1 bytes", reason_contains="not UTF-8"),
        nbformat.writes(solution).encode("utf-8").replace(b"circuit", b"circu\xefit", 1))
    add(Case("json_not_notebook", "not a notebook", None, "JSON without cells", reason_contains="no list of cells"),
        json.dumps({"hello": "world", "cells": "nope"}).encode())
    add(Case("empty_file", "not a notebook", None, "zero bytes"), b"")
    add(Case("no_lesson", "unknown lesson", None, "a notebook of no lesson"),
        nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("print('hello')")]))

    # Broken structure.
    renamed = _edit(solution, "class CircuitBreaker", "class CircuitBreaker:", "class MyBreaker:")
    add(Case("renamed_class", "ok", {"03.1": 0, "03.2": 0, "03.3": 3, "03.4": 1},
             "the exercise-1 class was renamed (exercise 2 subclasses it, so it is missing too)",
             notes={"message": "CircuitBreaker is not defined"}), renamed)
    add(Case("deleted_cells", "ok", {**FULL, "03.3": 0}, "the TUNING cell and its check were deleted",
             notes={"message": "TUNING is not defined"}),
        _drop(solution, "TUNING = dict(", 'lk.check("03.3"'))
    add(Case("syntax_error", "ok", {"03.1": 0, "03.2": 0, "03.3": 3, "03.4": 1},
             "a syntax error in the exercise-1 cell", notes={"message": "SyntaxError"}),
        _edit(solution, "class CircuitBreaker", "def allow_request(self):", "def allow_request(self)"))
    add(Case("import_error", "ok", FULL, "the setup cell raises before `import labkit`: later lk. cells fail"),
        _edit(solution, "import labkit as lk", "import labkit as lk",
              "raise ImportError('simulated broken setup')\nimport labkit as lk"))

    raises = _edit(solution, "class CircuitBreaker", '"""An admitted call failed or timed out."""',
                   '"""An admitted call failed or timed out."""\n        ratio = self.failures / 0')
    add(Case("raises_in_method", "ok", None, "on_failure() raises ZeroDivisionError: same message as a local check",
             notes={"local_source": raises.cells[_index_defining(raises, "class CircuitBreaker")].source}), raises)

    # Code that never ends, or ends the process.
    add(Case("loop_in_method", "timeout", {"03.1": 0, "03.2": 0, "03.3": 3, "03.4": 1},
             "allow_request() loops forever", reason_contains="did not finish within",
             notes={"message": "03.1"}),
        _edit(solution, "class CircuitBreaker", '"""True: make the call. False: refuse it and use a fallback."""',
              '"""True: make the call. False: refuse it and use a fallback."""\n        while True:\n'
              '            pass'))
    add(Case("loop_in_half_open", "timeout", None, "on_success() loops only when half-open: the scenarios "
             "that never get there still pass"),
        _edit(solution, "class CircuitBreaker", '''        if self.state == "half_open":
            self.successes += 1''',
              '''        if self.state == "half_open":
            while True:
                pass'''))
    add(Case("loop_in_cell", "ok", FULL, "a top-level infinite loop, interrupted by the cell timeout"),
        _after_setup(solution, "while True:\n    pass"))
    add(Case("loop_swallows_interrupt", "ok", FULL, "an infinite loop that swallows the interrupt: killed, re-run"),
        _after_setup(solution, "while True:\n    try:\n        while True:\n            pass\n"
                               "    except BaseException:\n        pass"))
    add(Case("memory_bomb", "ok", FULL, "allocates 8 GB"), _after_setup(solution, "hog = bytearray(8 * 1024 ** 3)"))
    add(Case("fork_bomb", "ok", FULL, "forks until the process limit"),
        _after_setup(solution, "import os\nwhile True:\n    os.fork()"))
    add(Case("thread_bomb", "ok", FULL, "starts threads until the limit"),
        _after_setup(solution, "import threading, time\nfor _ in range(100_000):\n"
                               "    threading.Thread(target=time.sleep, args=(3600,), daemon=True).start()"))
    add(Case("sys_exit", "ok", FULL, "sys.exit() in a cell"), _after_setup(solution, "import sys\nsys.exit(3)"))
    add(Case("os_exit", "ok", FULL, "os._exit() in a cell: the process ends, the notebook is re-run without it"),
        _after_setup(solution, "import os\nos._exit(0)"))
    add(Case("keyboard_interrupt", "ok", FULL, "raises KeyboardInterrupt"),
        _after_setup(solution, "raise KeyboardInterrupt"))
    add(Case("huge_output", "ok", FULL, "prints a gigabyte"),
        _after_setup(solution, "line = 'x' * 999\nfor _ in range(1_000_000):\n    print(line)"))
    add(Case("signals", "ok", FULL, "signals the grader and every process it may"),
        _after_setup(solution, "import os, signal\nfor pid in (os.getppid(), 1, -1):\n    try:\n"
                               "        os.kill(pid, signal.SIGKILL)\n    except OSError:\n        pass"))
    writes = "\n".join([
        "import os",
        f"for path in {[str(p) for p in outside_paths(token)]!r}:",
        "    try:",
        "        with open(path, 'w') as f:",
        "            f.write('pwned')",
        "    except OSError as e:",
        "        print('refused:', path, e)",
        "with open(os.path.join(os.environ['HOME'], 'mine.txt'), 'w') as f:",
        "    f.write('my own directory is fine')",
    ])
    add(Case("writes_outside", "ok", FULL, "writes outside its directory"), _after_setup(solution, writes))

    # Cheats: none may change a grade.
    faked = copy.deepcopy(lesson)
    for cell in faked.cells:
        if cell.cell_type == "code" and "lk.check(" in cell.source:
            cell.execution_count = 1
            cell.outputs = [nbformat.v4.new_output("stream", name="stdout",
                                                   text="All checks passed. 12/12 points\n")]
            cell.metadata["labkit"] = {"score": 12, "passed": True}
    faked.metadata["labkit"] = {"grade": 12, "status": "ok"}
    add(Case("fake_outputs", "not attempted", NONE, "the lesson with stored outputs and metadata saying 12/12"),
        faked)
    redefine = "\n".join([
        "import labkit, labkit.checking",
        "def fake(*args, **kwargs):",
        "    print('Exercise 03.1: 5/5 points\\n  All checks passed.')",
        "lk.check = labkit.check = labkit.checking.check = fake",
        "labkit.checking.is_stub = lambda answer: False",
        "labkit.checking.Exercise.run = lambda self, *a, **k: None",
        "print('All checks passed. Score: 12/12')",
    ])
    add(Case("redefine_check", "not attempted", NONE, "redefines lk.check and labkit.checking, prints a fake pass"),
        _after_setup(lesson, redefine))
    lie = "import sys\nsys.modules['labkit.grading.child'].is_stub = lambda answer: False"
    add(Case("lie_not_stub", "ok", NONE, "makes the child say its stubs are not stubs: the checks then fail"),
        _after_setup(lesson, lie))
    sabotage = "\n".join([
        "import labkit, labkit.traffic, labkit.lessons.breaker.model, labkit.checking",
        "import labkit.lessons.breaker.exercises as ex",
        "labkit.traffic.simulate_calls = lk.simulate_calls = lambda **kwargs: None",
        "labkit.lessons.breaker.model.simulate = lk.breaker.simulate = lambda **kwargs: None",
        "ex._CHOICES['a'] = (True, 'Right!')",
        "for exercise in labkit.checking.all_exercises():",
        "    exercise.scenarios.clear()",
    ])
    wrong = _edit(_edit(solution, "failure_threshold = 6", "failure_threshold = 6", "failure_threshold = 1"),
                  'ANSWER = "b"', 'ANSWER = "b"', 'ANSWER = "a"')
    add(Case("monkeypatch_labkit", "ok", None, "wrong TUNING and ANSWER, plus labkit monkeypatched in the notebook",
             notes={"same_as": "monkeypatch_labkit_honest"}), _at_end(wrong, sabotage))
    add(Case("monkeypatch_labkit_honest", "ok", None, "the same wrong answers, without the monkeypatching"), wrong)
    base = _drop(solution, "class TrialLimitedBreaker", 'lk.check("03.2"')
    breaker_at = _index_defining(base, "class CircuitBreaker")
    cheat, honest = copy.deepcopy(base), copy.deepcopy(base)
    cheat.cells[breaker_at].source = _NEVER_CLOSES.replace("STATE_WRAPPER", "AlwaysEqual") + "\n" + _ANYTHING
    honest.cells[breaker_at].source = _NEVER_CLOSES.replace("STATE_WRAPPER", "str")
    add(Case("always_equal", "ok", None, "a wrong breaker whose state (a str subclass) equals anything",
             notes={"same_as": "always_equal_honest", "local_source": cheat.cells[breaker_at].source}), cheat)
    add(Case("always_equal_honest", "ok", None, "the same wrong breaker, reporting its state honestly",
             notes={"local_source": honest.cells[breaker_at].source}), honest)
    steal = "\n".join([
        "import json, os, labkit",
        "path = os.path.join(os.path.dirname(os.path.dirname(labkit.__file__)), 'solutions',",
        "                    '03_circuit_breaker.ipynb')",
        "try:",
        "    for cell in json.load(open(path))['cells']:",
        "        source = ''.join(cell['source'])",
        "        if cell['cell_type'] == 'code' and 'lk.' not in source:",
        "            exec(source, globals())",
        "    print('copied the solutions')",
        "except OSError as e:",
        "    print('could not read the solutions:', e)",
    ])
    add(Case("reads_solution", "not attempted", NONE, "reads the repository's solution at grading time",
             notes={"needs": "landlock"}), _at_end(lesson, steal))
    connect = "\n".join([
        "import socket",
        "try:",
        f"    socket.create_connection(('127.0.0.1', {port}), timeout=3).close()",
        "    ANSWER = 'a'   # reached the network: this wrong answer would show it",
        "except OSError as e:",
        "    print('no network:', e)",
    ])
    add(Case("network", "ok", FULL, "connects to a server the test runs on 127.0.0.1",
             notes={"needs": "network isolation"}), _at_end(solution, connect))
    escape = _edit(solution, "class CircuitBreaker", "        self.clock = clock\n", "\n".join([
        "        self.clock = clock",
        "        escaped = []",
        "        for attempt in ('clock._queue', 'clock.rng', 'clock.trace', 'clock.run',",
        "                        'clock.at.__self__', 'clock.at.__func__', 'clock.after.__globals__'):",
        "            try:",
        "                eval(attempt, {'clock': clock})",
        "                escaped.append(attempt)",
        "            except Exception:",
        "                pass",
        "        try:",
        "            clock.now = 1e9",
        "            escaped.append('clock.now = ...')",
        "        except Exception:",
        "            pass",
        "        if escaped:",
        "            raise RuntimeError(f'reached the grader through {escaped}')",
        "",
    ]))
    add(Case("escape_via_clock", "ok", FULL, "walks from the grader's clock to its internals"), escape)
    garbage = "import os, sys\nendpoint = sys.modules['labkit.grading.child'].ENDPOINT\n" \
              "os.write(endpoint.wfd, b'\\x00\\x00\\x00\\x05{oops')"
    add(Case("protocol_garbage", "error", NONE, "writes a malformed message to the grader's pipe",
             reason_contains="protocol"), _at_end(solution, garbage))
    oversized = "import os, sys\nendpoint = sys.modules['labkit.grading.child'].ENDPOINT\n" \
                "os.write(endpoint.wfd, (2 ** 31).to_bytes(4, 'big') + b'x' * 1000)"
    add(Case("oversized_message", "error", NONE, "announces a 2 GB message", reason_contains="protocol"),
        _at_end(solution, oversized))
    silent = "import sys, time\nchild = sys.modules['labkit.grading.child']\n" \
             "child.ChildEndpoint.answer = lambda self, name: time.sleep(3600)"
    add(Case("never_answers", "timeout", NONE, "the child stops answering the grader",
             reason_contains="did not finish"), _at_end(solution, silent))
    selfref = _edit(solution, "TUNING = dict(", "success_threshold=success_threshold)",
                    "success_threshold=success_threshold)\nTUNING['me'] = [TUNING]")
    add(Case("self_referential", "ok", {**FULL, "03.3": 0}, "an answer that contains itself",
             notes={"message": "could not read your TUNING"}), selfref)
    numbers = _edit(_edit(solution, "TUNING = dict(", "success_threshold=success_threshold)",
                          "success_threshold=success_threshold)\nimport numpy as np\n"
                          "TUNING = {k: np.int64(v) if type(v) is int else np.float32(v) for k, v in TUNING.items()}"),
                    'ANSWER = "b"', 'ANSWER = "b"', 'ANSWER = " b."')
    add(Case("numpy_numbers", "ok", FULL, "TUNING's numbers as numpy scalars (np.int64, np.float32), ANSWER as ' b.'"),
        numbers)
    return out


def lessons() -> list[str]:
    """Every lesson with a solution notebook (solutions/NN_name.ipynb), by notebook name."""
    return sorted(p.stem for p in (ROOT / "solutions").glob("[0-9][0-9]_*.ipynb"))


def full_points(number: str) -> dict:
    """Points per exercise of a lesson ("01"), public scenarios only, from the registered checks."""
    from labkit import checking

    return {e.id: sum(s.points for s in e.scenarios if not s.hidden)
            for e in checking.all_exercises() if e.id.split(".")[0] == number}


def _with_loop(nb, number: str):
    """`nb` with `while True: pass` at the start of the first exercise's first method (or function) body."""
    from labkit import checking

    first = next(e for e in checking.all_exercises() if e.id.split(".")[0] == number)
    name = first.answer_name
    at = next(i for i, c in enumerate(nb.cells) if c.cell_type == "code" and any(
        line.startswith((f"class {name}", f"def {name}(")) for line in c.source.splitlines()))
    lines = nb.cells[at].source.splitlines()
    in_method = False
    for k, line in enumerate(lines):
        stripped = line.strip()
        if stripped.startswith("def "):
            in_method = not stripped.startswith("def __init__")
        elif in_method and (stripped == "# BEGIN SOLUTION" or stripped.endswith("# SOLUTION")):
            indent = line[:len(line) - len(line.lstrip())]
            lines[k:k] = [f"{indent}while True:", f"{indent}    pass"]
            nb = copy.deepcopy(nb)
            nb.cells[at].source = "\n".join(lines)
            return nb
    raise LookupError(f"no method body to put a loop in for {name}")


def every_lesson_cases() -> dict[str, tuple[Case, object]]:
    """The lesson-independent hostile cases for every lesson but 03 (which `cases` covers in full):
    fake verdicts, pasted outputs, monkeypatched labkit, a loop, a memory bomb, exits, a flood, not JSON."""
    out: dict[str, tuple[Case, object]] = {}
    for lesson_name in lessons():
        if lesson_name == LESSON:
            continue
        number = lesson_name[:2]
        full = full_points(number)
        none = dict.fromkeys(full, 0)
        solution, lesson = _read("solutions", lesson_name), _read("lessons", lesson_name)

        def add(case: Case, content) -> None:
            case.name = f"{number}_{case.name}"
            assert case.name not in out
            out[case.name] = (case, content)

        add(Case("solution", "ok", full, "the committed solution"), solution)
        add(Case("lesson", "not attempted", none, "the generated lesson, untouched"), lesson)
        faked = copy.deepcopy(lesson)
        for cell in faked.cells:
            if cell.cell_type == "code" and "lk.check(" in cell.source:
                cell.execution_count = 1
                cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text="All checks passed.\n")]
        add(Case("fake_outputs", "not attempted", none, "the lesson with outputs saying everything passed"), faked)
        redefine = ("import labkit, labkit.checking\nlk.check = labkit.check = labkit.checking.check = print\n"
                    "labkit.checking.is_stub = lambda answer: False\n"
                    "labkit.checking.Exercise.run = lambda self, *a, **k: None\nprint('All checks passed.')")
        add(Case("redefine_check", "not attempted", none, "redefines lk.check, prints a fake pass"),
            _after_setup(lesson, redefine))
        sabotage = ("import labkit, labkit.checking\nfor exercise in labkit.checking.all_exercises():\n"
                    "    exercise.scenarios.clear()\nlabkit.checking.judge_choice = lambda *a, **k: 'Right'")
        add(Case("monkeypatch_labkit", "ok", full, "the solution, with labkit's checks sabotaged in the notebook"),
            _at_end(solution, sabotage))
        add(Case("loop_in_method", "timeout", None, "the first exercise's method loops forever",
                 reason_contains="did not finish within"), _with_loop(solution, number))
        add(Case("memory_bomb", "ok", full, "allocates 8 GB"), _after_setup(solution, "hog = bytearray(8 * 1024 ** 3)"))
        add(Case("os_exit", "ok", full, "os._exit() in a cell: the notebook is re-run without it"),
            _after_setup(solution, "import os\nos._exit(0)"))
        add(Case("huge_output", "ok", full, "prints a gigabyte"),
            _after_setup(solution, "line = 'x' * 999\nfor _ in range(1_000_000):\n    print(line)"))
        add(Case("not_json", "not a notebook", None, "plain text named like the lesson", reason_contains="not JSON"),
            b"this is not JSON {\n")
    return out


def build(directory: Path, token: str = "x", port: int = 9) -> dict[str, Case]:
    """Write every case into `directory`; returns the cases by name."""
    directory.mkdir(parents=True, exist_ok=True)
    built = {}
    for name, (case, content) in {**cases(token, port), **every_lesson_cases()}.items():
        data = content if isinstance(content, bytes) else nbformat.writes(content).encode("utf-8")
        (directory / case.filename).write_bytes(data)
        built[name] = case
    return built


if __name__ == "__main__":
    target = Path(sys.argv[1] if len(sys.argv) > 1 else "corpus")
    for case in build(target).values():
        print(f"{case.filename:32} {case.status:15} {case.why}")
