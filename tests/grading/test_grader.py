"""The batch grader against a corpus of hostile and broken submissions, graded in one batch with two jobs.

The corpus (corpus.py) is generated from the committed lesson 03 notebooks, so it follows
them as they change. Every case must get its expected status and points; cheats must
score exactly what the same notebook scores without the cheat.
"""
from __future__ import annotations

import csv
import json
import os
import re
import shutil
import signal
import socket
import threading
import uuid
from pathlib import Path

import nbformat
import pytest

import corpus
from labkit import checking
from labkit.cli import main
from labkit.grading import gradebook, sandbox
from labkit.grading.gradebook import fingerprint, grade_batch
from labkit.grading.protocol import RemoteError
from labkit.grading.sandbox import Limits

ROOT = corpus.ROOT
# CPU-time limits: a loaded machine stretches only their wall-clock backstops (Limits.wall_s).
LIMITS = Limits(timeout_s=40, exercise_timeout_s=5, call_timeout_s=3, cell_timeout_s=3)
CASES = {**corpus.cases(), **corpus.every_lesson_cases()}
SANDBOX_UIDS = range(65000, 65500)


class Listener:
    """A TCP server on the grader's loopback that counts who connects."""

    def __init__(self):
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.connections = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            conn.close()


@pytest.fixture(scope="module", autouse=True)
def stable_fingerprint():
    """The gradebook's fingerprint covers labkit's code; here only the limits and hidden tests count,
    so an edit elsewhere in labkit during the run does not regrade the corpus (see test_fingerprint)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(gradebook, "fingerprint", lambda limits, hidden: fingerprint(limits, hidden, code=False))
        yield


def test_fingerprint_follows_code_limits_and_hidden_tests(tmp_path):
    hidden = tmp_path / "h.py"
    hidden.write_text("x = 1")
    stamp = fingerprint(LIMITS, [])
    assert stamp == fingerprint(LIMITS, []) != fingerprint(LIMITS, [], code=False)
    assert fingerprint(Limits(timeout_s=41, call_timeout_s=3, cell_timeout_s=3), []) != stamp
    assert fingerprint(LIMITS, [hidden]) != stamp


@pytest.fixture(scope="module")
def listener():
    server = Listener()
    yield server
    server.sock.close()


@pytest.fixture(scope="module")
def graded(tmp_path_factory, listener):
    """(cases, batch result, token, folder): the whole corpus graded once, two notebooks at a time."""
    token = uuid.uuid4().hex[:12]
    folder = tmp_path_factory.mktemp("grading")
    cases = corpus.build(folder / "submissions", token, listener.port)
    # The batch's sandbox directories go under a folder of its own (one the sandbox uids can reach),
    # so the children of this batch can be told from other graders' on the same machine.
    import tempfile

    base = tempfile.mkdtemp(prefix=f"labkit-test-grading-{token}-")
    os.chmod(base, 0o711)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(tempfile, "tempdir", base)
        result = grade_batch([folder / "submissions"], folder / "out" / "gradebook.csv", jobs=2, limits=LIMITS,
                             progress=False)
    result.sandbox_base = base
    yield cases, result, token, folder
    shutil.rmtree(base, ignore_errors=True)
    for path in corpus.outside_paths(token):
        if path.exists():
            path.unlink()


def record_of(graded, name: str) -> dict:
    cases, result, _, folder = graded
    return result.records[cases[name].filename]  # a row is keyed on its path inside the folder


def sandbox_of(graded) -> dict:
    return record_of(graded, "solution")["sandbox"]


@pytest.mark.parametrize("name", list(CASES))
def test_corpus_case_gets_its_status_and_points(graded, name):
    case = graded[0][name]
    record = record_of(graded, name)
    assert record["status"] == case.status, f"{name}: {record['reason']}"
    if case.points is not None:
        assert record["points"] == case.points, f"{name}: {record['reason']}"
    if case.reason_contains:
        assert case.reason_contains in record["reason"]
    if "message" in case.notes:
        messages = [r["message"] for report in record["exercises"].values() for r in report["results"]]
        assert any(case.notes["message"] in m for m in messages), messages
    if "same_as" in case.notes:
        assert record["points"] == record_of(graded, case.notes["same_as"])["points"]


def test_every_submission_has_one_row_and_the_files_are_consistent(graded):
    cases, result, _, folder = graded
    rows = list(csv.DictReader((folder / "out" / "gradebook.csv").open(encoding="utf-8")))
    assert sorted(Path(r["submission"]).name for r in rows) == sorted(c.filename for c in cases.values())
    assert {"submission", "lesson", "status", "03.1", "03.4", "00.1", "public", "hidden", "total", "reason"} \
        <= set(rows[0])
    solution = next(r for r in rows if r["submission"] == "solution.ipynb")
    assert (solution["03.1"], solution["total"], solution["max_total"], solution["status"]) == ("5", "12", "12", "ok")
    data = json.loads((folder / "out" / "gradebook.json").read_text(encoding="utf-8"))
    assert set(data["submissions"]) == {r["submission"] for r in rows}
    first = data["submissions"][solution["submission"]]["exercises"]["03.1"]["results"][0]
    assert {"scenario", "status", "points", "message", "hidden"} <= set(first)
    assert all(len(r["sha256"] or "") == 64 for r in data["submissions"].values() if r["status"] != "grader error")
    summary = {row["exercise"]: row for row in data["summary"]}
    assert 0 < summary["03.1"]["pass_rate"] < 1 and summary["03.1"]["most_common_failure"]
    assert "03.1" in (folder / "out" / "gradebook.summary.txt").read_text(encoding="utf-8")
    assert not any(p.name.endswith(".tmp") for p in (folder / "out").iterdir())


def test_an_infinite_loop_is_named_and_the_rest_of_the_submission_is_still_graded(graded):
    record = record_of(graded, "loop_in_method")
    first = record["exercises"]["03.1"]["results"][0]["message"]
    assert "did not finish within 3 s: an infinite loop?" in first and "03.1" in first
    # Exercise 03.2 (a subclass, with the same loop) is checked in a fresh child, on its own budget.
    later = record["exercises"]["03.2"]["results"][0]["message"]
    assert "did not finish within 3 s: an infinite loop?" in later and "03.2" in later


def test_a_loop_in_one_method_costs_only_the_scenarios_that_call_it(graded):
    record = record_of(graded, "loop_in_half_open")
    results = record["exercises"]["03.1"]["results"]
    statuses = [(r["status"], r["message"].split(":")[0]) for r in results]
    assert statuses[0][0] == statuses[1][0] == "passed", statuses  # never half-open: never reach the loop
    timed_out = [i for i, r in enumerate(results) if "did not finish within 3 s" in r["message"]]
    assert timed_out, statuses
    assert not any(r["message"].startswith("Not checked") for r in results[:timed_out[0] + 2]), statuses
    assert record["points"]["03.4"] == 1 and record["status"] == "timeout"


def test_nothing_was_written_outside_the_sandbox(graded):
    written = [p for p in corpus.outside_paths(graded[2]) if p.exists()]
    if not sandbox_of(graded).get("landlock_abi"):
        written = [p for p in written if not str(p).startswith(("/tmp", "/var/tmp"))]  # shared /tmp without Landlock
    assert written == []


def test_no_sandbox_process_survives_the_batch(graded):
    if os.geteuid() != 0:
        pytest.skip("only root can see every sandbox uid's processes")
    left = []
    base = graded[1].sandbox_base
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            uid = os.stat(f"/proc/{pid}").st_uid
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmdline = f.read().decode("utf-8", "replace")
            cwd = os.readlink(f"/proc/{pid}/cwd")
        except OSError:
            continue
        # Other graders on a shared machine use the same uids: count the children of this batch (a child
        # started as a new interpreter names its directory on its command line, and what it forks inherits
        # that; one forked by the fork server works in its directory, as what it forks does).
        if uid in SANDBOX_UIDS and (base in cmdline or cwd.startswith(base)):
            left.append(pid)
    assert left == []
    assert not sandbox._LIVE


def test_the_network_is_out_of_reach(graded, listener):
    if "isolated" not in sandbox_of(graded).get("network", "") and "TCP blocked" not in sandbox_of(graded)["network"]:
        pytest.skip(f"no network isolation here: {sandbox_of(graded)['network']}")
    assert listener.connections == 0
    assert record_of(graded, "network")["points"]["03.4"] == 1


def test_the_repository_cannot_be_read(graded):
    if not sandbox_of(graded).get("landlock_abi"):
        pytest.skip("without Landlock a notebook can read world-readable files, solutions included")
    assert record_of(graded, "reads_solution")["total"] == 0


def test_learner_code_never_ran_as_root(graded):
    if os.geteuid() != 0:
        pytest.skip("the grader runs unprivileged already")
    assert sandbox_of(graded)["uid"] in SANDBOX_UIDS


def _local_report(exercise_id: str, source: str):
    """The local check's report for a cell run here, registered in linecache as Jupyter does."""
    import linecache

    filename = f"<learner-cell-{uuid.uuid4().hex}>"
    linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
    namespace = {"__name__": "__learner__"}
    exec("import labkit as lk", namespace)
    exec(compile(source, filename, "exec"), namespace)
    return checking.get(exercise_id).run(namespace[checking.get(exercise_id).answer_name])


