"""The `labkit` command line: `labkit assign solutions lessons` and friends (course tooling)."""
from __future__ import annotations

import argparse
import sys


def _assign(sub) -> None:
    parser = sub.add_parser("assign", help="generate learner notebooks from solution notebooks",
                            description="Write each solution notebook's lesson: solution code becomes `...`.")
    parser.add_argument("source", help="a solution notebook, or a directory of them (e.g. solutions)")
    parser.add_argument("dest", help="the lesson notebook, or a directory (e.g. lessons)")
    parser.set_defaults(run=lambda args: _run_assign(args.source, args.dest))


def _run_assign(source, dest) -> int:
    from labkit.assign import assign
    assign(source, dest)
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
    from labkit.grading.runner import OK, grade_notebook
    from labkit.grading.sandbox import kill_live_children

    limits = _limits(args)
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
        print(f"Cell {cell['index']} {cell['status']}: {cell.get('error', '')}")
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
                                        "per-exercise summary. A re-run skips notebooks already graded.")
    parser.add_argument("submissions", nargs="+", metavar="SUBMISSION", help="notebooks, or folders of them")
    parser.add_argument("-o", "--output", default="gradebook.csv", help="the CSV file (default gradebook.csv)")
    parser.add_argument("--jobs", "-j", type=int, default=1, metavar="N", help="notebooks graded at once")
    parser.add_argument("--lesson", metavar="NN", help="the lesson every submission should be; others get "
                                                       "the status 'wrong lesson'")
    parser.add_argument("--force", action="store_true", help="regrade notebooks that are already in the gradebook")
    _limit_options(parser)
    parser.set_defaults(run=_run_grade)


def _run_grade(args) -> int:
    from labkit.grading.gradebook import grade_batch, status_counts, summary_text

    result = grade_batch(args.submissions, args.output, jobs=args.jobs, limits=_limits(args),
                         expected_lesson=args.lesson, hidden=args.hidden, force=args.force,
                         progress=sys.stderr.isatty())
    print(summary_text(result.summary), end="")
    counts = ", ".join(f"{n} {status}" for status, n in sorted(status_counts(result.records.values()).items()))
    print(f"{len(result.records)} submissions ({counts}); {result.graded} graded now, {result.reused} unchanged "
          f"since the last run.")
    print(f"Wrote {result.csv_path}, {result.json_path} and {result.csv_path.with_suffix('.summary.txt')}")
    if result.interrupted:
        print("labkit grade: interrupted; the gradebook has every submission finished so far", file=sys.stderr)
        return 130
    return 0


# Subcommand name -> function adding its parser; each parser sets `run(args) -> exit code`.
# New subcommands (check, grade) add one function and one entry here.
SUBCOMMANDS = {
    "assign": _assign,
    "execute": _execute,
    "check": _check,
    "grade": _grade,
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
