"""Reading the course's notebooks: the Play calls in their code cells, and headless execution with nbclient."""
from __future__ import annotations

import ast
import builtins
import json
import os
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks.harness import ROOT

LESSONS, SOLUTIONS = ROOT / "lessons", ROOT / "solutions"
LABKIT_ALIASES = ("lk", "labkit")


def notebooks(folder: Path) -> list[Path]:
    """The course notebooks of a folder, in reading order (NN_name.ipynb)."""
    return sorted(p for p in folder.glob("[0-9][0-9]_*.ipynb"))


def kernel_env() -> None:
    """Let kernels and subprocesses import labkit from this checkout even when it is not pip-installed."""
    paths = os.environ.get("PYTHONPATH", "").split(os.pathsep)
    if str(ROOT) not in paths:
        os.environ["PYTHONPATH"] = os.pathsep.join([str(ROOT)] + [p for p in paths if p])
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))


def code_cells(path: Path) -> list[tuple[int, str, str | None]]:
    """(cell index, source, section heading) of every code cell; the heading is the last `## ` above it."""
    nb = json.loads(path.read_text(encoding="utf-8"))
    out, section = [], None
    for i, cell in enumerate(nb["cells"]):
        source = "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]
        if cell["cell_type"] == "markdown":
            for line in source.splitlines():
                if line.startswith("## "):
                    section = line[3:].strip()
        elif cell["cell_type"] == "code":
            out.append((i, source, section))
    return out


def _python(source: str) -> str:
    """A cell's source without IPython magics and shell escapes, so `ast` and `exec` accept it."""
    return "\n".join("" if line.lstrip().startswith(("%", "!")) else line for line in source.splitlines())


@dataclass
class PlayCall:
    """One `lk.play(run, show, **knobs)` call found in a notebook's code cell."""

    notebook: Path
    cell: int
    run_src: str
    show_src: str
    knobs: dict = field(default_factory=dict)       # name -> literal spec (tuple, list, bool)
    knob_src: dict = field(default_factory=dict)    # name -> source of a non-literal spec (a widget)

    @property
    def label(self) -> str:
        return f"{self.notebook.stem}: {self.run_src.split('.')[-1]}"


def _is_play(func: ast.expr) -> bool:
    if isinstance(func, ast.Attribute):
        return func.attr == "play" and isinstance(func.value, ast.Name) and func.value.id in LABKIT_ALIASES
    return isinstance(func, ast.Name) and func.id == "play"


def find_play_calls(folder: Path = SOLUTIONS) -> list[PlayCall]:
    """Every Play call in the code cells of the folder's notebooks, parsed with `ast`."""
    found = []
    for path in notebooks(folder):
        for index, source, _ in code_cells(path):
            try:
                tree = ast.parse(_python(source))
            except SyntaxError:
                continue
            for node in ast.walk(tree):
                if not (isinstance(node, ast.Call) and _is_play(node.func)):
                    continue
                args = list(node.args)
                kw = {k.arg: k.value for k in node.keywords if k.arg}
                run = args[0] if args else kw.pop("run", None)
                show = args[1] if len(args) > 1 else kw.pop("show", None)
                if run is None or show is None:
                    raise ValueError(f"{path.name} cell {index}: lk.play needs run and show, got {ast.unparse(node)}")
                call = PlayCall(path, index, ast.unparse(run), ast.unparse(show))
                for name, value in kw.items():
                    try:
                        call.knobs[name] = ast.literal_eval(value)
                    except ValueError:
                        call.knob_src[name] = ast.unparse(value)
                found.append(call)
    return found


