"""Mutation testing of the exercise checks: mutate each solution's code mechanically, run its check on every mutant.

    python -m tests.mutants              every implementation exercise: score and surviving mutants
    python -m tests.mutants 03.1 02.4    only these exercises
    python -m tests.mutants --list 03.1  every mutant of 03.1 and its verdict

A check is the course's teacher: a mutant of the solution that still passes is a bug a learner
could leave with. For every implementation exercise (an answer that is a class or a function),
this takes the code the learner writes (between `# BEGIN SOLUTION` / `# END SOLUTION`, or on a
line ending `# SOLUTION`, in `solutions/NN_*.ipynb`), makes one small change at a time with an
AST mutator (a comparison flipped, a constant off by one, a statement removed, two adjacent
statements swapped, a branch dropped, `clock.now` replaced by the wall clock, ...), and runs the
exercise's check on it in this process (`labkit.checking.get(id).run(answer)`). A mutant is
killed when the check does not pass it. Survivors are either listed as equivalent in
`tests/mutants_equivalent.toml` (with the reason they do not change what the prompt asks for)
or are gaps in the check. `tests/test_mutants.py` fails when an exercise kills fewer than
95 % of its non-equivalent mutants.

Why a small AST mutator and not mutmut or cosmic-ray: both mutate `.py` files of an installed
package and run a test command per mutant (cosmic-ray in a subprocess each, mutmut through
trampolines in a copied source tree); the code under test here lives in notebook cells, only
the marked lines are the learner's, and the operators that matter most for these lessons (the
wall clock for `clock.now`, a reset removed, two statements swapped) are not among their
operators. Mutating the cell's AST in memory and judging it with the check in-process takes
no file copies and no subprocesses, so the whole run fits in `make test`.
"""
from __future__ import annotations

import argparse
import ast
import contextlib
import copy
import functools
import io
import json
import os
import pathlib
import sys
import time
from dataclasses import dataclass

ROOT = pathlib.Path(__file__).resolve().parent.parent
EQUIVALENT = ROOT / "tests" / "mutants_equivalent.toml"
TARGET = 0.95
CPU_LIMIT_S = 3.0    # per scenario: a mutant that loops forever is killed by the check's own time limit


@dataclass
class Mutant:
    """One small change to one exercise's solution cell."""

    exercise: str
    operator: str
    where: str       # Class.method (or function) the change is in
    before: str      # the statement (first line) before the change
    after: str       # the same statement after it
    source: str      # the whole mutated cell
    occurrence: int = 1   # the n-th mutant of the cell with this same name (two identical lines)

    @property
    def key(self) -> str:
        """A name that survives edits elsewhere in the cell: where, which operator, what became what."""
        name = f"{self.where}: {self.operator}: {self.before} => {self.after}"
        return name if self.occurrence == 1 else f"{name} (#{self.occurrence})"


# ---------------------------------------------------------------------------------------------
# Reading the solutions


def _notebook_cells(stem: str) -> list[dict]:
    nb = json.loads((ROOT / "solutions" / f"{stem}.ipynb").read_text())
    return [c for c in nb["cells"] if c["cell_type"] == "code"]


def _source(cell) -> str:
    src = cell["source"]
    return src if isinstance(src, str) else "".join(src)


def _runnable(source: str) -> str:
    return "\n".join("" if line.lstrip().startswith(("%", "!")) else line for line in source.splitlines())


def solution_lines(source: str) -> set[int]:
    """The 1-based line numbers the learner writes: inside BEGIN/END SOLUTION, or ending `# SOLUTION`."""
    lines, inside = set(), False
    for n, line in enumerate(source.splitlines(), 1):
        stripped = line.strip()
        if stripped == "# BEGIN SOLUTION":
            inside = True
        elif stripped == "# END SOLUTION":
            inside = False
        elif inside or stripped.endswith("# SOLUTION"):
            lines.add(n)
    return lines


