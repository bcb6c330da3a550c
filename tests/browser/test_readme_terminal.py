"""The README's `labkit check ...` line, typed into a terminal of the JupyterLab that `make lab` starts.

The learner's shell here has no `.venv/bin` on its PATH (it was never activated): the line must
work because `make lab` gives its terminals the venv's PATH, which is what the README promises.
The terminal is JupyterLab's own (jupyter_server_terminals), driven over its websocket as the
browser's terminal panel drives it; no page is needed to type a line.
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import json
import os
import re
import secrets
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

START_TIMEOUT_S = 120
CHECK_TIMEOUT_S = 60


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _readme_check_line() -> str:
    line = re.search(r"^(labkit check \S+)", (ROOT / "README.md").read_text(encoding="utf-8"), re.M)
    assert line, "README.md no longer shows a `labkit check ...` line for a terminal"
    return line.group(1)


def _api(url: str, token: str, path: str, data: bytes | None = None):
    request = urllib.request.Request(f"{url}{path}", data=data, method="POST" if data is not None else "GET",
                                     headers={"Authorization": f"token {token}", "Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read() or b"null")


async def _type_in_terminal(port: int, token: str, name: str, line: str, until: str) -> str:
    from tornado.websocket import websocket_connect

    ws = await websocket_connect(f"ws://127.0.0.1:{port}/terminals/websocket/{name}?token={token}")
    try:
        ws.write_message(json.dumps(["stdin", line + "\r"]))
        out, deadline = "", time.monotonic() + CHECK_TIMEOUT_S
        while until not in out:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            try:
                message = await asyncio.wait_for(ws.read_message(), timeout=left)
            except asyncio.TimeoutError:
                break
            if message is None:
                break
            kind, *rest = json.loads(message)
            if kind == "stdout":
                out += rest[0]
        return out
    finally:
        ws.close()


@pytest.fixture
def make_lab(tmp_path):
    """`make lab` on a free port, with private Jupyter folders, from a shell whose PATH lacks the venv."""
    port, token = _free_port(), secrets.token_hex(16)
    env = dict(os.environ, JUPYTER_TOKEN=token, JUPYTER_CONFIG_DIR=str(tmp_path / "config"),
               JUPYTER_DATA_DIR=str(tmp_path / "data"), JUPYTER_RUNTIME_DIR=str(tmp_path / "runtime"),
               IPYTHONDIR=str(tmp_path / "ipython"))
    venv_bin = str(ROOT / ".venv" / "bin")
    env["PATH"] = os.pathsep.join(p for p in env.get("PATH", "").split(os.pathsep) if p and p != venv_bin)
    env.pop("VIRTUAL_ENV", None)
    log_path = tmp_path / "make-lab.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(["make", "lab", f"PORT={port}"], cwd=ROOT, env=env, stdout=log,
                                   stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"make lab did not answer on port {port}:\n{log_path.read_text(errors='replace')[-3000:]}")
            try:
                _api(url, token, "/api/status")
                break
            except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
                time.sleep(0.3)
        yield url, port, token
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)   # make and the JupyterLab it started
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=10)


def test_the_readme_s_labkit_check_works_in_a_terminal_of_make_lab(make_lab):
    url, port, token = make_lab
    line = _readme_check_line()
    name = _api(url, token, "/api/terminals", data=b"{}")["name"]
    # In a thread of its own: the browser tests' Playwright keeps an event loop running in this one.
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        out = pool.submit(asyncio.run, _type_in_terminal(port, token, name, line, until="Score:")).result()
    assert "not found" not in out, out[-2000:]   # bash: "command not found"; sh: "labkit: not found"
    assert "Score:" in out and "not attempted" in out, out[-2000:]
