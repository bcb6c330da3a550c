"""The browser layer's fixtures: one private JupyterLab server and one headless Chromium for every notebook.

The server runs on a temporary copy of lessons/ and solutions/ with its own config, data,
runtime, settings and workspace folders, so nothing here reads or writes the learner's
Jupyter setup or the repository's notebooks. The layer skips (with a printed reason) where
Chromium or Playwright is missing, except under CI=true, where it fails instead.
"""
from __future__ import annotations

import importlib.util
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage"]
SERVER_START_TIMEOUT_S = 90
# JupyterLab user settings for the private server. windowingMode "none" attaches and renders
# every cell (the default, "contentVisibility", lets the browser skip rendering cells out of
# view, and "full"/"defer" detach them, which would hide their outputs from the assertions);
# the notification settings stop news and update checks a closed network can only time out on.
USER_SETTINGS = {
    "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none"},
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {"fetchNews": "false",
                                                                       "checkForUpdates": False},
    "@jupyterlab/docmanager-extension/plugin.jupyterlab-settings": {"autosave": False},
}


def chromium_path() -> str | None:
    """Debian's /usr/bin/chromium, else whatever `chromium` is on PATH."""
    if os.access("/usr/bin/chromium", os.X_OK):
        return "/usr/bin/chromium"
    return shutil.which("chromium")


def missing() -> str | None:
    """Why the browser layer cannot run with this Python and this machine, or None if it can."""
    reasons = []
    if chromium_path() is None:
        reasons.append("no Chromium at /usr/bin/chromium or on PATH (Debian: apt-get install chromium)")
    for module, package in (("playwright", "playwright"), ("jupyterlab", "jupyterlab"), ("ipywidgets", "ipywidgets")):
        if importlib.util.find_spec(module) is None:
            reasons.append(f"{package} is not importable from {sys.executable} (pip install -e '.[test]')")
    return "; ".join(reasons) or None


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in {"1", "true", "yes"}


def pytest_configure(config):
    # pyproject.toml registers the marker; this keeps --strict-markers happy if it ever stops.
    if not any(line.split(":")[0].strip() == "browser" for line in config.getini("markers")):
        config.addinivalue_line("markers", "browser: drives JupyterLab in a real Chromium through Playwright")


def status_line() -> str:
    why = missing()
    if why is None:
        return f"browser tests: Chromium {chromium_path()}, JupyterLab served by {sys.executable}"
    return f"browser tests: {'FAIL (CI=true)' if in_ci() else 'skipped'}: {why}"


def pytest_collection_modifyitems(config, items):
    ours = [item for item in items if HERE in Path(str(item.path)).resolve().parents]
    if not ours:
        return
    # One line after "collected N items", whichever folder pytest was pointed at (a
    # pytest_report_header here would only print for `pytest tests/browser`).
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write_line(status_line())
    why = missing()
    if why is None or in_ci():
        return  # under CI the `lab` fixture fails each test instead
    skip = pytest.mark.skip(reason=f"browser tests need Chromium and Playwright: {why}")
    for item in ours:
        item.add_marker(skip)


