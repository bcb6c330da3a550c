"""Every notebook, run top to bottom in a real JupyterLab in a real (headless) Chromium.

What a learner would see is what is asserted: no error output, every widget and figure and
mermaid diagram rendered, every check's verdict ("not attempted" in lessons/, "All checks
passed" in solutions/); in lessons/, moving a Play knob with the keyboard re-draws the table
and the figure, and a hints button reveals a hint. A failing test names a screenshot and a
text dump under artifacts/browser/; a passing one leaves a screenshot there too.
"""
from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "artifacts" / "browser"
LESSONS = sorted(p.stem for p in (ROOT / "lessons").glob("*.ipynb"))
SOLUTIONS = sorted(p.stem for p in (ROOT / "solutions").glob("*.ipynb"))

pytestmark = pytest.mark.browser

KERNEL_READY_TIMEOUT_MS = 90_000   # the first kernel of a session may build matplotlib's font cache
RUN_ALL_TIMEOUT_MS = 180_000
RENDER_TIMEOUT_MS = 30_000         # widget views, images and mermaid render after the cells finish
KNOB_TIMEOUT_MS = 20_000
KNOB_PRESSES = 2

# A lesson's `lk.breaker.play(` (or a bare `lk.play(`); figures from `lk.breaker.plot(` or `lk.plot_x(`.
PLAY = re.compile(r"\blk\.(?:\w+\.)?play\(")
HINTS = re.compile(r"\blk\.(?:\w+\.)?hints\(")
CHECK = re.compile(r"\blk\.(?:\w+\.)?check\(")
DRAWS = re.compile(r"\blk\.(?:\w+\.)?(?:play|plot\w*)\(")
MERMAID = re.compile(r"^```mermaid\s*$", re.MULTILINE)
VERDICT = {"lessons": "not attempted", "solutions": "All checks passed"}

# Installed in the page once the notebook is open: reads JupyterLab's own models (cells,
# outputs, kernel) and the DOM the learner sees, so assertions need no fragile selectors
# for cell boundaries.
HELPERS_JS = r"""
() => {
  const panel = () => window.jupyterapp.shell.currentWidget;
  const kernel = () => { const s = panel().sessionContext.session; return s && s.kernel; };
  const snapshot = () => {
    const cells = panel().content.widgets.map((cell, i) => {
      cell.node.setAttribute('data-lt-index', String(i));
      const m = cell.model, info = {i, type: m.type};
      if (m.type === 'markdown') {
        info.mermaidOk = cell.node.querySelectorAll('.jp-RenderedMermaid figure img, .jp-RenderedMermaid svg').length;
        // A diagram that fails to parse keeps its source, and the error in a collapsed <details>.
        info.mermaidBad = Array.from(cell.node.querySelectorAll('.jp-RenderedMermaid.jp-mod-warning'))
          .map(e => { const pre = e.querySelector('details > pre'); return (pre ? pre.textContent : e.innerText).slice(0, 400); });
        return info;
      }
      if (m.type !== 'code') return info;
      info.executionCount = m.executionCount;
      info.executionState = m.executionState;
      info.outputs = [];
      for (let j = 0; j < m.outputs.length; j++) {
        const o = m.outputs.get(j).toJSON();
        info.outputs.push({type: o.output_type, ename: o.ename || null, evalue: o.evalue || null});
      }
      const area = cell.node.querySelector('.jp-Cell-outputArea') || cell.node;
      info.stderr = Array.from(area.querySelectorAll(
        '.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stderr"]')).map(e => e.innerText.slice(0, 2000));
      info.text = area.innerText.slice(0, 4000);
      info.widgets = area.querySelectorAll('.jupyter-widgets').length;
      info.images = Array.from(area.querySelectorAll('img')).map(
        img => ({complete: img.complete, width: img.naturalWidth, height: img.naturalHeight}));
      info.tables = Array.from(area.querySelectorAll('table.labkit-table')).map(t => t.innerText);
      info.emptySelects = Array.from(area.querySelectorAll('select')).filter(s => s.selectedIndex < 0).length;
      return info;
    });
    const k = kernel();
    return {kernel: k ? {status: k.status, connection: k.connectionStatus} : null, run: window.__lt_run, cells};
  };
  // Everything that renders after execution has rendered: flags[i] says what cell i needs.
  const settled = (flags) => {
    const s = snapshot();
    return s.cells.every(c => {
      const f = flags[c.i] || {};
      if (c.type === 'markdown') return !f.mermaid || c.mermaidOk > 0 || c.mermaidBad.length > 0;
      if (c.type !== 'code') return true;
      if (/Loading widget/.test(c.text)) return false;
      if (f.widget && c.executionCount !== null && c.widgets === 0 && !c.outputs.some(o => o.type === 'error')) return false;
      return c.images.every(img => img.complete);
    });
  };
  const runAll = () => {
    window.__lt_run = {done: false};
    const commands = window.jupyterapp.commands;
    commands.execute('notebook:clear-all-cell-outputs')
      .then(() => commands.execute('notebook:run-all-cells'))
      .then(ok => { window.__lt_run = {done: true, ok: ok !== false}; },
            err => { window.__lt_run = {done: true, ok: false, error: String(err)}; });
  };
  const finished = () => {
    const r = window.__lt_run, k = kernel();
    return !!(r && r.done && k && k.status === 'idle'
              && panel().content.widgets.every(c => c.model.type !== 'code' || c.model.executionState !== 'running'));
  };
  window.__lt = {snapshot, settled, runAll, finished};
}
"""

