"""The gradebook is only ever added to or updated, and its rows are fair.

Most cases grade files that are not notebooks ("not a notebook" costs no sandboxed
child), so they test the gradebook's bookkeeping in milliseconds; the cases about a
row's verdict (big outputs, a renamed class, a link to the solution) grade real lesson
notebooks, the first two in one batch.
"""
from __future__ import annotations

import base64
import hashlib
import importlib.util
import copy
import csv
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest

from corpus import ROOT, _edit, _read
from labkit.cli import main
from labkit.grading import notebook
from labkit.grading.gradebook import LINK_OUTSIDE, GradebookBusy, grade_batch, merge
from labkit.grading.runner import grade_notebook
from labkit.grading.sandbox import Limits, compile_labkit

LIMITS = Limits(timeout_s=40, call_timeout_s=3, cell_timeout_s=3)


def junk(folder: Path, *names: str) -> None:
    """Files that are not notebooks: each gets a row ('not a notebook') without starting a child."""
    for name in names:
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"not a notebook: {name}\n")


def grade(paths, out, **kwargs):
    return grade_batch([paths] if isinstance(paths, (str, Path)) else paths, out, progress=False,
                       limits=LIMITS, **kwargs)


def rows(out: Path) -> dict[str, dict]:
    return {r["submission"]: r for r in csv.DictReader(out.open(encoding="utf-8"))}


def files_of(out: Path) -> dict[str, bytes]:
    """The gradebook's three files, byte for byte."""
    return {p.name: p.read_bytes() for p in (out, out.with_suffix(".json"), out.with_suffix(".summary.txt"))}


def edit_json(out: Path, change) -> None:
    path = out.with_suffix(".json")
    data = json.loads(path.read_text(encoding="utf-8"))
    change(data["submissions"])
    path.write_text(json.dumps(data), encoding="utf-8")


# --- never shrunk by accident ---------------------------------------------------------------


@pytest.fixture
def book(tmp_path):
    """A gradebook of two rows graded from tmp_path/subs."""
    junk(tmp_path / "subs", "a.ipynb", "b.ipynb")
    out = tmp_path / "grades" / "03.csv"
    grade(tmp_path / "subs", out)
    assert set(rows(out)) == {"a.ipynb", "b.ipynb"}
    return out


@pytest.mark.parametrize("make", ["empty folder", "only hidden files", "mistyped folder", "empty beside a full one"])
def test_an_empty_or_mistyped_folder_is_an_error_that_changes_nothing(tmp_path, book, capsys, make):
    before = files_of(book)
    target = tmp_path / "empty"
    target.mkdir()
    if make == "only hidden files":
        junk(target, ".ipynb_checkpoints/a-checkpoint.ipynb", ".hidden.ipynb")
    if make == "mistyped folder":
        target = tmp_path / "sbus"
    paths = [tmp_path / "subs", target] if make == "empty beside a full one" else [target]
    with pytest.raises((ValueError, FileNotFoundError), match="nothing was graded"):
        grade(paths, book)
    assert main(["grade", *map(str, paths), "-o", str(book)]) == 1
    assert "nothing was graded" in capsys.readouterr().err
    assert files_of(book) == before


def test_a_gradebook_that_cannot_be_read_is_not_replaced(tmp_path, book):
    json_path = book.with_suffix(".json")
    json_path.write_text('{"format": "labkit-gradebook/2", "submissions": {"a.ipynb": ')  # cut short
    before = files_of(book)
    with pytest.raises(ValueError, match="cannot be read as a gradebook"):
        grade(tmp_path / "subs", book)
    json_path.write_text(json.dumps({"format": "labkit-gradebook/2", "submissions": {"a.ipynb": {"points": {}}}}))
    with pytest.raises(ValueError, match="the row 'a.ipynb' is not a gradebook row"):
        grade(tmp_path / "subs", book)
    json_path.unlink()
    with pytest.raises(ValueError, match="exists without its 03.json"):
        grade(tmp_path / "subs", book)
    assert book.read_bytes() == before["03.csv"]
    with pytest.raises(ValueError, match="must not end in .json"):
        grade(tmp_path / "subs", tmp_path / "grades" / "other.json")