def test_a_state_that_equals_anything_earns_what_the_honest_state_earns(graded):
    honest_local = _local_report("03.1", graded[0]["always_equal_honest"].notes["local_source"])
    assert honest_local.score < honest_local.max_score  # the breaker is wrong: the cheat has something to hide
    assert record_of(graded, "always_equal")["points"]["03.1"] == honest_local.score
    assert record_of(graded, "always_equal_honest")["points"]["03.1"] == honest_local.score


def test_a_remote_error_is_described_by_the_learner_s_own_frame():
    error = RemoteError({"type": "ZeroDivisionError", "module": "builtins", "message": "division by zero",
                         "frames": [["<ipython-input-1-x>", 3, "on_failure", "ratio = 1 / 0"]]})
    status, message = checking.exercise._describe_exception(error)
    assert status == checking.FAILED
    assert message == "Your code raised ZeroDivisionError: division by zero\n  (in on_failure(), line 3: ratio = 1 / 0)"


def test_an_error_in_learner_code_reads_as_it_does_in_a_local_check(graded):
    local = _local_report("03.1", graded[0]["raises_in_method"].notes["local_source"])
    remote = record_of(graded, "raises_in_method")["exercises"]["03.1"]
    assert [r["message"] for r in remote["results"]] == [r.message for r in local.results]
    assert remote["score"] == local.score
    assert "Your code raised ZeroDivisionError: division by zero" in remote["results"][0]["message"]