def free_port() -> int:
    """A loopback port nobody listens on right now (the server is told not to try others)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Lab:
    """A running private JupyterLab: its URL, token, notebook root and log."""

    url: str
    token: str
    root: Path
    log: Path
    process: subprocess.Popen = field(repr=False)

    def page_url(self, path: str, workspace: str) -> str:
        """Open `path` in a fresh named workspace, so no tab from an earlier notebook is restored."""
        quoted = urllib.parse.quote(path)
        return f"{self.url}/lab/workspaces/{workspace}/tree/{quoted}?reset&token={self.token}"

    def api(self, method: str, endpoint: str, timeout: float = 10):
        request = urllib.request.Request(f"{self.url}/api/{endpoint}", method=method,
                                         headers={"Authorization": f"token {self.token}"})
        with urllib.request.urlopen(request, timeout=timeout) as response:
            body = response.read()
        return json.loads(body) if body else None

    def shut_down_kernels(self, path: str) -> None:
        """Delete every session (and so its kernel) for the notebook at `path`."""
        try:
            for session in self.api("GET", "sessions"):
                if session.get("path") == path:
                    self.api("DELETE", f"sessions/{session['id']}", timeout=30)
        except OSError as exc:  # a dead server fails the next test loudly; don't hide this test's result
            warnings.warn(f"could not shut down the kernel of {path}: {exc}", stacklevel=2)

    def log_since(self, offset: int) -> str:
        with self.log.open("rb") as f:
            f.seek(offset)
            return f.read().decode("utf-8", "replace")

    def log_size(self) -> int:
        return self.log.stat().st_size


def _write_private_config(base: Path) -> dict:
    config, data, runtime = base / "config", base / "data", base / "runtime"
    settings, workspaces, ipython = base / "settings", base / "workspaces", base / "ipython"
    for folder in (config / "labconfig", data, runtime, settings, workspaces, ipython):
        folder.mkdir(parents=True, exist_ok=True)
    # The announcements pop-up ignores --LabApp.news_url=None; disabling its plugin works.
    (config / "labconfig" / "page_config.json").write_text(json.dumps(
        {"disabledExtensions": {"@jupyterlab/apputils-extension:announcements": True}}))
    for name, values in USER_SETTINGS.items():
        target = settings / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(json.dumps(values))
    return {"config": config, "data": data, "runtime": runtime, "settings": settings,
            "workspaces": workspaces, "ipython": ipython}


def _start(base: Path, root: Path, dirs: dict, log_path: Path) -> Lab:
    port, token = free_port(), secrets.token_hex(16)
    env = dict(os.environ)
    # JUPYTER_DATA_DIR replaces only the per-user data folder: the venv's share/jupyter
    # (ipywidgets' labextension, the python3 kernelspec) stays on the path, and the
    # widget tests prove it by rendering widgets.
    env.update(JUPYTER_CONFIG_DIR=str(dirs["config"]), JUPYTER_DATA_DIR=str(dirs["data"]),
               JUPYTER_RUNTIME_DIR=str(dirs["runtime"]), IPYTHONDIR=str(dirs["ipython"]),
               # The kernel imports this checkout's labkit, installed or not.
               PYTHONPATH=os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p),
               PYDEVD_DISABLE_FILE_VALIDATION="1")
    command = [sys.executable, "-m", "jupyterlab", "--no-browser",
               "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={port}", "--ServerApp.port_retries=0",
               f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}",
               f"--LabApp.workspaces_dir={dirs['workspaces']}", f"--LabApp.user_settings_dir={dirs['settings']}",
               "--LabApp.expose_app_in_browser=True",
               "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
               "--LabApp.extension_manager=readonly"]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        command.append("--allow-root")
    log = log_path.open("ab")
    process = subprocess.Popen(command, cwd=base, env=env, stdout=log, stderr=subprocess.STDOUT,
                               stdin=subprocess.DEVNULL)
    log.close()
    lab = Lab(f"http://127.0.0.1:{port}", token, root, log_path, process)
    deadline = time.monotonic() + SERVER_START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"JupyterLab exited with code {process.returncode} before answering; "
                               f"log {log_path}:\n{lab.log_since(0)[-3000:]}")
        try:
            with urllib.request.urlopen(f"{lab.url}/api/status?token={token}", timeout=2) as response:
                if response.status == 200:
                    return lab
        except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
            pass
        time.sleep(0.2)
    _stop(process)
    raise RuntimeError(f"JupyterLab did not answer /api/status within {SERVER_START_TIMEOUT_S} s; "
                       f"log {log_path}:\n{lab.log_since(0)[-3000:]}")


def _stop(process: subprocess.Popen) -> None:
    """SIGTERM to the server's own PID (it shuts its kernels down), SIGKILL if it hangs."""
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)


def require_browser() -> None:
    why = missing()
    if why is None:
        return
    if in_ci():
        pytest.fail(f"CI=true but the browser tests cannot run: {why}", pytrace=False)
    pytest.skip(f"browser tests need Chromium and Playwright: {why}")


@pytest.fixture(scope="session")
def lab(tmp_path_factory):
    """One JupyterLab server for the whole session, on a temporary copy of lessons/ and solutions/."""
    require_browser()
    base = tmp_path_factory.mktemp("jupyterlab")
    root = base / "notebooks"
    for folder in ("lessons", "solutions"):
        if (ROOT / folder).is_dir():
            shutil.copytree(ROOT / folder, root / folder, ignore=shutil.ignore_patterns(".ipynb_checkpoints"))
    root.mkdir(exist_ok=True)
    dirs = _write_private_config(base)
    log_path = base / "jupyterlab.log"
    for attempt in range(3):
        try:
            server = _start(base, root, dirs, log_path)
            break
        except RuntimeError as exc:
            # Another process may take the free port between our probe and the server's bind.
            if attempt == 2 or "already in use" not in str(exc):
                pytest.fail(str(exc), pytrace=False)
    try:
        yield server
    finally:
        _stop(server.process)


@pytest.fixture(scope="session")
def browser_context(lab):
    """One headless Chromium (Debian's, never a downloaded one) and one context for every page."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS, headless=True)
        context = browser.new_context(viewport={"width": 1280, "height": 1080})
        try:
            yield context
        finally:
            context.close()
            browser.close()
