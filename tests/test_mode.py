"""Deferred demonstrations (labkit.mode): while the grader's child runs a notebook, a lesson's
`simulate` and `summarize` are computed when something uses their result, and only then."""
from __future__ import annotations

import copy
import pickle
from dataclasses import dataclass

import pytest

import labkit as lk
from labkit.mode import Deferred, deferred_while_grading, running_cells


@dataclass
class Result:
    n: int
    items: list

    def total(self) -> int:
        return sum(self.items)


calls = []


@deferred_while_grading
def simulate(n=3, items=(), **extra):
    calls.append(n)
    return Result(n, list(items) or list(range(n)))


@deferred_while_grading
def summarize(runs):
    return {label: run.total() for label, run in runs.items()}


@pytest.fixture(autouse=True)
def no_calls():
    calls.clear()


def test_outside_the_child_s_cells_a_call_runs_at_once_as_usual():
    assert type(simulate(2)) is Result and calls == [2]


def test_a_deferred_result_is_computed_on_first_use_and_only_once():
    with running_cells():
        run = simulate(4)
        table = summarize({"a": run})
    assert calls == [] and type(run) is Deferred
    assert table == {"a": 6} and calls == [4]   # the table uses the run
    assert run.total() == 6 and run.n == 4 and calls == [4]


@pytest.mark.parametrize("use", [
    lambda r: r.n, lambda r: r.total(), lambda r: isinstance(r, Result), lambda r: r == Result(3, [0, 1, 2]),
    lambda r: repr(r), lambda r: str(r), lambda r: f"{r}", lambda r: dir(r), lambda r: bool(r),
    lambda r: copy.copy(r), lambda r: copy.deepcopy(r), lambda r: pickle.loads(pickle.dumps(r)),
])
def test_whatever_uses_it_gets_the_result(use):
    with running_cells():
        run = simulate()
    assert not run._deferred_done
    with running_cells():
        used = use(run)
    eager = simulate()
    assert used == use(eager) and run._deferred_done


def test_containers_and_assignment_reach_the_result():
    with running_cells():
        rows = summarize({"a": simulate(2)})
    assert len(rows) == 1 and list(rows) == ["a"] and "a" in rows and rows["a"] == 1
    rows["b"] = 5
    assert rows == {"a": 1, "b": 5}
    with running_cells():
        run = simulate(2)
    run.n = 7
    assert run.n == 7 and run == Result(7, [0, 1])


def test_an_argument_learner_code_could_change_or_run_is_not_deferred():
    class Router:   # the learner's class: simulate(router=Router) runs it when the notebook does
        pass

    with running_cells():
        assert type(simulate(1, router=Router)) is Result
        assert type(simulate(1, callback=lambda x: x)) is Result
        assert type(simulate(1, state=Result(0, []))) is Result   # a mutable object of the learner's
        assert type(simulate(1, spikes=[lk.LagSpike(1, 2, extra_s=1)], how=lk.replicas.ReplicaRouter)) is Deferred
        made_with_learner_code = lk.replicas.simulate(duration_s=5, router=lambda rs: lk.replicas.ReplicaRouter(rs))
        assert type(made_with_learner_code) is lk.replicas.ReplicasRun
        assert type(lk.replicas.summarize({"a": made_with_learner_code})) is Deferred   # a run is done
    assert calls == [1, 1, 1]


def test_a_list_given_is_copied_so_changing_it_afterwards_changes_nothing():
    items = [1, 2]
    with running_cells():
        run = simulate(2, items=items)
    items.append(100)
    assert run.total() == 3


def test_a_call_that_fails_fails_at_each_use():
    @deferred_while_grading
    def broken():
        calls.append("x")
        raise ValueError("no")

    with running_cells():
        result = broken()
    for _ in range(2):
        with pytest.raises(ValueError, match="no"):
            result.anything
    assert calls == ["x", "x"]


def test_what_a_deferred_call_calls_in_turn_is_not_deferred():
    @deferred_while_grading
    def outer():
        return type(simulate(1))

    with running_cells():
        assert outer() == Result   # computed on use, outside the cells' deferral
        assert outer.__wrapped__() is Deferred   # (the plain function, called in the cells, would defer)


def test_a_misspelt_argument_fails_at_once_as_in_the_notebook():
    with running_cells(), pytest.raises(TypeError):
        simulate(3, 4, 5)