def _bound_names(source: str) -> set[str]:
    """Names a cell binds at top level: defs, classes, assignments, imports."""
    try:
        tree = ast.parse(_python(source))
    except SyntaxError:
        return set()
    names = set()
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names.update((a.asname or a.name).split(".")[0] for a in node.names)
        elif isinstance(node, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for t in targets:
                names.update(n.id for n in ast.walk(t) if isinstance(n, ast.Name))
    return names


def _free_names(*sources: str) -> set[str]:
    names = set()
    for src in sources:
        names.update(n.id for n in ast.walk(ast.parse(src, mode="eval")) if isinstance(n, ast.Name))
    return names - set(dir(builtins))


def namespace_for(call: PlayCall) -> dict:
    """The notebook's namespace as the Play cell sees it: the Setup cells, then any earlier cell that
    defines a name the call uses (a notebook-defined run or show function)."""
    ns: dict = {"__name__": "__notebook__"}
    cells = [(i, src, sec) for i, src, sec in code_cells(call.notebook) if i < call.cell]
    executed = set()

    def execute(index, source):
        exec(compile(_python(source), f"<{call.notebook.name} cell {index}>", "exec"), ns)
        executed.add(index)

    for index, source, section in cells:
        if section == "Setup":
            execute(index, source)
    needed = _free_names(call.run_src, call.show_src, *call.knob_src.values()) - set(ns)
    for index, source, _ in cells:
        if needed and index not in executed and needed & _bound_names(source):
            execute(index, source)
            needed -= set(ns)
    if needed:
        raise ValueError(f"{call.notebook.name} cell {call.cell}: could not find where {sorted(needed)} "
                         "is defined in the cells above the Play call")
    return ns


# ---------------------------------------------------------------------------------------------
# Headless execution

PEAK_RSS_CELL = """\
import json as _json, resource as _resource, sys as _sys
_peak = _resource.getrusage(_resource.RUSAGE_SELF).ru_maxrss
print(_json.dumps({"peak_rss_bytes": _peak if _sys.platform == "darwin" else _peak * 1024}))
"""


@dataclass
class Execution:
    """One headless run of a notebook."""

    path: Path
    wall_s: float                 # kernel start to kernel shutdown, what CI pays
    cells_s: float                # the sum of the cells' own execution times (kernel start excluded)
    peak_rss_bytes: int | None = None
    error: str | None = None


def execute(path: Path, *, peak_rss: bool = False, timeout_s: int = 300) -> Execution:
    """Run a notebook top to bottom in a fresh kernel (cwd = its folder), as nbval and CI do.

    With `peak_rss`, a last cell asks the kernel for its own peak resident memory.
    """
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError, CellTimeoutError, DeadKernelError

    kernel_env()
    nb = nbformat.read(path, as_version=4)
    if peak_rss:
        nb.cells.append(nbformat.v4.new_code_cell(PEAK_RSS_CELL))
    client = NotebookClient(nb, timeout=timeout_s, startup_timeout=120, kernel_name="python3",
                            resources={"metadata": {"path": str(path.parent)}})
    t0 = time.perf_counter()
    # The kernel's own stderr (start-up notices) goes to a scratch file, quoted only if the run fails.
    with tempfile.TemporaryFile(mode="w+") as kernel_log:
        try:
            client.execute(stderr=kernel_log)
            error = None
        except (CellExecutionError, CellTimeoutError, DeadKernelError, RuntimeError) as exc:
            kernel_log.seek(0)
            tail = kernel_log.read().strip().splitlines()[-3:]
            error = f"{type(exc).__name__}: {str(exc).strip().splitlines()[-1] if str(exc).strip() else ''}"
            error += f" (kernel stderr: {' | '.join(tail)})" if tail else ""
    wall = time.perf_counter() - t0
    run = Execution(path, wall, _cells_seconds(nb), error=error)
    if peak_rss and error is None:
        for out in nb.cells[-1].get("outputs", []):
            if out.get("name") == "stdout" and "peak_rss_bytes" in out.get("text", ""):
                run.peak_rss_bytes = json.loads(out["text"].strip().splitlines()[-1])["peak_rss_bytes"]
    return run


def _cells_seconds(nb) -> float:
    from datetime import datetime

    total = 0.0
    for cell in nb.cells:
        timing = cell.get("metadata", {}).get("execution", {})
        start, end = timing.get("iopub.execute_input"), timing.get("shell.execute_reply")
        if start and end:
            parse = lambda s: datetime.fromisoformat(s.replace("Z", "+00:00"))  # noqa: E731
            total += (parse(end) - parse(start)).total_seconds()
    return total
