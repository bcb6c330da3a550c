"""Grading by replay (labkit.grading.replay): the child records a public scenario, the grader replays it.

In-process tests record a scenario with the committed solution's answer and replay it, then
tamper with the record the way a changed child could; end-to-end tests grade notebooks
whose child lies, and check that replay and live grading reach the same verdicts.
"""
from __future__ import annotations

import base64
import json
import os
import zlib

import nbformat
import pytest

import corpus
from labkit import checking
from labkit.clock import gc_paused
from labkit.grading import replay
from labkit.grading.runner import CodeTimeout, grade_notebook
from labkit.grading.sandbox import Limits

ROOT = corpus.ROOT
LIMITS = Limits(timeout_s=40, exercise_timeout_s=10, call_timeout_s=3, cell_timeout_s=10)


def _shell_with(lesson: str, extra: str = ""):
    """An IPython shell that ran the solution's cells (checks skipped, as in the grader's child)."""
    from IPython.core.interactiveshell import InteractiveShell

    shell = InteractiveShell.instance()
    solution = nbformat.read(ROOT / "solutions" / f"{lesson}.ipynb", as_version=4)
    saved = os.environ.get("LABKIT_GRADING_CHILD")
    os.environ["LABKIT_GRADING_CHILD"] = "1"
    try:
        for cell in solution.cells:
            if cell.cell_type == "code":
                shell.run_cell(cell.source, silent=True)
        if extra:
            shell.run_cell(extra, silent=True)
    finally:
        if saved is None:
            os.environ.pop("LABKIT_GRADING_CHILD", None)
        else:
            os.environ["LABKIT_GRADING_CHILD"] = saved
    return shell


class _Live:
    """Stands in for the live endpoint: records the stop a replay asks for."""

    def __init__(self):
        self.stops = []

    def stopped_in_record(self, what, kind):
        self.stops.append((what, kind))
        return CodeTimeout(f"stopped: {kind} while {what}")


def _replay(text: str, exercise, scenario):
    with gc_paused():
        endpoint = replay.ReplayEndpoint(text, _Live(), exercise.id)
        try:
            report = replay.run_scenario(endpoint, exercise, scenario)
        except replay.Diverged:
            report = None
        complete = endpoint.complete
        endpoint.close()
    return report, complete


def _unpacked(text: str) -> dict:
    return json.loads(zlib.decompress(base64.b64decode(text)))


def _packed(record: dict) -> str:
    return base64.b64encode(zlib.compress(json.dumps(record).encode())).decode()


@pytest.fixture(scope="module")
def router_shell():
    return _shell_with("01_read_replicas")


def _scenario(exercise_id: str, index: int):
    exercise = checking.get(exercise_id)
    return exercise, replay.public_scenarios(exercise)[index]


def test_a_recorded_scenario_replays_to_the_verdict_a_local_check_gives(router_shell):
    for exercise_id in ("01.1", "01.2"):
        exercise = checking.get(exercise_id)
        answer = router_shell.user_ns[exercise.answer_name]
        local = exercise.run(answer)
        for index, scenario in enumerate(replay.public_scenarios(exercise)):
            text = replay.record(router_shell, exercise_id, index, scenario.name, 3, 19)
            report, complete = _replay(text, exercise, scenario)
            assert complete, scenario.name
            assert [(r.status, r.points) for r in report.results] == \
                [(r.status, r.points) for r in local.results if r.scenario == scenario.name]