def test_a_subset_rerun_keeps_the_rows_it_does_not_name_and_prune_drops_them(tmp_path, book, capsys):
    junk(tmp_path / "subs", "a.ipynb")  # the same content: unchanged
    junk(tmp_path / "subs", "c.ipynb")
    result = grade(tmp_path / "subs" / "c.ipynb", book)
    assert (result.graded, result.kept, result.pruned) == (1, 2, 0)
    assert set(rows(book)) == {"a.ipynb", "b.ipynb", "c.ipynb"}
    assert set(json.loads(book.with_suffix(".json").read_text())["submissions"]) == set(rows(book))
    (tmp_path / "subs" / "b.ipynb").write_text("changed")
    result = grade([tmp_path / "subs" / "b.ipynb"], book)
    assert (result.graded, result.kept) == (1, 2) and len(rows(book)) == 3
    assert main(["grade", str(tmp_path / "subs" / "a.ipynb"), "-o", str(book)]) == 0
    assert "Kept 2 rows of earlier runs that this run did not name" in capsys.readouterr().out
    assert len(rows(book)) == 3
    assert main(["grade", str(tmp_path / "subs" / "a.ipynb"), "-o", str(book), "--prune"]) == 0
    assert "Dropped 2 rows that this run did not name" in capsys.readouterr().out
    assert set(rows(book)) == {"a.ipynb"}