KERNEL_READY_JS = """
(path) => {
  const app = window.jupyterapp;
  const w = app && app.shell && app.shell.currentWidget;
  if (!w || !w.context || w.context.path !== path || !w.sessionContext || !w.content) return false;
  const s = w.sessionContext, k = s.session && s.session.kernel;
  return w.context.isReady && s.isReady && !!k && k.connectionStatus === 'connected' && k.status === 'idle';
}
"""

KNOB_CHANGED_JS = """
([index, table, image]) => {
  const cell = document.querySelector(`[data-lt-index="${index}"]`);
  const t = cell && cell.querySelector('table.labkit-table'), img = cell && cell.querySelector('.jp-OutputArea img');
  return !!(t && img && img.complete && (t.innerText !== table || img.src !== image));
}
"""


def cell_flags(notebook_path: Path) -> dict[int, dict]:
    """What each cell must show, from its source and tags: a widget, a figure, a verdict, a diagram."""
    flags = {}
    for i, cell in enumerate(json.loads(notebook_path.read_text(encoding="utf-8"))["cells"]):
        source = "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]
        tags = cell.get("metadata", {}).get("tags", [])
        flags[i] = {"play": bool(PLAY.search(source)), "hints": bool(HINTS.search(source)),
                    "check": bool(CHECK.search(source)), "draws": bool(DRAWS.search(source)),
                    "raises": "raises-exception" in tags,
                    "mermaid": cell["cell_type"] == "markdown" and bool(MERMAID.search(source)),
                    "first_line": source.strip().splitlines()[0][:80] if source.strip() else ""}
        flags[i]["widget"] = cell["cell_type"] == "code" and (flags[i]["play"] or flags[i]["hints"])
    return flags