def test_a_record_that_is_not_one_or_was_changed_is_dropped(router_shell):
    exercise, scenario = _scenario("01.2", 0)
    text = replay.record(router_shell, "01.2", 0, scenario.name, 3, 19)
    record = _unpacked(text)
    assert record["learner"] and any(len(entry) == 2 for entry in record["learner"]), "the router reads lag_s"

    def changed(edit) -> str:
        copy = json.loads(json.dumps(record))
        edit(copy)
        return _packed(copy)

    def first_read(rec):
        return next(entry[1][0] for entry in rec["learner"] if len(entry) == 2)

    def lie_about_a_read(rec):   # the child's replica said another lag than the grader's does
        read = first_read(rec)
        read[2] = read[2] + 7.5 if isinstance(read[2], (int, float)) and not isinstance(read[2], bool) else "other"

    def lie_about_a_call(rec):      # the child's replica.read(key) gave the router another row
        call = next(event for entry in rec["learner"] if len(entry) == 2 for event in entry[1] if len(event) == 4)
        call[3] = {"ok": "a row the grader's replica does not hold"}

    def call_a_private_method(rec):  # a handle that was never granted
        call = next(event for entry in rec["learner"] if len(entry) == 2 for event in entry[1] if len(event) == 4)
        call[0] = 1

    def read_a_private_name(rec):   # a value the exposure list does not allow
        first_read(rec)[1] = "_sim"

    def drop_the_last_message(rec):
        rec["learner"].pop()

    def another_digest(rec):        # the child's copy of the grader sent other messages
        rec["digest"] = "0" * 64

    def a_reply_answers_another_request(rec):
        reply = next(entry[0] for entry in rec["learner"] if "r" in entry[0] and entry[0]["r"] > 3)
        reply["r"] += 1

    cases = {"not a record": "garbage", "not base64": "!!!", "a number": 3,
             "a bomb": base64.b64encode(zlib.compress(b"[" * 10_000_000)).decode(),
             "lie about a read": changed(lie_about_a_read), "read a private name": changed(read_a_private_name),
             "lie about a call": changed(lie_about_a_call), "call a private method": changed(call_a_private_method),
             "drop the last message": changed(drop_the_last_message), "another digest": changed(another_digest),
             "a reply to another request": changed(a_reply_answers_another_request)}
    for name, bad in cases.items():
        report, complete = _replay(bad, exercise, scenario)
        assert not complete, name
    report, complete = _replay(text, exercise, scenario)
    assert complete and report.results[0].passed


def test_a_call_that_runs_out_of_time_in_the_record_stops_the_child_where_it_would_have_live():
    shell = _shell_with("01_read_replicas", "def _slow(self, key, *args, **kwargs):\n    while True:\n        pass\n"
                                            "Router.read = _slow")
    exercise, scenario = _scenario("01.1", 2)
    text = replay.record(shell, "01.1", 2, scenario.name, 0.3, 19)
    assert _unpacked(text)["learner"][-1] == ["cpu"]
    with gc_paused():
        live = _Live()
        endpoint = replay.ReplayEndpoint(text, live, exercise.id)
        report = replay.run_scenario(endpoint, exercise, scenario)
        assert endpoint.complete
    assert live.stops == [("calling Router.read()", "cpu")]
    assert not report.results[0].passed and "stopped: cpu" in report.results[0].message


def test_a_scenario_the_child_does_not_know_is_refused(router_shell):
    with pytest.raises(ValueError, match="no public scenario"):
        replay.record(router_shell, "01.1", 0, "a scenario by another name", 3, 19)
    with pytest.raises(ValueError, match="no public scenario"):
        replay.record(router_shell, "01.1", 99, "x", 3, 19)


# --- end to end: a child that lies, and replay against live ----------------------------------


def _notebook(tmp_path, lesson: str, extra: str, name: str):
    solution = nbformat.read(ROOT / "solutions" / f"{lesson}.ipynb", as_version=4)
    solution.cells.append(nbformat.v4.new_code_cell(extra))
    path = tmp_path / f"{lesson[:2]}_{name}.ipynb"
    nbformat.write(solution, path)
    return path


WRONG_ROUTER = '''
def _read(self, key, strong=False):   # ignores how far behind a replica is
    if strong:
        return self.primary.read(key)
    up = [r for r in self.replicas if r.is_up]
    if not up:
        return self.primary.read(key)
    self._turn = getattr(self, "_turn", -1) + 1
    return up[self._turn % len(up)].read(key)
LagAwareRouter.read = _read
'''


@pytest.mark.parametrize("lie", [
    # the child's replicas say they are never behind: a router that ignores lag would look right
    "import labkit.db\nlabkit.db.Database.lag_s = property(lambda self: 0.0)",
    # the child sends garbage instead of a record
    "import labkit.grading.replay as _r\n_r.record = lambda *a, **k: 'not a record'",
    # the child's record says every call timed out at once
    "import labkit.grading.replay as _r, base64, zlib, json\n"
    "_r.record = lambda *a, **k: base64.b64encode(zlib.compress(json.dumps("
    "{'digest': '', 'learner': [['cpu']]}).encode())).decode()",
], ids=["its labkit changed", "garbage", "a forged timeout"])
def test_a_child_that_lies_in_its_record_gets_what_live_grading_gives(tmp_path, lie):
    honest = grade_notebook(_notebook(tmp_path, "01_read_replicas", WRONG_ROUTER, "honest"),
                            limits=LIMITS).record
    lying = grade_notebook(_notebook(tmp_path, "01_read_replicas", WRONG_ROUTER + lie, "lying"),
                           limits=LIMITS).record
    assert honest["points"]["01.2"] < 3 and honest["status"] == "ok", honest["reason"]
    assert lying["points"] == honest["points"], (lying["points"], honest["points"], lying["reason"])
    assert lying["scenarios"]["live"] > 0