def test_a_rerun_regrades_only_what_changed(graded):
    cases, first, _, folder = graded
    again = grade_batch([folder / "submissions"], folder / "out" / "gradebook.csv", jobs=2, limits=LIMITS,
                        progress=False)
    timed_out = {key for key, r in first.records.items() if gradebook.needs_grading(r)}
    assert timed_out, "the corpus has cases that time out"
    assert (again.graded, again.reused, again.retried) == (len(timed_out), len(cases) - len(timed_out),
                                                           len(timed_out))
    assert {k: r for k, r in again.records.items() if k not in timed_out} == \
        {k: r for k, r in first.records.items() if k not in timed_out}
    (folder / "submissions" / cases["not_json"].filename).write_bytes(b"still not JSON, but different")
    third = grade_batch([folder / "submissions"], folder / "out" / "gradebook.csv", jobs=2, limits=LIMITS,
                        progress=False)
    # What the second run left needing a grade (a case near its limit need not time out twice), and the edit.
    still = {key for key, r in again.records.items() if gradebook.needs_grading(r)}
    assert (third.graded, third.reused) == (1 + len(still), len(cases) - 1 - len(still))


def test_ctrl_c_keeps_what_is_finished_and_stops_the_rest(tmp_path):
    folder = tmp_path / "subs"
    folder.mkdir()
    (folder / "a_not_json.ipynb").write_bytes(b"{")
    shutil.copy(ROOT / "solutions" / "00_start_here.ipynb", folder / "b_slow.ipynb")
    out = tmp_path / "book.csv"

    def interrupt(record):
        raise KeyboardInterrupt

    result = grade_batch([folder], out, jobs=1, limits=LIMITS, progress=False, on_result=interrupt)
    assert result.interrupted
    data = json.loads(out.with_suffix(".json").read_text(encoding="utf-8"))
    assert list(data["submissions"]) == ["a_not_json.ipynb"] and data["interrupted"]
    assert len(list(csv.DictReader(out.open(encoding="utf-8")))) == 1
    assert not sandbox._LIVE
    resumed = grade_batch([folder], out, jobs=1, limits=LIMITS, progress=False)
    assert (resumed.reused, resumed.graded) == (1, 1)
    assert resumed.records["b_slow.ipynb"]["total"] == 1