def find_problems(snapshot: dict, flags: dict[int, dict], verdict: str) -> list[str]:
    """Everything a learner would see as broken, one line each."""
    problems = []
    run = snapshot.get("run") or {}
    for c in snapshot["cells"]:
        f = flags.get(c["i"], {})
        where = f"cell [{c['i']}] `{f.get('first_line', '')}`"
        if c["type"] == "markdown":
            for bad in c["mermaidBad"]:
                problems.append(f"{where}: the mermaid diagram failed to render: {' '.join(bad.split())[:160]}")
            if f.get("mermaid") and not c["mermaidOk"] and not c["mermaidBad"]:
                problems.append(f"{where}: the mermaid diagram did not render")
            continue
        if c["type"] != "code":
            continue
        if c["executionCount"] is None:
            problems.append(f"{where}: never ran (run-all stops at the first error)")
            continue
        errors = [o for o in c["outputs"] if o["type"] == "error"]
        if errors and not f.get("raises"):
            problems += [f"{where}: raised {e['ename']}: {e['evalue']}" for e in errors]
        elif not f.get("raises"):
            for text in c["stderr"]:
                if re.search(r"Traceback|\w+Error\b|Exception", text):
                    problems.append(f"{where}: an error on stderr: {text.strip().splitlines()[-1][:200]}")
        for phrase in ("Error displaying widget", "Loading widget", "Failed to load model class"):
            if phrase in c["text"]:
                problems.append(f"{where}: the output still reads '{phrase}'")
        if f.get("widget") and c["widgets"] == 0 and not errors:
            problems.append(f"{where}: calls lk.{'play' if f.get('play') else 'hints'}( but shows no rendered widget "
                            f"(is the ipywidgets labextension loaded?); output text: {c['text'][:150]!r}")
        if c.get("emptySelects"):
            problems.append(f"{where}: {c['emptySelects']} dropdown(s) show no option selected")
        if f.get("play") and not errors and not c["tables"]:
            problems.append(f"{where}: the Play panel shows no summary table (table.labkit-table)")
        if any(img["complete"] and img["width"] == 0 for img in c["images"]):
            problems.append(f"{where}: shows a broken image")
        if f.get("draws") and not errors and not any(img["width"] > 100 and img["height"] > 50 for img in c["images"]):
            problems.append(f"{where}: draws, but shows no figure")
        if f.get("check") and verdict not in c["text"]:
            problems.append(f"{where}: the check's verdict should say '{verdict}'; it says {c['text'][:300]!r}")
    if run.get("error"):
        problems.append(f"run-all failed: {run['error']}")
    elif run.get("done") and not run.get("ok") and not problems:
        problems.append("run-all reported a failure, but no cell shows an error")
    return problems


@dataclass
class Visit:
    """One notebook opened in its own page: what happened, for the failure report."""

    lab: object
    page: object
    path: str  # relative to the server root, e.g. "lessons/00_start_here.ipynb"
    phase: str = "opening the notebook"
    console: list[str] = field(default_factory=list)
    log_offset: int = 0
    timings: dict[str, float] = field(default_factory=dict)

    def artifact(self, suffix: str) -> Path:
        folder, name = self.path.rsplit("/", 1) if "/" in self.path else ("", self.path)
        target = ARTIFACTS / folder / (name.removesuffix(".ipynb") + suffix)
        target.parent.mkdir(parents=True, exist_ok=True)
        return target

    def step(self, phase: str) -> None:
        self.timings[phase] = time.monotonic()
        self.phase = phase

    def durations(self) -> list[str]:
        starts = list(self.timings.items()) + [("", time.monotonic())]
        return [f"{phase}: {end - start:.1f} s" for (phase, start), (_, end) in zip(starts, starts[1:])]


def open_notebook(visit: Visit) -> None:
    page, lab = visit.page, visit.lab
    page.on("console", lambda m: visit.console.append(f"{m.type}: {m.text}") if m.type in ("error", "warning") else None)
    page.on("pageerror", lambda e: visit.console.append(f"pageerror: {e}"))
    workspace = "t-" + re.sub(r"[^A-Za-z0-9]+", "-", visit.path)
    page.goto(lab.page_url(visit.path, workspace), wait_until="domcontentloaded")
    visit.step("waiting for the kernel to be connected and idle")
    page.wait_for_function(KERNEL_READY_JS, arg=visit.path, timeout=KERNEL_READY_TIMEOUT_MS, polling=100)
    page.evaluate(HELPERS_JS)
    # More room for outputs, and the README screenshot shows the notebook, not the file browser.
    page.evaluate("() => window.jupyterapp.shell.collapseLeft()")