@functools.lru_cache(maxsize=None)
def lesson_namespace(lesson) -> dict:
    """The solution notebook's names after running its code cells, as the grader's child does (no checks run)."""
    os.environ["LABKIT_GRADING_CHILD"] = "1"
    try:
        namespace = {"__name__": "__learner__"}
        with contextlib.redirect_stdout(io.StringIO()):
            for i, cell in enumerate(_notebook_cells(lesson.NOTEBOOK)):
                if "raises-exception" in cell.get("metadata", {}).get("tags", []):
                    continue
                exec(compile(_runnable(_source(cell)), f"<{lesson.NOTEBOOK} cell {i}>", "exec"), namespace)
        return namespace
    finally:
        del os.environ["LABKIT_GRADING_CHILD"]


def answer_cell(lesson, name: str) -> str | None:
    """The source of the solution cell that defines `name` as a class or function, or None."""
    for cell in _notebook_cells(lesson.NOTEBOOK):
        source = _source(cell)
        try:
            tree = ast.parse(_runnable(source))
        except SyntaxError:
            continue
        if any(isinstance(n, (ast.ClassDef, ast.FunctionDef)) and n.name == name for n in tree.body):
            return source
    return None


# ---------------------------------------------------------------------------------------------
# The mutator

_FLIP = {ast.Lt: (ast.LtE, ast.GtE), ast.LtE: (ast.Lt, ast.Gt), ast.Gt: (ast.GtE, ast.LtE),
         ast.GtE: (ast.Gt, ast.Lt), ast.Eq: (ast.NotEq,), ast.NotEq: (ast.Eq,), ast.Is: (ast.IsNot,),
         ast.IsNot: (ast.Is,), ast.In: (ast.NotIn,), ast.NotIn: (ast.In,)}
_ARITH = {ast.Add: (ast.Sub,), ast.Sub: (ast.Add,), ast.Mult: (ast.Div, ast.Add), ast.Div: (ast.Mult,),
          ast.FloorDiv: (ast.Div,), ast.Mod: (ast.FloorDiv,)}
_SYMBOL = {ast.Lt: "<", ast.LtE: "<=", ast.Gt: ">", ast.GtE: ">=", ast.Eq: "==", ast.NotEq: "!=", ast.Is: "is",
           ast.IsNot: "is not", ast.In: "in", ast.NotIn: "not in", ast.Add: "+", ast.Sub: "-", ast.Mult: "*",
           ast.Div: "/", ast.FloorDiv: "//", ast.Mod: "%", ast.And: "and", ast.Or: "or"}
_WALL_CLOCK = "__import__('time').time()"


def _first_line(node) -> str:
    try:
        return ast.unparse(node).splitlines()[0].strip()
    except Exception:  # noqa: BLE001 - an unparsable fragment still gets a name
        return type(node).__name__


