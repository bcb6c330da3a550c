"""`python -m benchmarks [NAME ...]`: run the benchmarks, print the table, write RESULTS.md.

Exit status: 0 when every budget that ran was met, 1 when one was missed or a benchmark
failed, 2 for a usage error. A benchmark that cannot run yet ("not run") does not fail.
"""
from __future__ import annotations

import argparse
import importlib
import sys
import time
import traceback
from pathlib import Path

from benchmarks import ORDER
from benchmarks.harness import (ERROR, FAIL, Context, Outcome, Row, load_average, log, machine,
                                results_markdown, speed_probe, text_table)

HERE = Path(__file__).resolve().parent


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", metavar="NAME", help=f"benchmarks to run (default: all): {', '.join(ORDER)}")
    parser.add_argument("--quick", action="store_true", help="fewer repeats: a smoke test, not numbers to quote")
    parser.add_argument("--profile", action="store_true",
                        help="run each benchmark under pyinstrument and print where its time went (in-process "
                             "work only: widget and engine; course, grading and memory wait on subprocesses)")
    parser.add_argument("-o", "--output", default=str(HERE / "RESULTS.md"),
                        help="where to write the results (default: benchmarks/RESULTS.md; '-' for nowhere)")
    args = parser.parse_args(argv)
    unknown = [n for n in args.names if n not in ORDER]
    if unknown:
        parser.error(f"unknown benchmark(s) {', '.join(unknown)}; choose from {', '.join(ORDER)}")
    selected = [n for n in ORDER if n in args.names] if args.names else list(ORDER)

    info = machine()
    ctx = Context(quick=args.quick)
    rows: list[Row] = []
    details: dict = {}
    t0 = time.perf_counter()
    for name in selected:
        module = importlib.import_module(f"benchmarks.bench_{name}")
        log(f"[{name}] {module.TITLE}")
        started = time.perf_counter()
        profiler = _profiler() if args.profile else None
        try:
            outcome = module.run(ctx)
        except Exception as exc:  # noqa: BLE001 - one broken benchmark must not hide the others' numbers
            traceback.print_exc()
            outcome = Outcome([Row(name, module.TITLE, "", "", "", ERROR, f"{type(exc).__name__}: {exc}")])
        if profiler is not None:
            profiler.stop()
            print(profiler.output_text(unicode=True, color=False), file=sys.stderr)
        probe = speed_probe()
        info[f"speed probe after {name}"] = probe
        log(f"[{name}] done in {time.perf_counter() - started:.0f} s (speed probe {probe})")
        rows += outcome.rows
        details[f"{name} ({module.TITLE})"] = outcome.details
    elapsed = time.perf_counter() - t0
    info["load average at end (1/5/15 min)"] = load_average()

    print(text_table(rows))
    missed = [r for r in rows if r.status in (FAIL, ERROR)]
    print(f"\n{'All budgets met.' if not missed else f'{len(missed)} budget(s) missed or errored.'}"
          + (" (--quick: few repeats, do not quote these numbers)" if args.quick else ""))
    if args.output != "-":
        if args.quick:
            info["note"] = "--quick run: few repeats, a smoke test; do not quote these numbers"
        Path(args.output).write_text(results_markdown(rows, details, info, selected, argv, elapsed), encoding="utf-8")
        print(f"Wrote {args.output}")
    return 1 if missed else 0


def _profiler():
    from pyinstrument import Profiler

    profiler = Profiler(interval=0.001)
    profiler.start()
    return profiler


if __name__ == "__main__":
    sys.exit(main())
