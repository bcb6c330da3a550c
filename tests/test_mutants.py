"""Mutation score of every implementation exercise: its check kills >= 95 % of the solution's non-equivalent mutants.

The mutants are made and judged by `python -m tests.mutants` (see its docstring), run once
here in a fresh process (it forks two workers, which is only safe from a process with no
other threads) and read back as JSON. Also: no mutant reaches "the checker itself failed",
and every mutant listed as equivalent still exists and still survives, so the list in
tests/mutants_equivalent.toml stays honest. The whole run takes about a minute on 2 cores.
"""
from __future__ import annotations

import ast
import json
import subprocess
import sys

import pytest

import mutants
from support import ROOT

EXERCISES = [exercise.id for exercise, _, _ in mutants.implementation_exercises()]


@pytest.fixture(scope="module")
def scores(tmp_path_factory):
    out = tmp_path_factory.mktemp("mutants") / "scores.json"
    run = subprocess.run([sys.executable, "-m", "tests.mutants", "--json", str(out)], cwd=ROOT,
                         capture_output=True, text=True, timeout=1200)
    if not out.exists():
        pytest.fail(f"python -m tests.mutants wrote no scores:\n{run.stdout[-3000:]}\n{run.stderr[-3000:]}")
    print(run.stdout[-4000:])
    return {row["exercise"]: row for row in json.loads(out.read_text())}


def test_every_implementation_exercise_of_lessons_00_to_03_is_mutated():
    assert {"00.1", "01.1", "01.2", "01.3", "02.1", "02.2", "02.3", "02.4", "03.1", "03.2"} <= set(EXERCISES)


@pytest.mark.parametrize("exercise_id", EXERCISES)
def test_the_check_kills_its_mutants(scores, exercise_id):
    row = scores[exercise_id]
    assert row["mutants"] >= 4, f"{exercise_id}: only {row['mutants']} mutants: is its solution cell marked?"
    assert row["score"] >= mutants.TARGET, (
        f"{exercise_id} killed {row['killed']} of {row['mutants'] - row['equivalent']} non-equivalent mutants "
        f"({100 * row['score']:.1f} %, target {100 * mutants.TARGET:.0f} %). Surviving:\n  "
        + "\n  ".join(row["survivors"])
        + "\nAdd a scenario that tells each apart from the solution, or list it in tests/mutants_equivalent.toml "
          "with the reason it changes nothing the prompt asks for.")


@pytest.mark.parametrize("exercise_id", EXERCISES)
def test_no_mutant_makes_the_checker_blame_itself(scores, exercise_id):
    errors = scores[exercise_id]["errors"]
    assert not errors, "\n".join(f"{key}\n    {message}" for key, message in errors)


@pytest.mark.parametrize("exercise_id", EXERCISES)
def test_every_listed_equivalent_mutant_still_survives(scores, exercise_id):
    stale = scores[exercise_id]["stale_equivalents"]
    assert not stale, ("listed as equivalent in tests/mutants_equivalent.toml, but now killed or no longer made "
                       "(remove the entry):\n  " + "\n  ".join(stale))


def test_every_equivalent_entry_names_a_known_exercise_and_gives_a_reason():
    for exercise_id, entries in mutants.load_equivalent().items():
        assert exercise_id in EXERCISES, exercise_id
        for key, reason in entries.items():
            assert len(reason) > 20, f"{exercise_id} {key}: say why it is equivalent"


# --- the mutator itself -----------------------------------------------------------------------

CELL = '''class Breaker:
    def __init__(self, clock):
        self.clock = clock                 # given: not the learner's
        # BEGIN SOLUTION
        self.failures = 0
        self.opened_at = None
        # END SOLUTION

    def allow_request(self):
        # BEGIN SOLUTION
        if self.clock.now - self.opened_at < 10:
            return False
        return True
        # END SOLUTION

def double(x):
    return x * 2  # SOLUTION
'''


def test_the_mutator_touches_only_the_learners_lines_and_makes_each_kind_of_mutant():
    made = mutants.mutants_of("test", CELL)
    operators = {m.operator for m in made}
    for expected in ("comparison < -> <=", "comparison < -> >=", "constant 10 -> 11", "constant 0 -> 1",
                     "statement removed", "two statements swapped", "condition -> True", "condition -> False",
                     "clock.now -> the wall clock", "arithmetic * -> /", "constant True -> False",
                     "return value -> None"):
        assert expected in operators, expected
    for m in made:
        tree = ast.parse(m.source)   # every mutant is valid Python
        assert "self.clock = clock" in ast.unparse(tree), m.key   # the starter line is never touched
    keys = [m.key for m in made]
    assert len(keys) == len(set(keys))
    assert any("__import__('time').time()" in m.source for m in made)


def test_solution_lines_are_those_between_the_markers_and_the_marked_ones():
    lines = mutants.solution_lines(CELL)
    source = CELL.splitlines()
    assert {source[n - 1].strip() for n in lines} >= {"self.failures = 0", "return x * 2  # SOLUTION"}
    assert not any("self.clock = clock" in source[n - 1] for n in lines)
