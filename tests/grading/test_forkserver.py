"""Children forked by the fork server start as a new interpreter would, are killed as surely, and a dead
server costs only speed (labkit.grading.forkserver)."""
from __future__ import annotations

import json
import os
import signal
import socket
import time

import nbformat
import pytest

import corpus
from labkit.grading import forkserver, sandbox
from labkit.grading.gradebook import grade_batch
from labkit.grading.runner import grade_notebook
from labkit.grading.sandbox import Child, Limits

pytestmark = pytest.mark.skipif(not forkserver.available(), reason="no fork server here (it needs Linux with pidfd)")

LIMITS = Limits(timeout_s=40, exercise_timeout_s=10, call_timeout_s=5, cell_timeout_s=5)

# What a child sees of its start. The paths of its working directory and of the grading run's
# directory differ per child, and the numbers of the directories sys.path holds open.
PROBE = r'''
import json, os, re, sys, tempfile
fds = sorted(int(f) for f in os.listdir("/proc/self/fd"))
home = os.environ["HOME"]
def same(v):
    v = v.replace(home, "<workdir>").replace(os.path.dirname(home), "<run>")
    return re.sub(r"pipe:\[[0-9]+\]", "pipe", re.sub(r"/proc/self/fd/[0-9]+", "<fd>", v))
print("PROBE " + json.dumps({
    "env": {k: same(v) for k, v in os.environ.items()},
    "cwd": same(os.getcwd()),
    # Not the directories of imported packages that the sandbox keeps open (more are imported before a fork).
    "fds": sorted(same(os.readlink(f"/proc/self/fd/{f}")) for f in fds
                  if os.path.exists(f"/proc/self/fd/{f}") and not os.path.isdir(f"/proc/self/fd/{f}")),
    "path": [same(p) for p in sys.path],
    "flags": [sys.flags.isolated, sys.flags.dont_write_bytecode, sys.flags.utf8_mode],
    "session leader": os.getsid(0) == os.getpid(),
    "tmp": same(tempfile.gettempdir()),
    "stdin": os.readlink("/proc/self/fd/0"),
}, sort_keys=True))
'''


@pytest.fixture
def no_server():
    """No fork server in this process yet, and none started so far; the module's state is put back afterwards."""
    saved = forkserver._SERVER, forkserver._starts, forkserver._starting
    forkserver._SERVER, forkserver._starts, forkserver._starting = None, 0, False
    try:
        yield
    finally:
        if forkserver._SERVER is not None:
            forkserver._SERVER.close()
        forkserver._SERVER, forkserver._starts, forkserver._starting = saved


@pytest.fixture
def server(no_server):
    """A fork server of this test's own, ready."""
    sandbox.start_fork_server(LIMITS)
    deadline = time.monotonic() + 60
    while forkserver.ready() is None:
        assert time.monotonic() < deadline, "the fork server did not start within 60 s"
        time.sleep(0.05)
    return forkserver.ready()


@pytest.fixture
def started(monkeypatch):
    """How each child was started: 'forked' or 'new interpreter', in order."""
    how = []
    original = Child._start

    def _start(self, python):
        original(self, python)
        how.append("forked" if self.pidfd is not None else "new interpreter")

    monkeypatch.setattr(Child, "_start", _start)
    return how


def _probe_notebook(tmp_path):
    nb = corpus._after_setup(corpus._read("solutions", "00_start_here"), PROBE)
    path = tmp_path / "00_start_here.ipynb"
    nbformat.write(nb, path)
    return path


def _probe(record) -> dict:
    line = next(l for l in record["output"].splitlines() if l.startswith("PROBE "))
    return json.loads(line[len("PROBE "):])