def run_all(visit: Visit, flags: dict) -> dict:
    page = visit.page
    visit.step("running all cells")
    page.evaluate("() => window.__lt.runAll()")
    page.wait_for_function("() => window.__lt.finished()", timeout=RUN_ALL_TIMEOUT_MS, polling=100)
    visit.step("waiting for widgets, figures and diagrams to render")
    js_flags = {str(i): {"widget": f["widget"], "mermaid": f["mermaid"]} for i, f in flags.items()}
    try:
        page.wait_for_function("(flags) => window.__lt.settled(flags)", arg=js_flags,
                               timeout=RENDER_TIMEOUT_MS, polling=100)
    except Exception:  # noqa: BLE001 - what did not render is reported cell by cell below
        pass
    return page.evaluate("() => window.__lt.snapshot()")


def move_knob(visit: Visit, index: int, timeout_ms: int) -> list[str]:
    """Move the Play panel's first slider a few steps with the keyboard; the table and figure must change."""
    page = visit.page
    cell = page.locator(f'[data-lt-index="{index}"]')
    handle = cell.locator(".widget-slider .noUi-handle").first
    if handle.count() == 0:
        return [f"cell [{index}]: the Play panel has no slider to move"]
    label = cell.locator(".widget-slider .widget-label").first.inner_text().strip()
    readout = cell.locator(".widget-slider .widget-readout").first
    table, image = cell.locator("table.labkit-table").first, cell.locator(".jp-OutputArea img").first
    start = (readout.inner_text(), table.inner_text(), image.get_attribute("src"))
    # Towards the far end, so every press moves it (a panel is moved again after each reopening).
    now, low, high = (float(handle.get_attribute(f"aria-value{a}")) for a in ("now", "min", "max"))
    key = "ArrowLeft" if now - low > high - now else "ArrowRight"
    handle.scroll_into_view_if_needed()
    handle.focus()
    for _ in range(KNOB_PRESSES):
        before = (table.inner_text(), image.get_attribute("src"))
        handle.press(key)
        try:  # one re-draw per key press: wait for it, so the next press starts from a settled panel
            page.wait_for_function(KNOB_CHANGED_JS, arg=[index, *before], timeout=timeout_ms, polling=100)
        except Exception:  # noqa: BLE001 - judged below against the starting state
            break
    end = (readout.inner_text(), table.inner_text(), image.get_attribute("src"))
    moved = f"after pressing {key} on '{label}' ({start[0]} -> {end[0]})"
    problems = []
    if end[0] == start[0]:
        problems.append(f"cell [{index}]: {moved}: the slider did not move")
    if end[1] == start[1]:
        problems.append(f"cell [{index}]: {moved}: the summary table did not change within {timeout_ms / 1000:g} s")
    if end[2] == start[2]:
        problems.append(f"cell [{index}]: {moved}: the figure did not change within {timeout_ms / 1000:g} s")
    if "These settings cannot run" in end[1]:
        problems.append(f"cell [{index}]: {moved}: the panel says the settings cannot run: {end[1][:200]!r}")
    return problems


PANEL_SHOWN_JS = """
(indices) => { window.__lt.snapshot();  // numbers the cells of this (new) notebook widget
  return indices.every(i => {
    const cell = document.querySelector(`[data-lt-index="${i}"]`), img = cell && cell.querySelector('.jp-OutputArea img');
    return !!(cell && !/Loading widget/.test(cell.innerText) && cell.querySelector('.widget-slider .noUi-handle')
              && cell.querySelector('table.labkit-table') && img && img.complete && img.naturalWidth > 0);
  }); }
"""
KERNEL_ID_JS = "() => window.jupyterapp.shell.currentWidget.sessionContext.session.kernel.id"
# The three ways a learner comes back to a notebook whose kernel still runs.
REOPENINGS = ("new tab", "refresh", "reopen")