def test_the_same_file_named_by_relative_absolute_or_linked_path_is_one_row(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    junk(tmp_path / "subs", "a.ipynb", "b.ipynb")
    (tmp_path / "via_link").symlink_to(tmp_path / "subs")
    out = Path("grades/03.csv")
    first = grade("subs", out)
    assert (first.graded, set(first.records)) == (2, {"a.ipynb", "b.ipynb"})
    for named in (tmp_path / "subs", "./subs/", "via_link", tmp_path / "via_link"):
        again = grade(named, out)
        assert (again.graded, again.reused, again.kept) == (0, 2, 0), named
    for named in ("subs/a.ipynb", tmp_path / "subs" / "a.ipynb", "via_link/a.ipynb"):
        again = grade(named, out)
        assert (again.graded, again.reused, again.kept) == (0, 1, 1), named
    assert set(rows(out)) == {"a.ipynb", "b.ipynb"}


def test_a_folder_per_learner_keys_rows_on_the_path_inside_the_folder(tmp_path):
    junk(tmp_path / "subs", "alice/03.ipynb", "bob/03.ipynb")
    out = tmp_path / "03.csv"
    grade(tmp_path / "subs", out)
    assert set(rows(out)) == {"alice/03.ipynb", "bob/03.ipynb"}
    assert grade(tmp_path / "subs" / "bob" / "03.ipynb", out).reused == 1
    junk(tmp_path / "subs", "carol/03.ipynb")
    result = grade(tmp_path / "subs" / "carol", out)  # a subfolder of a folder this gradebook graded
    assert result.graded == 1
    assert set(rows(out)) == {"alice/03.ipynb", "bob/03.ipynb", "carol/03.ipynb"}


def test_two_files_that_would_be_one_row_are_refused(tmp_path, book):
    junk(tmp_path / "section2", "a.ipynb")
    before = files_of(book)
    with pytest.raises(ValueError, match="would both be the row 'a.ipynb'"):
        grade([tmp_path / "subs", tmp_path / "section2"], book)
    assert files_of(book) == before


def test_a_gradebook_of_the_old_format_is_rekeyed_without_duplicates(tmp_path, monkeypatch):
    """Gradebooks written before row keys were keyed on the path as typed (`subs/a.ipynb`)."""
    monkeypatch.chdir(tmp_path)
    junk(tmp_path / "subs", "a.ipynb", "b.ipynb")
    out = tmp_path / "03.csv"
    new = grade("subs", out)
    data = json.loads(out.with_suffix(".json").read_text())
    old = {"format": "labkit-gradebook/1", "fingerprint": data["fingerprint"], "settings": data["settings"],
           "submissions": {f"subs/{k}": {**{key: value for key, value in r.items()
                                            if key not in ("path", "fingerprint", "graded_at", "expected_lesson")},
                                         "submission": f"subs/{k}"}
                           for k, r in new.records.items()}}
    out.with_suffix(".json").write_text(json.dumps(old))
    again = grade("subs/a.ipynb", out)
    assert (again.reused, again.kept) == (1, 1)
    assert set(rows(out)) == {"a.ipynb", "subs/b.ipynb"}  # b keeps its old key until it is named
    assert grade("subs", out).reused == 2
    assert set(rows(out)) == {"a.ipynb", "b.ipynb"}


# --- one run at a time ----------------------------------------------------------------------


def test_a_second_run_on_a_gradebook_being_written_is_refused(tmp_path, book, capsys):
    junk(tmp_path / "other", "x.ipynb", "y.ipynb")
    seen = []

    def meanwhile(record):
        if seen:
            return
        seen.append(record["submission"])
        before = files_of(book)
        with pytest.raises(GradebookBusy, match=r"being written by another labkit run \(pid \d+"):
            grade(tmp_path / "subs", book)
        assert main(["grade", str(tmp_path / "subs"), "-o", str(book)]) == 1
        assert main(["merge", str(book), "-o", str(book)]) == 1
        assert "being written by another labkit run" in capsys.readouterr().err
        assert files_of(book) == before

    result = grade(tmp_path / "other", book, on_result=meanwhile)
    assert seen and result.graded == 2
    assert set(rows(book)) == {"a.ipynb", "b.ipynb", "x.ipynb", "y.ipynb"}


def test_the_lock_holds_across_processes(tmp_path, book):
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys\nfrom labkit.grading.gradebook import locked\n"
                               f"with locked({str(book)!r}):\n    print('locked', flush=True)\n    sys.stdin.read()"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline() == "locked\n"
        with pytest.raises(GradebookBusy, match=f"pid {holder.pid} "):
            grade(tmp_path / "subs", book)
    finally:
        holder.stdin.close()
        holder.wait(timeout=30)
    assert grade(tmp_path / "subs", book).reused == 2


# --- timeouts do not stick ------------------------------------------------------------------


def test_rows_that_ended_in_a_timeout_or_grader_error_are_graded_again(tmp_path):
    junk(tmp_path / "subs", "fine.ipynb", "timeout.ipynb", "grader_error.ipynb", "cell_timeout.ipynb")
    out = tmp_path / "03.csv"
    grade(tmp_path / "subs", out)

    def busy_machine(records):  # what an overloaded machine leaves behind
        records["timeout.ipynb"]["status"] = "timeout"
        records["grader_error.ipynb"]["status"] = "grader error"
        records["cell_timeout.ipynb"].update(status="ok", cells=[{"index": 3, "status": "timeout", "error": "slow"}])

    edit_json(out, busy_machine)
    again = grade(tmp_path / "subs", out)
    assert (again.graded, again.retried, again.reused) == (3, 3, 1)
    assert {r["status"] for r in again.records.values()} == {"not a notebook"}
    assert grade(tmp_path / "subs", out).graded == 0


# --- several machines -----------------------------------------------------------------------


def test_gradebooks_from_several_machines_merge_into_one(tmp_path, capsys):
    first, second = tmp_path / "machine1" / "subs", tmp_path / "machine2" / "subs"
    junk(first, "a.ipynb", "shared.ipynb")
    (first / "00_alice.ipynb").write_bytes((ROOT / "solutions" / "00_start_here.ipynb").read_bytes())
    junk(second, "b.ipynb", "shared.ipynb")
    book1, book2 = tmp_path / "machine1" / "03.csv", tmp_path / "machine2" / "03.csv"
    grade(first, book1)
    grade(second, book2)
    edit_json(book1, lambda r: r["shared.ipynb"].update(status="timeout"))  # machine 1 was overloaded
    final = tmp_path / "final" / "03.csv"
    junk(tmp_path / "earlier", "z.ipynb")
    grade(tmp_path / "earlier", final)

    assert main(["merge", str(book1), str(book2), "-o", str(final)]) == 0
    captured = capsys.readouterr()
    assert "4 added" in captured.out and "1 updated" in captured.out and "warning" not in captured.err
    merged = rows(final)
    assert set(merged) == {"a.ipynb", "b.ipynb", "shared.ipynb", "00_alice.ipynb", "z.ipynb"}
    assert merged["shared.ipynb"]["status"] == "not a notebook"  # the finished grading beats the timeout
    assert (merged["00_alice.ipynb"]["00.1"], merged["00_alice.ipynb"]["status"]) == ("1", "ok")
    summary = json.loads(final.with_suffix(".json").read_text())["summary"]
    assert [(s["exercise"], s["passed"]) for s in summary] == [("00.1", 1)]

    before = files_of(final)
    (tmp_path / "bad.json").write_text("{}")
    for bad in (tmp_path / "missing.csv", tmp_path / "bad.csv"):
        assert main(["merge", str(book1), str(bad), "-o", str(final)]) == 1
    assert files_of(final) == before
    assert (merge([book2], final).unchanged, len(rows(final))) == (2, 5)  # merging again adds nothing

    # The merged gradebook is an ordinary one: regrading a part on this machine reuses its rows.
    again = grade(second, final)
    assert (again.graded, again.reused, again.kept) == (0, 2, 3)


# --- fair rows ------------------------------------------------------------------------------


def test_a_link_that_leaves_the_folder_is_not_graded(tmp_path):
    subs = tmp_path / "subs"
    junk(subs, "a.ipynb")
    solution = ROOT / "solutions" / "03_circuit_breaker.ipynb"
    (subs / "cheat.ipynb").symlink_to(solution)
    (subs / "nested").mkdir()
    (subs / "nested" / "up.ipynb").symlink_to("../../elsewhere.ipynb")
    junk(tmp_path, "elsewhere.ipynb")
    (subs / "folder.ipynb").symlink_to(ROOT / "solutions")
    (subs / "alias.ipynb").symlink_to("a.ipynb")  # inside the folder: the same file, one row
    out = tmp_path / "03.csv"
    result = grade(subs, out)
    assert set(result.records) == {"a.ipynb", "cheat.ipynb", "nested/up.ipynb", "folder.ipynb"}
    for key in ("cheat.ipynb", "nested/up.ipynb", "folder.ipynb"):
        record = result.records[key]
        assert (record["status"], record["total"], record["exercises"]) == (LINK_OUTSIDE, 0, {}), key
        assert "outside the folder" in record["reason"]
    assert str(solution) in result.records["cheat.ipynb"]["reason"]
    # Named one by one (as a shell glob does), the link still leaves its folder.
    assert grade([subs / "cheat.ipynb"], tmp_path / "glob.csv").records["cheat.ipynb"]["status"] == LINK_OUTSIDE


def _with_big_outputs(nb, megabytes: int):
    """`nb` with `megabytes` of PNG outputs and widget state, as a notebook full of plots and sliders is."""
    nb = copy.deepcopy(nb)
    code = [c for c in nb.cells if c.cell_type == "code"][:6]
    image = base64.b64encode(os.urandom(megabytes * 2**20 * 3 // 4 // (len(code) + 1))).decode()
    for cell in code:
        cell.outputs = [nbformat.v4.new_output("display_data", data={"image/png": image, "text/plain": "<Figure>"})]
    nb.metadata["widgets"] = {"application/vnd.jupyter.widget-state+json": {
        "version_major": 2, "version_minor": 0, "state": {"x": {"model_name": "Big", "state": {"v": image}}}}}
    return nb


@pytest.fixture(scope="module")
def fair(tmp_path_factory):
    """A notebook heavy with outputs and one with its class renamed, graded in one batch."""
    folder = tmp_path_factory.mktemp("fair")
    subs = folder / "subs"
    subs.mkdir()
    solution = _read("solutions")
    nbformat.write(_with_big_outputs(solution, 50), subs / "big_outputs.ipynb")
    renamed = _edit(solution, "class CircuitBreaker", "class CircuitBreaker:", "class Breaker:")
    nbformat.write(renamed, subs / "renamed.ipynb")
    result = grade(subs, folder / "03.csv", jobs=2)
    return subs, result


def test_a_notebook_heavy_with_outputs_is_graded_on_its_code(fair):
    subs, result = fair
    assert (subs / "big_outputs.ipynb").stat().st_size > notebook.COPY_BYTES * 2  # 50 MB on disk
    record = result.records["big_outputs.ipynb"]
    assert record["status"] == "ok", record["reason"]
    assert record["total"] == record["max_total"] > 0
    assert len(record["sha256"]) == 64


def test_a_renamed_class_scores_zero_and_the_row_says_what_is_missing(fair):
    record = fair[1].records["renamed.ipynb"]
    assert (record["status"], record["points"]["03.1"]) == ("ok", 0)
    assert record["points"]["03.4"] == 1  # the rest of the notebook is still graded
    assert "03.1" in record["reason"] and "CircuitBreaker is not defined" in record["reason"]


def test_a_file_too_big_to_be_a_notebook_s_code_says_so(tmp_path, monkeypatch):
    code = tmp_path / "much_code.ipynb"
    nbformat.write(nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_code_cell("import labkit as lk\nx = 1  # " + "#" * notebook.MAX_CODE_BYTES)]), code)
    record = grade_notebook(code, limits=LIMITS).record
    assert record["status"] == "too big" and "too big to be a lesson notebook's code" in record["reason"]
    assert len(record["sha256"]) == 64

    huge = tmp_path / "huge.ipynb"
    nbformat.write(_with_big_outputs(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("x = 1")]), 2), huge)
    monkeypatch.setattr(notebook, "MAX_FILE_BYTES", 2**20)
    record = grade_notebook(huge, limits=LIMITS).record
    assert record["status"] == "too big"
    assert "over 1 MB: too big to be a notebook's code even with its outputs" in record["reason"]