def test_a_forked_child_starts_as_a_new_interpreter_would(tmp_path, server, started, monkeypatch):
    path = _probe_notebook(tmp_path)
    forked = grade_notebook(path, limits=LIMITS).record
    monkeypatch.setattr(forkserver, "ready", lambda: None)
    plain = grade_notebook(path, limits=LIMITS).record
    assert started == ["forked", "new interpreter"]
    assert forked["status"] == plain["status"] == "ok" and forked["points"] == plain["points"] == {"00.1": 1.0}
    assert _probe(forked) == _probe(plain)
    assert _probe(forked)["session leader"] and _probe(forked)["stdin"] == "/dev/null"
    assert forked["sandbox"] == plain["sandbox"]


def test_a_batch_forks_its_children_once_the_server_is_up(tmp_path, started, no_server):
    folder = tmp_path / "class"
    notebook = (corpus.ROOT / "solutions" / "03_circuit_breaker.ipynb").read_bytes()
    for i in range(8):
        (folder / f"s{i}").mkdir(parents=True)
        (folder / f"s{i}" / "03_circuit_breaker.ipynb").write_bytes(notebook)
    result = grade_batch([folder], tmp_path / "book.csv", jobs=2, limits=LIMITS, progress=False)
    assert [r["total"] for r in result.records.values()] == [12] * 8
    # The first two start while the server does; later ones are forked once it is ready.
    assert started[:2] == ["new interpreter"] * 2 and "forked" in started, started
    one = grade_batch([folder / "s0"], tmp_path / "one.csv", jobs=1, limits=LIMITS, progress=False, force=True)
    assert one.graded == 1 and forkserver._starts == 1   # one notebook starts no server of its own


def test_a_forked_child_is_killed_and_waited_for(tmp_path, server):
    notebook = (corpus.ROOT / "solutions" / "00_start_here.ipynb").read_bytes()
    child = Child(notebook, "00_start_here.ipynb", str(tmp_path), LIMITS, uid_pool=None)
    assert child.pidfd is not None and child.proc is None
    pid = child.pid
    assert os.path.exists(f"/proc/{pid}")
    started = time.monotonic()
    child.close()
    assert time.monotonic() - started < 10
    assert not os.path.exists(f"/proc/{pid}") or open(f"/proc/{pid}/stat").read().split()[2] == "Z"
    assert child.pidfd is None and not os.path.exists(child.workdir)
    # Ctrl-C: the main thread kills every live child it listed, while a worker's close of the same child
    # has already cleared its pidfd (a fork-server child has no proc): that kill is a no-op, not an error.
    child.kill()


def test_a_dead_server_costs_only_speed(tmp_path, server, started):
    os.kill(server.proc.pid, signal.SIGKILL)
    server.proc.wait(timeout=10)
    assert forkserver.ready() is None
    record = grade_notebook(corpus.ROOT / "solutions" / "00_start_here.ipynb", limits=LIMITS).record
    assert record["status"] == "ok" and record["points"] == {"00.1": 1.0}
    assert started == ["new interpreter"]
    sandbox.start_fork_server(LIMITS)   # a batch starts it again
    deadline = time.monotonic() + 60
    while forkserver.ready() is None:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert forkserver.ready() is not server and forkserver._starts == 2


def test_a_bad_request_is_refused_and_the_server_goes_on(server):
    r, w = os.pipe()
    try:
        with server.lock:
            socket.send_fds(server.sock, [json.dumps({"config": {}, "env": {}, "cwd": "/"}).encode()], [r, w])
            reply, fds, _, _ = socket.recv_fds(server.sock, 4096, 1)
    finally:
        os.close(r)
        os.close(w)
    assert "needs its two pipe ends and its log" in json.loads(reply)["error"] and fds == []
    assert forkserver.ready() is server and server.proc.poll() is None


def test_hidden_tests_are_unreadable_from_a_forked_child(tmp_path, server, started, monkeypatch):
    from test_grader import test_hidden_tests_are_never_readable_from_a_submission as hidden_tests_test

    hidden_tests_test(tmp_path, monkeypatch)
    assert started and set(started) == {"forked"}, started