HIDDEN = '''
from labkit.checking import Fail, get

exercise = get("00.1")


@exercise.scenario("hidden: no traffic, nothing in flight", hidden=True)
def _zero(in_flight, ctx):
    if in_flight(0, 0.5) != 0:
        raise Fail("At 0 requests/s nothing should be in flight.")
    return "zero"


@exercise.scenario("hidden: a check this solution fails", hidden=True, points=2)
def _impossible(in_flight, ctx):
    raise Fail("This hidden check always fails.")
'''


def test_hidden_tests_count_separately_and_are_removed_afterwards(tmp_path):
    hidden = tmp_path / "hidden"
    hidden.mkdir()
    (hidden / "hidden_00.py").write_text(HIDDEN, encoding="utf-8")
    before = list(checking.get("00.1").scenarios)
    out = tmp_path / "book.csv"
    result = grade_batch([ROOT / "solutions" / "00_start_here.ipynb"], out, limits=LIMITS, hidden=hidden,
                         progress=False)
    record = next(iter(result.records.values()))
    assert (record["public"], record["hidden"], record["max_hidden"], record["total"]) == (1, 1, 3, 2)
    row = next(csv.DictReader(out.open(encoding="utf-8")))
    assert (row["public"], row["hidden"], row["total"]) == ("1", "1", "2")
    hidden_results = [r for r in record["exercises"]["00.1"]["results"] if r["hidden"]]
    assert [r["status"] for r in hidden_results] == ["passed", "failed"]
    assert checking.get("00.1").scenarios == before


def test_committed_solutions_get_full_marks_and_lessons_get_zero(tmp_path):
    records = {}
    for folder in ("solutions", "lessons"):  # one gradebook each: their notebooks have the same names
        result = grade_batch([ROOT / folder], tmp_path / f"{folder}.csv", jobs=2, limits=LIMITS, progress=False)
        records.update({f"{folder}/{key}": record for key, record in result.records.items()})
    assert records
    for path, record in records.items():
        if path.startswith("solutions/"):
            assert record["status"] == "ok" and record["total"] == record["max_total"] > 0, (path, record["reason"])
            # Every public scenario replays: one that runs live instead is slow, and says something is not
            # deterministic (the child's run of a scenario and the grader's differ).
            assert record["scenarios"]["live"] == 0, (path, record["scenarios"])
        else:
            assert record["status"] == "not attempted" and record["total"] == 0, (path, record["reason"])


def test_a_demo_run_is_made_in_the_grader_s_child_only_when_the_notebook_reads_it(tmp_path):
    """Nobody looks at a demo cell's runs while grading, so labkit's own are made on first read (labkit.mode):
    a run nothing reads costs nothing, and an answer read from a run is right."""
    nb = nbformat.read(ROOT / "solutions" / "01_read_replicas.ipynb", as_version=4)
    big = "lk.replicas.simulate(duration_s=600, read_rate_rps=400)"   # 5-12 s of CPU here: over a 1 s cell limit
    at = next(i for i, c in enumerate(nb.cells) if c.cell_type == "code" and "import labkit as lk" in c.source) + 1
    nb.cells[at:at] = [nbformat.v4.new_code_cell(f"never_read = {big}\nlk.replicas.summarize({{'big': never_read}})"),
                       nbformat.v4.new_code_cell(f"{big}.summary()")]
    made = next(i for i, c in enumerate(nb.cells) if c.cell_type == "code" and "three = lk.replicas.simulate" in c.source)
    # A cell's last value is kept in _ as in Jupyter (nothing shows it), so a later cell can read it.
    nb.cells[made + 1:made + 1] = [nbformat.v4.new_code_cell('three.summary()["reads"]'),
                                   nbformat.v4.new_code_cell("READS = _")]
    answer = next(c for c in nb.cells if c.cell_type == "code" and c.source.startswith("REPLICAS = "))
    answer.source = "REPLICAS = 7 if READS > 0 else 0   # 7 only if the demo run was made"
    nbformat.write(nb, tmp_path / "01_read_replicas.ipynb")
    limits = Limits(timeout_s=40, exercise_timeout_s=5, call_timeout_s=3, cell_timeout_s=1)
    record = grade_batch([tmp_path], tmp_path / "book.csv", jobs=1, limits=limits, progress=False).records
    record = next(iter(record.values()))
    assert record["status"] == "ok" and record["total"] == record["max_total"] > 0, record
    assert record["reason"].startswith(f"1 cell(s) did not run cleanly; first: cell {at + 2} timeout"), record["reason"]