def test_a_big_file_is_read_as_a_stream_to_the_same_code_cells(tmp_path, monkeypatch):
    """Files over COPY_BYTES are parsed by ijson as they are read; it must find what json.loads finds."""
    from labkit.grading.notebook import NotANotebook, read_submission

    odd = {"nbformat": 4, "metadata": {}, "cells": [
        "not a cell", {"cell_type": "markdown", "source": "# x"}, {"cell_type": "code", "source": ["a = 1\n", "b = 2"]},
        {"source": "c = 3", "cell_type": "code", "outputs": [{"data": {"text/plain": ["é → 😀"]}}]},
        {"cell_type": "code", "source": "first", "metadata": {"source": "not this"}, "source2": "x"}]}
    (tmp_path / "odd.ipynb").write_text(json.dumps(odd, ensure_ascii=False), encoding="utf-8")
    paths = [*sorted((ROOT / "solutions").glob("*.ipynb")), *sorted((ROOT / "lessons").glob("*.ipynb")),
             tmp_path / "odd.ipynb"]
    whole = {p: read_submission(p) for p in paths}
    monkeypatch.setattr(notebook, "COPY_BYTES", 0)
    for path in paths:
        streamed = read_submission(path)
        assert (streamed.cells, streamed.sha256) == (whole[path].cells, whole[path].sha256), path
        assert [c["source"] for c in json.loads(streamed.data)["cells"]] == [s for _, s in whole[path].cells]
    for content, reason in ((b"this is not JSON {", "not JSON"), (b'{"cells": "nope"}', "no list of cells"),
                            (b'{"worksheets": []}', "nbformat 3"), (b'{"cells": [] ', "not JSON"),
                            ("{\"cells\": [\"caf\xe9\"]}".encode("latin-1"), "not JSON")):
        (tmp_path / "bad.ipynb").write_bytes(content)
        with pytest.raises(NotANotebook, match=reason) as caught:
            read_submission(tmp_path / "bad.ipynb")
        assert caught.value.sha256 == hashlib.sha256(content).hexdigest()


