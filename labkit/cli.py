"""The `labkit` command line: `labkit assign solutions lessons` and friends (course tooling)."""
from __future__ import annotations

import argparse
import sys


def _assign(sub) -> None:
    parser = sub.add_parser("assign", help="generate learner notebooks from solution notebooks",
                            description="Write each solution notebook's lesson: solution code becomes `...`.")
    parser.add_argument("source", help="a solution notebook, or a directory of them (e.g. solutions)")
    parser.add_argument("dest", help="the lesson notebook, or a directory (e.g. lessons)")
    parser.add_argument("--force", action="store_true",
                        help="also replace lessons whose cells were edited since they were generated "
                             "(each is kept first as NAME.edited-DATE.ipynb)")
    parser.set_defaults(run=lambda args: _run_assign(args.source, args.dest, args.force))


def _run_assign(source, dest, force: bool = False) -> int:
    from labkit.assign import assign
    assign(source, dest, force=force)
    return 0


def _execute(sub) -> None:
    parser = sub.add_parser("execute", help="run notebooks and store their outputs in place",
                            description="Execute each notebook top to bottom and save it with its outputs.")
    parser.add_argument("notebooks", nargs="+", help="notebooks to execute (e.g. solutions/*.ipynb)")
    parser.add_argument("--timeout", type=float, default=120, help="seconds allowed per cell (default 120)")

    def run(args):
        from labkit.assign import execute
        execute(args.notebooks, args.timeout)
        return 0

    parser.set_defaults(run=run)


def _limit_options(parser) -> None:
    parser.add_argument("--timeout", type=float, default=60.0, metavar="S",
                        help="CPU seconds for all of the notebook's cells, per submission (default 60)")
    parser.add_argument("--exercise-timeout", type=float, default=30.0, metavar="S",
                        help="CPU seconds for one exercise's checks, each exercise its own (default 30)")
    parser.add_argument("--call-timeout", type=float, default=10.0, metavar="S",
                        help="CPU seconds for one call into the learner's code, e.g. one method (default 10)")
    parser.add_argument("--cell-timeout", type=float, default=30.0, metavar="S",
                        help="CPU seconds for one notebook cell (default 30); every limit also has a "
                             "wall-clock backstop of 3 x the limit + 10 s, for code that sleeps")
    parser.add_argument("--memory", type=int, default=1024, metavar="MB",
                        help="address-space limit of the notebook's process (default 1024)")
    parser.add_argument("--hidden", metavar="DIR",
                        help="a folder of hidden-test files (*.py) that add hidden scenarios")


def _limits(args):
    from labkit.grading.sandbox import Limits
    return Limits(timeout_s=args.timeout, call_timeout_s=args.call_timeout, cell_timeout_s=args.cell_timeout,
                  exercise_timeout_s=args.exercise_timeout, memory_mb=args.memory)


def _check(sub) -> None:
    parser = sub.add_parser("check", help="grade one notebook exactly as the grader does, and print the verdicts",
                            description="Run NOTEBOOK in the grader's sandbox and print each exercise's verdict "
                                        "and the score. Exit code 0 when every exercise passed, 1 otherwise.")
    parser.add_argument("notebook", help="a .ipynb file")
    _limit_options(parser)
    parser.set_defaults(run=_run_check)


def _run_check(args) -> int:
    import threading

    from labkit.grading.gradebook import hidden_tests
    from labkit.grading.notebook import cell_name
    from labkit.grading.runner import OK, grade_notebook
    from labkit.grading.sandbox import compile_labkit, kill_live_children

    limits = _limits(args)
    compile_labkit()
    box: dict = {}
    with hidden_tests(args.hidden):
        # Grade in a worker thread, so Ctrl-C reaches this one and can stop the sandboxed child.
        worker = threading.Thread(target=lambda: box.update(graded=grade_notebook(args.notebook, limits=limits)),
                                  daemon=True)
        worker.start()
        try:
            while worker.is_alive():
                worker.join(0.2)
        except KeyboardInterrupt:
            kill_live_children()
            print("labkit check: interrupted", file=sys.stderr)
            return 130
    graded = box["graded"]
    record = graded.record
    for report in graded.reports:
        print(report.text())
        print()
    for cell in record.get("cells", []):
        print(f"{cell_name(cell['index']).capitalize()} {cell['status']}: {cell.get('error', '')}")
    if record.get("cells"):
        print()
    if record["status"] != OK:
        print(f"Status: {record['status']}" + (f" ({record['reason']})" if record.get("reason") else ""))
    score = f"Score: {record['total']:g}/{record['max_total']:g}"
    if record.get("max_hidden"):
        score += f" (public {record['public']:g}/{record['max_public']:g}, hidden {record['hidden']:g}/" \
                 f"{record['max_hidden']:g})"
    print(score)
    passed = record["status"] == OK and graded.reports and all(r.status == "passed" for r in graded.reports)
    return 0 if passed else 1


def _grade(sub) -> None:
    parser = sub.add_parser("grade", help="grade many notebooks into a CSV gradebook",
                            description="Grade each submission in its own sandboxed process and write a CSV "
                                        "gradebook, a JSON file with every check's verdict next to it, and a "
                                        "per-exercise summary. A run adds rows and updates the rows of the "
                                        "notebooks it names; every other row is kept. A re-run skips notebooks "
                                        "already graded, except those whose grading timed out or failed.")
    parser.add_argument("submissions", nargs="+", metavar="SUBMISSION", help="notebooks, or folders of them")
    parser.add_argument("-o", "--output", default="gradebook.csv", help="the CSV file (default gradebook.csv)")
    parser.add_argument("--jobs", "-j", type=int, default=1, metavar="N", help="notebooks graded at once")
    parser.add_argument("--lesson", metavar="NN", help="the lesson every submission should be; others get "
                                                       "the status 'wrong lesson'")
    parser.add_argument("--force", action="store_true", help="regrade the named notebooks even when unchanged")
    parser.add_argument("--prune", action="store_true",
                        help="drop the rows of notebooks this run does not name (by default they are kept)")
    _limit_options(parser)
    parser.set_defaults(run=_run_grade)