def readouts(visit: Visit, index: int) -> list[str]:
    return visit.page.locator(f'[data-lt-index="{index}"] .widget-slider .widget-readout').all_inner_texts()


def save(visit: Visit) -> None:
    """Save the notebook, as JupyterLab's autosave or the learner would before leaving it."""
    visit.page.evaluate("() => window.jupyterapp.commands.execute('docmanager:save')")
    visit.page.wait_for_function("() => !window.jupyterapp.shell.currentWidget.context.model.dirty",
                                 timeout=KNOB_TIMEOUT_MS, polling=100)


def come_back(visit: Visit, how: str, browser_context) -> Visit:
    """Leave the notebook and come back to it `how`; the visit to judge the panel in (a new page for "new tab")."""
    page, path = visit.page, visit.path
    if how == "new tab":  # the same URL in a second page; the first one stays open
        visit = Visit(visit.lab, browser_context.new_page(), path, log_offset=visit.log_offset)
        open_notebook(visit)
        return visit
    if how == "refresh":
        page.reload(wait_until="domcontentloaded")
    elif how == "reopen":  # close the tab, then double-click the notebook in the file browser
        name = path.rsplit("/", 1)[-1]
        page.locator(".jp-mod-current .lm-TabBar-tabCloseIcon, .lm-TabBar-tab.lm-mod-current .lm-TabBar-tabCloseIcon"
                     ).first.click()
        page.wait_for_function("(path) => !window.jupyterapp.shell.currentWidget"
                               " || !window.jupyterapp.shell.currentWidget.context"
                               " || window.jupyterapp.shell.currentWidget.context.path !== path",
                               arg=path, timeout=KNOB_TIMEOUT_MS, polling=100)
        page.evaluate("(dir) => window.jupyterapp.commands.execute('filebrowser:go-to-path', {path: dir})",
                      path.rsplit("/", 1)[0] + "/" if "/" in path else "")
        page.locator(".jp-DirListing-item", has=page.locator(".jp-DirListing-itemText", has_text=name)).first.dblclick()
    visit.step(f"{how}: waiting for the kernel to be connected and idle")
    page.wait_for_function(KERNEL_READY_JS, arg=path, timeout=KERNEL_READY_TIMEOUT_MS, polling=100)
    page.evaluate(HELPERS_JS)
    page.evaluate("() => window.jupyterapp.shell.collapseLeft()")
    return visit


def survives_coming_back(visit: Visit, browser_context, indices: list[int], timeout_ms: int) -> list[str]:
    """Each way back to the notebook, the kernel still running: the panels show its state, and knobs still re-draw."""
    problems: list[str] = []
    kernel = visit.page.evaluate(KERNEL_ID_JS)
    for how in REOPENINGS:
        visit.step(f"{how}: saving the notebook")
        expected = {i: readouts(visit, i) for i in indices}
        save(visit)
        back = come_back(visit, how, browser_context)
        found: list[str] = []
        try:
            back.step(f"{how}: waiting for the Play panel to render")
            if back.page.evaluate(KERNEL_ID_JS) != kernel:
                found.append(f"{how}: the notebook came back with another kernel; this test needs the first one")
            else:
                try:
                    back.page.wait_for_function(PANEL_SHOWN_JS, arg=indices, timeout=RENDER_TIMEOUT_MS, polling=100)
                except Exception:  # noqa: BLE001 - reported below, panel by panel
                    pass
                for i in indices:
                    if not back.page.evaluate(PANEL_SHOWN_JS, [i]):
                        text = back.page.locator(f'[data-lt-index="{i}"] .jp-Cell-outputArea').first.inner_text()
                        found.append(f"{how}: cell [{i}]: the Play panel did not render within "
                                     f"{RENDER_TIMEOUT_MS / 1000:g} s; its output reads {text[:150]!r}")
                        continue
                    if readouts(back, i) != expected[i]:
                        found.append(f"{how}: cell [{i}]: the knobs read {readouts(back, i)}, but the kernel has "
                                     f"{expected[i]} (is the panel drawn from the saved file, not the kernel?)")
                    back.step(f"{how}: moving a knob of the Play panel in cell [{i}]")
                    found += [f"{how}: {p}" for p in move_knob(back, i, timeout_ms)]
        except Exception as exc:  # noqa: BLE001 - a timeout or a dead page is this case's failure
            found.append(f"{how}: {type(exc).__name__}: {str(exc).strip().splitlines()[0]}")
        if found:
            shot = visit.artifact(f".{how.replace(' ', '-')}.failed.png")
            try:
                back.page.screenshot(path=str(shot))
                found.append(f"{how}: screenshot {shot.relative_to(ROOT)}")
            except Exception:  # noqa: BLE001 - the problems above matter more than the picture
                pass
            if back is not visit:
                visit.console += [f"[{how}] {line}" for line in back.console]
        problems += found
        if back is not visit:
            back.page.close()
    return problems