def test_a_demo_run_made_late_has_a_cell_s_cpu_allowance_and_the_reader_keeps_what_it_had_left():
    from labkit.grading.child import CellTimeout, _own_allowance

    signal.setitimer(signal.ITIMER_PROF, 2.0)
    try:
        with _own_allowance(7.0):
            inside = signal.getitimer(signal.ITIMER_PROF)[0]
        after = signal.getitimer(signal.ITIMER_PROF)[0]
        with pytest.raises(CellTimeout), _own_allowance(0.05):
            while True:
                pass
        assert abs(signal.getitimer(signal.ITIMER_PROF)[0] - after) < 0.1   # the busy loop was not charged to it
    finally:
        signal.setitimer(signal.ITIMER_PROF, 0)
    assert 6.5 < inside <= 7.05 and 1.5 < after <= 2.05   # (timers count in ticks of a few ms)


def test_callbacks_cross_the_sandbox_both_ways_so_other_designs_pass(tmp_path, capsys):
    """Leases re-ask through the grader's clock with the learner's own method (clock.after(..., self.get,
    key, reply)) and XFetch keeps a random.Random of its own: both fixes must pass in the grader too."""
    from test_checks_02_caching import LEASED, XFETCH

    nb = nbformat.read(ROOT / "solutions" / "02_caching.ipynb", as_version=4)
    for name, source in (("ConsistentCache", LEASED), ("StampedeSafeCache", XFETCH)):
        cells = [c for c in nb.cells if c.cell_type == "code" and f"class {name}" in c.source]
        assert len(cells) == 1, name
        cells[0].source = source
    path = tmp_path / "02_other_designs.ipynb"
    nbformat.write(nb, path)
    assert main(["check", str(path)]) == 0, capsys.readouterr().out
    out = capsys.readouterr().out
    # Full marks however many checks the exercises have now (a fixed 17/17 broke when 02 gained checks).
    two, score = re.search(r"Exercise 02\.2: [^\n]*: (\d+)/(\d+) points", out), re.search(r"Score: (\d+)/(\d+)", out)
    assert two and two[1] == two[2] and score and score[1] == score[2], out


def test_labkit_check_prints_the_verdicts(capsys):
    assert main(["check", str(ROOT / "solutions" / "03_circuit_breaker.ipynb")]) == 0
    out = capsys.readouterr().out
    assert "Exercise 03.1: the breaker's state machine: 5/5 points" in out and "Score: 12/12" in out
    assert main(["check", str(ROOT / "lessons" / "03_circuit_breaker.ipynb")]) == 1
    assert "not attempted" in capsys.readouterr().out


def test_labkit_check_names_a_failing_cell_as_jupyterlab_counts_it(tmp_path, capsys):
    # Cells are counted from 1 down the page, markdown included: the setup cell is the notebook's
    # first code cell, and a broken cell right after it is named by its place, not its list index.
    nb = nbformat.read(ROOT / "solutions" / "03_circuit_breaker.ipynb", as_version=4)
    at = next(i for i, c in enumerate(nb.cells) if c.cell_type == "code" and "import labkit as lk" in c.source) + 1
    nb.cells.insert(at, nbformat.v4.new_code_cell("1 / 0"))
    path = tmp_path / "03_circuit_breaker.ipynb"
    nbformat.write(nb, path)
    main(["check", str(path)])
    out = capsys.readouterr().out
    assert f"Cell {at + 1} error" in out, out


def test_labkit_grade_with_an_expected_lesson(tmp_path, capsys):
    (tmp_path / "junk.ipynb").write_bytes(b"\xff\xfe not a notebook")
    out = tmp_path / "book.csv"
    code = main(["grade", str(ROOT / "solutions" / "00_start_here.ipynb"), str(tmp_path / "junk.ipynb"),
                 "--lesson", "03", "-o", str(out)])
    assert code == 0
    rows = {Path(r["submission"]).name: r for r in csv.DictReader(out.open(encoding="utf-8"))}
    assert rows["00_start_here.ipynb"]["status"] == "wrong lesson"
    assert rows["junk.ipynb"]["status"] == "not a notebook"
    assert "2 submissions" in capsys.readouterr().out