class _Scope(ast.NodeVisitor):
    """For every node: the Class.method it sits in, and the statement that holds it."""

    def __init__(self):
        self.where: dict[int, str] = {}
        self.statement: dict[int, ast.stmt] = {}
        self._names: list[str] = []
        self._stmt: ast.stmt | None = None

    def generic_visit(self, node):
        if isinstance(node, ast.stmt):
            saved, self._stmt = self._stmt, node
        named = isinstance(node, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
        if named:
            self._names.append(node.name)
        self.where[id(node)] = ".".join(self._names) or "<cell>"
        self.statement[id(node)] = self._stmt if self._stmt is not None else node
        super().generic_visit(node)
        if named:
            self._names.pop()
        if isinstance(node, ast.stmt):
            self._stmt = saved


def _in(node, lines) -> bool:
    return getattr(node, "lineno", None) in lines


def mutations(source: str):
    """(operator, node path, change) for every single change the mutator makes to the learner's lines.

    A change is a function applied to a deep copy of the tree: it finds its node by position
    (the path of (field, index) steps from the root), so each mutant starts from the original.
    """
    tree = ast.parse(_runnable(source))
    lines = solution_lines(source)
    paths: dict[int, tuple] = {id(tree): ()}
    for parent in ast.walk(tree):
        for field, value in ast.iter_fields(parent):
            if isinstance(value, list):
                for i, child in enumerate(value):
                    if isinstance(child, ast.AST):
                        paths[id(child)] = paths[id(parent)] + ((field, i),)
            elif isinstance(value, ast.AST):
                paths[id(value)] = paths[id(parent)] + ((field, None),)
    out = []
    for node in ast.walk(tree):
        path = paths[id(node)]
        if not _in(node, lines):
            continue
        if isinstance(node, ast.Compare):
            for k, op in enumerate(node.ops):
                for new in _FLIP.get(type(op), ()):
                    out.append((f"comparison {_SYMBOL[type(op)]} -> {_SYMBOL[new]}", path,
                                lambda n, k=k, new=new: n.ops.__setitem__(k, new())))
        elif isinstance(node, ast.BinOp) and type(node.op) in _ARITH:
            for new in _ARITH[type(node.op)]:
                out.append((f"arithmetic {_SYMBOL[type(node.op)]} -> {_SYMBOL[new]}", path,
                            lambda n, new=new: setattr(n, "op", new())))
        elif isinstance(node, ast.AugAssign) and type(node.op) in _ARITH:
            new = _ARITH[type(node.op)][0]
            out.append((f"augmented {_SYMBOL[type(node.op)]}= -> {_SYMBOL[new]}=", path,
                        lambda n, new=new: setattr(n, "op", new())))
            out.append((f"augmented {_SYMBOL[type(node.op)]}= -> =", path, "augassign-to-assign"))
        elif isinstance(node, ast.BoolOp):
            new = ast.Or if isinstance(node.op, ast.And) else ast.And
            out.append((f"boolean {_SYMBOL[type(node.op)]} -> {_SYMBOL[new]}", path,
                        lambda n, new=new: setattr(n, "op", new())))
        elif isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
            out.append(("not dropped", path, "replace-with-operand"))
        elif isinstance(node, ast.Constant):
            if isinstance(node.value, bool):
                out.append((f"constant {node.value} -> {not node.value}", path,
                            lambda n: setattr(n, "value", not n.value)))
            elif isinstance(node.value, (int, float)):
                for delta in (1, -1):
                    out.append((f"constant {node.value!r} -> {node.value + delta!r}", path,
                                lambda n, d=delta: setattr(n, "value", n.value + d)))
        elif isinstance(node, ast.Attribute) and node.attr == "now" and isinstance(node.ctx, ast.Load):
            out.append(("clock.now -> the wall clock", path, "wall-clock"))
        elif isinstance(node, ast.If):
            out.append(("condition -> True", path, lambda n: setattr(n, "test", ast.Constant(True))))
            out.append(("condition -> False", path, lambda n: setattr(n, "test", ast.Constant(False))))
            if node.orelse:
                out.append(("else branch dropped", path, lambda n: setattr(n, "orelse", [])))
        elif isinstance(node, ast.Return) and node.value is not None:
            out.append(("return value -> None", path, lambda n: setattr(n, "value", None)))
        elif isinstance(node, ast.Subscript) and isinstance(node.slice, ast.Slice):
            out.append(("slice dropped", path, "replace-with-value"))
        # Statements in a body: remove one; swap it with the next one.
        if isinstance(node, ast.stmt) and path and path[-1][1] is not None:
            out.append(("statement removed", path, "remove"))
        if isinstance(node, ast.stmt) and path and path[-1][1] is not None:
            field, i = path[-1]
            parent = _follow(tree, path[:-1])
            body = getattr(parent, field)
            if i + 1 < len(body) and _in(body[i + 1], lines):
                out.append(("two statements swapped", path, "swap"))
    return tree, lines, out


def _follow(tree, path):
    node = tree
    for field, index in path:
        node = getattr(node, field) if index is None else getattr(node, field)[index]
    return node


def _apply(tree, path, change):
    """A mutated copy of `tree` (and the statement before/after, for the mutant's name)."""
    mutated = copy.deepcopy(tree)
    node = _follow(mutated, path)
    scope = _Scope()
    scope.visit(mutated)
    where = scope.where[id(node)]
    holder = scope.statement[id(node)]
    before = _first_line(holder)
    if callable(change):
        change(node)
    elif change in ("remove", "swap"):
        field, i = path[-1]
        parent = _follow(mutated, path[:-1])
        body = getattr(parent, field)
        if change == "remove":
            del body[i]
            if not body:
                body.append(ast.Pass())
            return mutated, where, before, "(removed)"
        body[i], body[i + 1] = body[i + 1], body[i]
        return mutated, where, before, f"(after: {_first_line(body[i])})"
    else:
        field, i = path[-1]
        parent = _follow(mutated, path[:-1])
        if change == "wall-clock":
            new = ast.parse(_WALL_CLOCK, mode="eval").body
        elif change == "replace-with-operand":
            new = node.operand
        elif change == "replace-with-value":
            new = node.value
        elif change == "augassign-to-assign":
            new = ast.Assign(targets=[node.target], value=node.value, lineno=node.lineno)
            new.target = node.target
        else:  # pragma: no cover - every change is named above
            raise ValueError(change)
        if i is None:
            setattr(parent, field, new)
        else:
            getattr(parent, field)[i] = new
    ast.fix_missing_locations(mutated)
    after = _first_line(holder) if callable(change) or holder is not node else _first_line(new)
    return mutated, where, before, after


def mutants_of(exercise_id: str, source: str) -> list[Mutant]:
    """Every mutant of one exercise's solution cell, with duplicates (same code) dropped."""
    tree, _, changes = mutations(source)
    original = ast.unparse(tree)
    seen, names, out = {original}, {}, []
    for operator, path, change in changes:
        mutated, where, before, after = _apply(tree, path, change)
        code = ast.unparse(mutated)
        if code in seen:
            continue
        seen.add(code)
        mutant = Mutant(exercise_id, operator, where, before, after, code)
        names[mutant.key] = names.get(mutant.key, 0) + 1
        mutant.occurrence = names[mutant.key]
        out.append(mutant)
    return out


# ---------------------------------------------------------------------------------------------
# Judging


def implementation_exercises():
    """(exercise, lesson, solution cell) for every exercise whose answer is a class or a function."""
    from labkit import checking, lessons

    out = []
    for lesson in lessons.discover():
        for exercise in checking.all_exercises():
            if exercise.id.split(".")[0] != lesson.NUMBER:
                continue
            cell = answer_cell(lesson, exercise.answer_name)
            if cell is not None:
                out.append((exercise, lesson, cell))
    return out


def load_equivalent() -> dict[str, dict[str, str]]:
    """{exercise id: {mutant key: why it is equivalent}} from tests/mutants_equivalent.toml."""
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib  # type: ignore[no-redef]
    data = tomllib.loads(EQUIVALENT.read_text()) if EQUIVALENT.exists() else {}
    out: dict[str, dict[str, str]] = {}
    for entry in data.get("equivalent", []):
        out.setdefault(entry["exercise"], {})[entry["mutant"]] = entry["reason"]
    return out


@dataclass
class Verdict:
    mutant: Mutant
    status: str          # the check's status: passed means the mutant survived
    message: str         # the first failed scenario's message
    seconds: float


def judge(exercise, namespace: dict, mutant: Mutant) -> Verdict:
    """Run the exercise's check (hidden scenarios included) on one mutant, stopping at its first failure."""
    ns = dict(namespace)
    start = time.perf_counter()
    try:
        exec(compile(mutant.source, f"<mutant of {exercise.id}>", "exec"), ns)
    except Exception as exc:  # noqa: BLE001 - a mutant that does not even define its class is killed
        return Verdict(mutant, "failed", f"the mutated cell raised {type(exc).__name__}: {exc}", 0.0)
    from labkit.checking import LocalContext

    with contextlib.redirect_stdout(io.StringIO()):
        report = exercise.run(ns[exercise.answer_name], include_hidden=True, stop_at_first_failure=True,
                              ctx_factory=lambda: LocalContext(cpu_limit_s=CPU_LIMIT_S))
    failed = [r for r in report.results if not r.passed]
    return Verdict(mutant, report.status, failed[0].message if failed else "", time.perf_counter() - start)


_WORK: dict = {}   # what a forked worker judges: set before the pool forks, so nothing is pickled but the index


def _judge_index(i: int):
    v = judge(_WORK["exercise"], _WORK["namespace"], _WORK["mutants"][i])
    return v.status, v.message, v.seconds


def score(exercise, lesson, cell, *, verbose: bool = False, jobs: int = 1) -> dict:
    """Run every mutant of one exercise (in `jobs` forked processes); returns its score, survivors and timing."""
    namespace = lesson_namespace(lesson)
    equivalent = load_equivalent().get(exercise.id, {})
    mutants = mutants_of(exercise.id, cell)
    start = time.perf_counter()
    if jobs > 1 and len(mutants) > 1:
        import multiprocessing

        _WORK.update(exercise=exercise, namespace=namespace, mutants=mutants)
        with multiprocessing.get_context("fork").Pool(jobs) as pool:
            judged = pool.map(_judge_index, range(len(mutants)), chunksize=1)
        verdicts = [Verdict(m, *j) for m, j in zip(mutants, judged)]
    else:
        verdicts = [judge(exercise, namespace, m) for m in mutants]
    survivors, killed, marked, errors, stale = [], 0, [], [], set(equivalent)
    for verdict in verdicts:
        mutant = verdict.mutant
        if verdict.status == "passed":
            if mutant.key in equivalent:
                marked.append(mutant)
                stale.discard(mutant.key)
            else:
                survivors.append(mutant)
        else:
            killed += 1
            if verdict.status == "error":
                errors.append(verdict)
        if verbose:
            print(f"  [{verdict.status:>13}] {verdict.seconds:5.2f}s {mutant.key}")
            if verdict.message and verbose > 1:
                print("      " + verdict.message.splitlines()[0][:150])
    non_equivalent = len(mutants) - len(marked)
    return dict(exercise=exercise.id, mutants=len(mutants), equivalent=len(marked), killed=killed,
                score=killed / non_equivalent if non_equivalent else 1.0, survivors=survivors, errors=errors,
                stale_equivalents=sorted(stale), seconds=time.perf_counter() - start, verdicts=verdicts)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.mutants", description=__doc__.splitlines()[0])
    parser.add_argument("exercises", nargs="*", help="exercise ids (default: every implementation exercise)")
    parser.add_argument("--list", action="count", default=0,
                        help="print every mutant and its verdict (twice: with the check's message)")
    parser.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1), help="processes (default: 2)")
    parser.add_argument("--json", metavar="PATH", help="also write the scores as JSON (for tests/test_mutants.py)")
    args = parser.parse_args(argv)
    worst, total_start, rows = 1.0, time.perf_counter(), []
    for exercise, lesson, cell in implementation_exercises():
        if args.exercises and exercise.id not in args.exercises:
            continue
        print(f"{exercise.id} {exercise.title}", flush=True)
        s = score(exercise, lesson, cell, verbose=args.list, jobs=args.jobs)
        worst = min(worst, s["score"])
        print(f"  {s['killed']}/{s['mutants'] - s['equivalent']} non-equivalent mutants killed "
              f"({100 * s['score']:.1f} %), {s['equivalent']} equivalent, {s['seconds']:.1f} s")
        for m in s["survivors"]:
            print(f"  SURVIVED {m.key}")
        for v in s["errors"]:
            print(f"  CHECKER ERROR {v.mutant.key}\n      {v.message.splitlines()[0]}")
        for key in s["stale_equivalents"]:
            print(f"  listed as equivalent but not a surviving mutant any more: {key}")
        rows.append(dict(exercise=s["exercise"], mutants=s["mutants"], equivalent=s["equivalent"], killed=s["killed"],
                         score=s["score"], seconds=s["seconds"], survivors=[m.key for m in s["survivors"]],
                         errors=[[v.mutant.key, v.message] for v in s["errors"]],
                         stale_equivalents=s["stale_equivalents"]))
    print(f"total {time.perf_counter() - total_start:.1f} s; lowest score {100 * worst:.1f} % "
          f"(target {100 * TARGET:.0f} %)")
    if args.json:
        pathlib.Path(args.json).write_text(json.dumps(rows, indent=1))
    return 0 if worst >= TARGET else 1


if __name__ == "__main__":
    sys.exit(main())