def reveal_hint(visit: Visit, index: int, timeout_ms: int) -> list[str]:
    page = visit.page
    cell = page.locator(f'[data-lt-index="{index}"]')
    button = cell.locator("button.widget-button").first
    if button.count() == 0:
        return [f"cell [{index}]: the hints panel has no button"]
    button.scroll_into_view_if_needed()
    button.click()
    try:
        cell.locator(".widget-html-content", has_text="Hint 1").first.wait_for(timeout=timeout_ms)
    except Exception:  # noqa: BLE001
        return [f"cell [{index}]: clicking '{button.inner_text().strip()}' showed no hint within "
                f"{timeout_ms / 1000:g} s"]
    return []


def log_console_errors(visit: Visit, timeout_ms: int) -> list[str]:
    """Exceptions in widget callbacks: JupyterLab sends them to the notebook's log console, counted in the status bar."""
    page = visit.page
    count = page.evaluate("""() => { const e = document.querySelector('.jp-LogConsoleStatusItem');
        return e && !e.classList.contains('lm-mod-hidden') ? e.innerText.trim() : ''; }""")
    if not count.isdigit() or int(count) == 0:
        return []
    page.evaluate("(path) => window.jupyterapp.commands.execute('logconsole:open', {source: path})", visit.path)
    panel = page.locator(".jp-LogConsolePanel")
    try:
        panel.get_by_text("Traceback").first.wait_for(timeout=timeout_ms)
    except Exception:  # noqa: BLE001 - only warnings in the log: not a failure
        return []
    finals = [line.strip() for line in panel.inner_text().splitlines()
              if re.match(r"^[A-Za-z_][\w.]*(Error|Exception|Interrupt)\b: ", line.strip())]
    return [f"the log console (its count is in the status bar) shows an exception from a widget callback: {line}"
            for line in dict.fromkeys(finals)] or ["the log console shows a traceback from a widget callback"]


def full_page_screenshot(page, path: Path) -> None:
    """The whole notebook, not just the viewport: JupyterLab scrolls inside a fixed-size panel."""
    hidden = page.evaluate("""() => {
        const cell = document.querySelector('[data-lt-index]');
        const s = cell && cell.closest('.jp-WindowedPanel-outer');
        return s ? s.scrollHeight - s.clientHeight : 0; }""")
    size = page.viewport_size
    if hidden > 0:  # grow the window until the notebook no longer scrolls
        page.set_viewport_size({"width": size["width"], "height": min(size["height"] + hidden + 50, 16_000)})
    try:
        page.screenshot(path=str(path), full_page=True)
    finally:
        page.set_viewport_size(size)


