"""Reading the course's notebooks: their code cells, and headless execution with nbclient."""
from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from benchmarks.harness import ROOT

LESSONS, SOLUTIONS = ROOT / "lessons", ROOT / "solutions"


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
