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


# Subcommand name -> function adding its parser; each parser sets `run(args) -> exit code`.
# New subcommands (check, grade) add one function and one entry here.
SUBCOMMANDS = {
    "assign": _assign,
    "execute": _execute,
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
