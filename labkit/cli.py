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


# Subcommand name -> function adding its parser; each parser sets `run(args) -> exit code`.
# New subcommands (check, grade) add one function and one entry here.
SUBCOMMANDS = {
    "assign": _assign,
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