def fail(visit: Visit, problems: list[str]) -> None:
    png, txt = visit.artifact(".failed.png"), visit.artifact(".failed.txt")
    screenshot_note = str(png.relative_to(ROOT))
    try:
        full_page_screenshot(visit.page, png)
    except Exception as exc:  # noqa: BLE001 - a dead page must not hide the real failure
        screenshot_note = f"(no screenshot: {str(exc).splitlines()[0]})"
    try:
        text = visit.page.evaluate("() => document.body.innerText")
    except Exception as exc:  # noqa: BLE001
        text = f"(page text unavailable: {exc})"
    log = visit.lab.log_since(visit.log_offset)
    txt.write_text("\n".join(["PROBLEMS", *problems, "", "PHASES", *visit.durations(), "", "PAGE TEXT", text,
                              "", "BROWSER CONSOLE", *visit.console,
                              "", "JUPYTERLAB SERVER AND KERNEL LOG", log]), encoding="utf-8")
    message = [f"{visit.path} in JupyterLab (while {visit.phase}):", *[f"  - {p}" for p in problems]]
    if "Traceback" in log:
        tail = log[log.index("Traceback"):].splitlines()[:25]
        message += ["  kernel/server log:", *[f"    {line}" for line in tail]]
    message += [f"  screenshot: {screenshot_note}", f"  page text:  {txt.relative_to(ROOT)}"]
    pytest.fail("\n".join(message), pytrace=False)


def live(cell: dict) -> bool:
    """A cell that ran cleanly and shows widgets: worth interacting with."""
    return (cell["type"] == "code" and cell["executionCount"] is not None and cell["widgets"] > 0
            and not any(o["type"] == "error" for o in cell["outputs"]))


def check_notebook(lab, browser_context, path: str, verdict: str, interact: bool,
                   knob_timeout_ms: int = KNOB_TIMEOUT_MS, revisit: bool = False) -> Visit:
    """Open `path` (relative to the server root), run it and judge it; on failure, fail naming the artifacts.

    With `revisit`, each Play panel must also keep working when the notebook is opened in a
    new tab, refreshed, and closed and reopened from the file browser, the kernel still running.
    """
    flags = cell_flags(lab.root / path)
    page = browser_context.new_page()
    visit = Visit(lab, page, path, log_offset=lab.log_size())
    for stale in (visit.artifact(".failed.png"), visit.artifact(".failed.txt"),
                  *(visit.artifact(f".{how.replace(' ', '-')}.failed.png") for how in REOPENINGS)):
        stale.unlink(missing_ok=True)
    problems: list[str] = []
    try:
        try:
            visit.step("opening the notebook")
            open_notebook(visit)
            snapshot = run_all(visit, flags)
            visit.step("checking outputs")
            problems += find_problems(snapshot, flags, verdict)
            cells = {c["i"]: c for c in snapshot["cells"]}
            if interact:
                panels = [i for i, f in flags.items() if f["play"] and live(cells[i]) and cells[i]["tables"]]
                for i in panels:
                    visit.step(f"moving a knob of the Play panel in cell [{i}]")
                    problems += move_knob(visit, i, knob_timeout_ms)
                hints = [i for i, f in flags.items() if f["hints"] and live(cells[i])]
                if hints:
                    visit.step(f"clicking the hints button in cell [{hints[0]}]")
                    problems += reveal_hint(visit, hints[0], knob_timeout_ms)
            visit.step("reading the log console")
            problems += log_console_errors(visit, knob_timeout_ms)
            if interact and revisit and panels and not problems:
                problems += survives_coming_back(visit, browser_context, panels, knob_timeout_ms)
        except Exception as exc:  # noqa: BLE001 - a timeout or a dead page is a failure with artifacts too
            problems.append(f"{type(exc).__name__}: {str(exc).strip().splitlines()[0]}")
        if problems:
            fail(visit, problems)
        # The success screenshot: the Play panel if there is one (the README can show it), else the first check.
        focus = next((i for key in ("play", "check") for i, f in flags.items() if f[key]), 0)
        page.evaluate("(i) => document.querySelector(`[data-lt-index='${i}']`).scrollIntoView({block: 'start'})", focus)
        page.screenshot(path=str(visit.artifact(".png")))
        visit.step("done")
        return visit
    finally:
        page.close()
        lab.shut_down_kernels(path)