def test_a_rerun_with_another_expected_lesson_grades_again(tmp_path):
    subs = tmp_path / "subs"
    junk(subs, "a.ipynb")
    nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell('lk.check("00.1", in_flight)')]),
                   subs / "00_mine.ipynb")
    out = tmp_path / "book.csv"
    grade(subs, out)
    again = grade(subs, out, expected_lesson="03")
    assert (again.graded, again.reused) == (2, 0)
    assert again.records["00_mine.ipynb"]["status"] == "wrong lesson"
    assert grade(subs, out, expected_lesson="03").reused == 2


def test_a_grading_run_writes_labkits_missing_or_stale_bytecode(tmp_path, monkeypatch):
    # Children start with -B and never write bytecode: without it each compiles labkit again.
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "fresh.py").write_text("X = 1\n")
    (package / "stale.py").write_text("X = 1\n")
    stale = importlib.util.cache_from_source(str(package / "stale.py"))
    monkeypatch.setattr("labkit.grading.sandbox._PACKAGE", str(package))
    compile_labkit()
    assert os.path.exists(stale)
    (package / "stale.py").write_text("X = 2  # edited\n")
    os.utime(package / "stale.py", (time.time() + 5, time.time() + 5))
    os.unlink(importlib.util.cache_from_source(str(package / "fresh.py")))
    folder = tmp_path / "class" / "s0"
    folder.mkdir(parents=True)
    (folder / "00_start_here.ipynb").write_bytes((ROOT / "solutions" / "00_start_here.ipynb").read_bytes())
    result = grade_batch([tmp_path / "class"], tmp_path / "book.csv", jobs=1, limits=LIMITS, progress=False)
    assert result.graded == 1
    assert os.path.exists(importlib.util.cache_from_source(str(package / "fresh.py")))
    with open(stale, "rb") as f:   # a timestamp pyc's header: magic, flags, then the source's mtime and size
        header = f.read(16)
    source = os.stat(package / "stale.py")
    assert int.from_bytes(header[8:12], "little") == int(source.st_mtime), "the stale bytecode was kept"
    assert int.from_bytes(header[12:16], "little") == source.st_size