def _cpus() -> int:
    import os
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def _run_grade(args) -> int:
    from labkit.grading.gradebook import grade_batch, status_counts, summary_text

    if args.jobs > _cpus():
        print(f"labkit grade: warning: --jobs {args.jobs} is more than the {_cpus()} CPUs here; correct code may "
              "miss its time limits (those rows are graded again on the next run)", file=sys.stderr)
    result = grade_batch(args.submissions, args.output, jobs=args.jobs, limits=_limits(args),
                         expected_lesson=args.lesson, hidden=args.hidden, force=args.force, prune=args.prune,
                         progress=sys.stderr.isatty())
    print(summary_text(result.summary), end="")
    counts = ", ".join(f"{n} {status}" for status, n in sorted(status_counts(result.records.values()).items()))
    print(f"{len(result.records)} submissions ({counts}); {result.graded} graded now"
          + (f" ({result.retried} again after a timeout or grader error)" if result.retried else "")
          + f", {result.reused} unchanged since the last run.")
    if result.kept:
        stale = (f"; {result.kept_stale} of them were graded with other code, limits or hidden tests"
                 if result.kept_stale else "")
        print(f"Kept {result.kept} rows of earlier runs that this run did not name{stale} (--prune drops them).")
    if result.pruned:
        print(f"Dropped {result.pruned} rows that this run did not name (--prune).")
    still = sum(r.get("status") in ("timeout", "grader error") for r in result.records.values())
    if still:
        print(f"{still} rows ended in a timeout or grader error; run the same command again to grade them again.")
    print(f"Wrote {result.csv_path}, {result.json_path} and {result.csv_path.with_suffix('.summary.txt')}")
    if result.interrupted:
        print("labkit grade: interrupted; the gradebook has every submission finished so far", file=sys.stderr)
        return 130
    return 0


def _merge(sub) -> None:
    parser = sub.add_parser("merge", help="merge gradebooks (e.g. from several machines) into one",
                            description="Add the rows of each GRADEBOOK (a CSV written by `labkit grade`, with "
                                        "its JSON next to it) to the OUTPUT gradebook, keeping the rows OUTPUT "
                                        "has. When two have a row for one notebook, a finished grading beats a "
                                        "timeout or grader error, and then the later grading wins.")
    parser.add_argument("gradebooks", nargs="+", metavar="GRADEBOOK", help="CSV gradebooks to merge")
    parser.add_argument("-o", "--output", required=True, help="the merged CSV gradebook (created or added to)")
    parser.set_defaults(run=_run_merge)


def _run_merge(args) -> int:
    from labkit.grading.gradebook import merge, status_counts, summary_text

    result = merge(args.gradebooks, args.output)
    print(summary_text(result.summary), end="")
    counts = ", ".join(f"{n} {status}" for status, n in sorted(status_counts(result.records.values()).items()))
    print(f"{len(result.records)} submissions ({counts}); {result.added} added, {result.updated} updated, "
          f"{result.unchanged} already there.")
    if result.conflicts:
        shown = ", ".join(result.conflicts[:5]) + (" ..." if len(result.conflicts) > 5 else "")
        print(f"labkit merge: warning: {len(result.conflicts)} rows were different notebooks in different "
              f"gradebooks; the later grading was kept: {shown}", file=sys.stderr)
    if result.fingerprints > 1:
        print("labkit merge: warning: the rows were graded with different labkit code, limits or hidden tests; "
              "grade every part with the same checkout and options, or regrade with --force", file=sys.stderr)
    print(f"Wrote {result.csv_path}, {result.json_path} and {result.csv_path.with_suffix('.summary.txt')}")
    return 0


# Subcommand name -> function adding its parser; each parser sets `run(args) -> exit code`.
# New subcommands (check, grade) add one function and one entry here.
def _new(sub) -> None:
    parser = sub.add_parser("new", help="start a new lesson: its labkit package and its solution notebook",
                            description="Write labkit/lessons/TOPIC/ (model, panel, exercises) and "
                                        "solutions/NN_TOPIC.ipynb with the seven sections, all runnable. "
                                        "Then: make execute (stores outputs, generates the lesson) and make test.")
    parser.add_argument("number", help="the lesson's two-digit number, e.g. 04")
    parser.add_argument("topic", help="its topic as a Python name, e.g. bulkhead (the notebook calls lk.TOPIC.play())")
    parser.add_argument("--title", help="its title (default: the topic)")

    def run(args):
        from labkit.scaffold import ROOT, new_lesson
        for path in new_lesson(args.number, args.topic, args.title):
            print(f"wrote {path.relative_to(ROOT)}")
        return 0

    parser.set_defaults(run=run)


SUBCOMMANDS = {
    "new": _new,
    "assign": _assign,
    "execute": _execute,
    "check": _check,
    "grade": _grade,
    "merge": _merge,
}


def main(argv=None) -> int:
    """Entry point of the `labkit` console script."""
    parser = argparse.ArgumentParser(prog="labkit", description="Tools for the Scaling Patterns course.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in SUBCOMMANDS.values():
        add(sub)
    args = parser.parse_args(argv)
    try:
        return args.run(args)
    except (ValueError, OSError) as error:
        print(f"labkit {args.command}: error: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