@pytest.mark.parametrize("name", LESSONS)
def test_lesson(lab, browser_context, name):
    """A lesson as handed out: runs clean, renders, every check says 'not attempted', Play knobs re-draw,

    and keep re-drawing after the notebook is opened in a new tab, refreshed, or closed and reopened."""
    check_notebook(lab, browser_context, f"lessons/{name}.ipynb", VERDICT["lessons"], interact=True, revisit=True)


@pytest.mark.parametrize("name", SOLUTIONS)
def test_solution(lab, browser_context, name):
    """A solution: runs clean, renders, and every check says 'All checks passed'."""
    check_notebook(lab, browser_context, f"solutions/{name}.ipynb", VERDICT["solutions"], interact=False)


BROKEN_CELLS = [
    ("markdown", "# A notebook broken on purpose\n\n```mermaid\nflowchart LR\n  A -->> B[[\n```"),
    ("code", "import labkit as lk"),
    ("code", "def run(rate_rps, max_concurrency, latency_ms):\n"
             "    if rate_rps != 200:\n"
             "        raise RuntimeError('the Play callback is broken on purpose')\n"
             "    return lk.queueing.simulate(rate_rps=rate_rps, max_concurrency=max_concurrency,\n"
             "                                latency_ms=latency_ms)\n\n"
             "lk.queueing.PANEL.run = run\n"
             "lk.queueing.play()"),
    ("code", "lk.check('00.1', lambda rate_rps, latency_s: 0)"),
    ("code", "1 / 0"),
    ("code", "print('never reached')"),
]


def test_a_broken_notebook_fails_with_a_screenshot(lab, browser_context):
    """The harness itself: a notebook with every kind of breakage fails, naming each one and the artifacts."""
    import nbformat

    notebook = nbformat.v4.new_notebook(metadata={"kernelspec": {"name": "python3", "display_name": "Python 3",
                                                                 "language": "python"}})
    notebook.cells = [nbformat.v4.new_markdown_cell(src) if kind == "markdown" else nbformat.v4.new_code_cell(src)
                      for kind, src in BROKEN_CELLS]
    (lab.root / "selftest").mkdir(exist_ok=True)
    nbformat.write(notebook, lab.root / "selftest" / "broken.ipynb")
    with pytest.raises(pytest.fail.Exception) as failure:
        check_notebook(lab, browser_context, "selftest/broken.ipynb", VERDICT["solutions"], interact=True,
                       knob_timeout_ms=5_000)
    message = str(failure.value)
    png, txt = ARTIFACTS / "selftest" / "broken.failed.png", ARTIFACTS / "selftest" / "broken.failed.txt"
    try:
        for expected in ("the mermaid diagram failed to render", "raised ZeroDivisionError: division by zero",
                         "cell [5] `print('never reached')`: never ran",
                         "the check's verdict should say 'All checks passed'",
                         "the summary table did not change", "the figure did not change",
                         "widget callback: RuntimeError: the Play callback is broken on purpose",
                         f"screenshot: {png.relative_to(ROOT)}", f"page text:  {txt.relative_to(ROOT)}"):
            assert expected in message, f"expected {expected!r} in the failure message:\n{message}"
        assert png.stat().st_size > 10_000 and "A notebook broken on purpose" in txt.read_text(encoding="utf-8")
    finally:  # these files are proof the harness works, not a real failure to look at
        png.unlink(missing_ok=True)
        txt.unlink(missing_ok=True)
        if not any(png.parent.iterdir()):
            png.parent.rmdir()