def test_replay_and_live_grading_reach_the_same_verdicts(tmp_path):
    """Right, wrong and untouched exercises of every lesson (the grading benchmark's mix), graded both ways."""
    from benchmarks.bench_grading import build_submissions

    replayed_any = 0
    for path in sorted((ROOT / "solutions").glob("0*.ipynb")):
        folder = tmp_path / path.stem
        build_submissions(folder, path.stem)
        for submission in sorted(folder.glob("*/*.ipynb"))[:2]:
            live = grade_notebook(submission, limits=Limits(**{**LIMITS.to_dict(), "replay": False})).record
            replayed = grade_notebook(submission, limits=LIMITS).record
            assert replayed["scenarios"]["live"] <= live["scenarios"]["live"], submission
            assert replayed["exercises"] == live["exercises"], submission
            assert (replayed["status"], replayed["reason"]) == (live["status"], live["reason"])
            replayed_any += replayed["scenarios"]["replayed"]
    assert replayed_any > 20


def _streamed(shell, exercise_id: str, index: int, name: str):
    """(parts sent ahead, last text) of a record made with `stream`, as the child sends them."""
    parts = []
    last = replay.record(shell, exercise_id, index, name, 3, 19, stream=parts.append)
    return parts, last


def test_a_record_sent_in_parts_replays_as_the_whole_and_a_changed_part_is_refused(router_shell):
    exercise, scenario = _scenario("01.2", 0)   # the largest of lesson 01's first two exercises
    parts, last = _streamed(router_shell, "01.2", 0, scenario.name)
    assert len(parts) >= 3 and None not in parts
    whole = replay.record(router_shell, "01.2", 0, scenario.name, 3, 19)
    assert [e for p in parts for e in _unpacked(p)["part"]] + _unpacked(last)["learner"] == _unpacked(whole)["learner"]
    assert _unpacked(last)["digest"] == _unpacked(whole)["digest"] and _unpacked(last)["parts"] == len(parts)

    def texts(sequence):
        return iter(sequence).__next__

    local = exercise.run(router_shell.user_ns[exercise.answer_name])
    report, complete = _replay(texts(parts + [last]), exercise, scenario)
    assert complete
    assert [(r.status, r.points) for r in report.results] == \
        [(r.status, r.points) for r in local.results if r.scenario == scenario.name]
    swapped = [parts[1], parts[0], *parts[2:]]
    cases = {"a part left out": parts[1:] + [last], "two parts swapped": swapped + [last],
             "a part twice": parts[:1] + parts + [last], "no last text": parts,
             "the last text first": [last] + parts, "a part that is not one": parts[:1] + ["garbage"] + parts[1:] + [last],
             "a last text that counts other parts": parts + [_packed({**_unpacked(last), "parts": len(parts) + 1})]}
    for name, bad in cases.items():
        report, complete = _replay(texts(bad), exercise, scenario)
        assert not complete, name


def test_a_streamed_scenario_recorded_again_says_so_before_its_new_parts(monkeypatch):
    """A grader method that calls back into learner code (lesson 04's pool waking the next caller) makes the
    child record the scenario again: the parts it sent before are announced void with a None."""
    monkeypatch.setattr(replay, "PART_ENTRIES", 3)   # lesson 04's records are small: parts of three entries
    shell = _shell_with("04_bulkhead")
    exercise = checking.get("04.1")
    restarted = 0
    for index, scenario in enumerate(replay.public_scenarios(exercise)):
        parts, last = _streamed(shell, "04.1", index, scenario.name)
        if None in parts:
            restarted += 1
            fresh = parts[len(parts) - parts[::-1].index(None):]
            report, complete = _replay(iter(fresh + [last]).__next__, exercise, scenario)
            assert complete and report is not None, scenario.name
            report, complete = _replay(iter(parts[:parts.index(None)] + [last]).__next__, exercise, scenario)
            assert not complete, f"{scenario.name}: the void parts replayed"
    assert restarted, "no scenario of 04.1 was recorded again"