@pytest.mark.parametrize("source, filename, lesson", [
    ('lk.check("03.1", CircuitBreaker)', "x.ipynb", "03"),
    ("class CircuitBreaker:\n    pass\nTUNING = {}", "x.ipynb", "03"),
    ("def in_flight(rate_rps, latency_s):\n    return 1", "03_mine.ipynb", "00"),
    ("print(1)", "03_circuit_breaker.ipynb", "03"),
    ("print(1)", "mine.ipynb", None),
])
def test_lesson_detection(tmp_path, source, filename, lesson):
    from labkit.grading.notebook import detect_lesson, read_submission

    path = tmp_path / filename
    nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(source)]), path)
    assert detect_lesson(read_submission(path), checking.all_exercises()) == lesson


CATCHING_ROUTER = '''
class Router:
    def __init__(self, replica_set):
        self.primary, self.replicas, self.turn = replica_set.primary, replica_set.replicas, 0

    def write(self, key, **fields):
        return self.primary.write(key, **fields)

    def read(self, key, strong=False):
        if strong:
            return self.primary.read(key)
        for _ in range(len(self.replicas)):
            replica = self.replicas[self.turn % len(self.replicas)]
            self.turn += 1
            try:
                return replica.read(key)
            except lk.ReplicaDown:   # raised by the grader's replica, caught in the notebook
                continue
        return self.primary.read(key)
'''


def test_the_grader_s_exceptions_are_caught_by_learner_code_as_labkit_s(tmp_path):
    try:
        exercise = checking.get("01.1")
    except ValueError:
        pytest.skip("lesson 01 is not registered")
    path = tmp_path / "01_router.ipynb"
    nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("import labkit as lk"),
                                                   nbformat.v4.new_code_cell(CATCHING_ROUTER)]), path)
    from labkit.grading.runner import grade_notebook

    record = grade_notebook(path, limits=LIMITS).record
    local = _local_report(exercise.id, "import labkit as lk\n" + CATCHING_ROUTER)
    assert local.score == local.max_score
    assert record["points"][exercise.id] == local.score, record["exercises"][exercise.id]


def test_hidden_tests_are_never_readable_from_a_submission(tmp_path, monkeypatch):
    """The child checks, before any learner code, that it cannot read the hidden tests; the grader refuses
    to grade where it could. As root the folder is hidden in the child's mount namespace; here the
    grading directory is put inside the hidden folder, so it cannot be hidden and, without Landlock,
    the grader must refuse."""
    from labkit.grading.gradebook import hidden_tests
    from labkit.grading.runner import grade_notebook

    import tempfile

    # World-readable, as an instructor's files usually are (pytest's own tmp_path is not).
    hidden = Path(tempfile.mkdtemp(prefix="labkit-hidden-"))
    os.chmod(hidden, 0o755)
    (hidden / "hidden_00.py").write_text(HIDDEN, encoding="utf-8")
    notebook = ROOT / "solutions" / "00_start_here.ipynb"
    try:
        _grade_with_hidden(hidden, notebook, hidden_tests, grade_notebook, monkeypatch)
    finally:
        shutil.rmtree(hidden, ignore_errors=True)


def _grade_with_hidden(hidden, notebook, hidden_tests, grade_notebook, monkeypatch):
    with hidden_tests(hidden):
        record = grade_notebook(notebook, limits=LIMITS).record
        assert record["sandbox"]["hidden_tests"] == "unreadable (checked)", record["sandbox"]
        assert record["status"] == "ok" and record["max_hidden"] == 3
        monkeypatch.setenv("LABKIT_GRADER_LANDLOCK", "0")
        inside = hidden / "grading"
        inside.mkdir()
        os.chmod(inside, 0o711)
        exposed = grade_notebook(notebook, limits=LIMITS, base_dir=str(inside)).record
    assert exposed["status"] == "grader error", exposed["reason"]
    assert "hidden tests would be readable" in exposed["reason"]
    assert exposed["total"] == 0
