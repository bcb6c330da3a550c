"""Grading children forked from a process that has Python, IPython and labkit imported already (course tooling).

A child started as a new interpreter spends about 0.35 s of CPU before it runs a cell:
Python, IPython and labkit take 0.1 s to import, and the SQLite and fakeredis libraries
that lessons 01 on use another 0.2 s. For a class of 300 that is more than a minute of
the grader's two cores, and it is the same every time. The fork server pays it once per
grading run: it imports what every child imports (`child.preload`), then forks one child
per submission, which goes on exactly as a new interpreter would: its own session, its own
environment and working directory, its output to its log, and `child.main` (which confines
it before any learner code runs).

The server never runs learner code, and hidden tests are never loaded into it (they are in
the grader only), so a fork knows no more than a fresh interpreter. It runs as the grader's
user: learner code dropped to a uid of its own cannot signal it; without a uid pool, learner
code runs as the grader's user and could reach the grader itself as well.

The grader talks to the server over a Unix socket (one request and one reply per child,
the pipes and log passed as file descriptors). The reply carries the child's pid and a
pidfd, which the grader waits on and kills through: the server is the child's parent and
lets the kernel reap it, so the pid alone might be reused. Where any of this is missing
(no pidfd, the server did not start or has died) a child is started the plain way.
"""
from __future__ import annotations

import fcntl
import json
import os
import select
import signal
import socket
import subprocess
import sys
import threading

SERVER_BOOT = ("import sys; sys.path.insert(0, {root!r}); "
               "from labkit.grading.forkserver import serve; serve(int(sys.argv[1]))")
MAX_STARTS = 3   # servers started by one grading process before it starts every child the plain way


def available() -> bool:
    return (sys.platform.startswith("linux") and hasattr(os, "pidfd_open") and hasattr(socket, "send_fds")
            and os.environ.get("LABKIT_GRADER_FORKSERVER", "1") != "0")


# --- in the server -------------------------------------------------------------------------------


def _threads() -> int:
    with open("/proc/self/status", "rb") as f:
        for line in f:
            if line.startswith(b"Threads:"):
                return int(line.split()[1])
    return 0


def serve(fd: int) -> None:
    """The server's loop: fork a child for each request, until the grader closes the socket."""
    from labkit.grading.child import preload

    sock = socket.socket(fileno=fd)
    os.set_inheritable(fd, False)
    preload(everything=True)
    # A fork keeps only the thread that forked: every other thread would be missing in the child.
    if _threads() != 1:
        sock.send(b'{"error": "the fork server has more than one thread"}')
        os._exit(1)
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)   # the kernel reaps the children; the grader holds pidfds
    sock.send(b'{"ready": true}')
    while True:
        try:
            data, fds, _, _ = socket.recv_fds(sock, 1 << 20, 3)
        except OSError:
            os._exit(0)
        if not data:
            os._exit(0)   # the grader is done, or gone
        pidfd = -1
        try:
            request = json.loads(data)
            if len(fds) != 3:
                raise ValueError("a child needs its two pipe ends and its log")
            sys.stdout.flush()
            sys.stderr.flush()
            pid = os.fork()
            if pid == 0:
                _become_child(sock, request, fds)
            try:
                pidfd = os.pidfd_open(pid)
                reply = {"pid": pid}
            except OSError as exc:   # it has already ended, and been reaped
                reply = {"pid": pid, "error": f"pidfd_open: {exc}"}
        except Exception as exc:  # noqa: BLE001 - a bad request is answered, the server goes on
            reply = {"error": f"{type(exc).__name__}: {exc}"}
        finally:
            for f in fds:
                os.close(f)
        try:
            socket.send_fds(sock, [json.dumps(reply).encode()], [pidfd] if pidfd >= 0 else [])
        except OSError:
            os._exit(0)
        finally:
            if pidfd >= 0:
                os.close(pidfd)


def _become_child(sock, request: dict, fds: list[int]) -> None:
    """In the fork: become what `Child` would have started as a new interpreter, then run `child.main`."""
    try:
        sock.close()
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        os.setsid()
        # Above every number used below first, so no dup2 overwrites one still to be moved.
        rfd, wfd, log = (fcntl.fcntl(f, fcntl.F_DUPFD_CLOEXEC, 10) for f in fds)
        devnull = os.open(os.devnull, os.O_RDONLY)
        for source, target in ((devnull, 0), (log, 1), (log, 2), (rfd, 3), (wfd, 4)):
            os.dup2(source, target)
        # The pipe ends at 3 and 4, and nothing else open, as Popen(close_fds=True, pass_fds=...) leaves them.
        os.closerange(5, os.sysconf("SC_OPEN_MAX"))
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        import tempfile
        tempfile.tempdir = None   # found again from this child's TMPDIR
        config = dict(request["config"], rfd=3, wfd=4)
        from labkit.grading.child import main

        main(json.dumps(config))
    except BaseException:  # noqa: BLE001 - a fork must never return into the server's loop
        try:
            import traceback

            traceback.print_exc()
            sys.stderr.flush()
        finally:
            os._exit(70)
    os._exit(0)


# --- in the grader -------------------------------------------------------------------------------


class ForkServer:
    """One fork server, started by the grader; `spawn` is safe from several threads."""

    def __init__(self, root: str, env: dict, timeout_s: float):
        self.lock = threading.Lock()
        self.sock, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            self.proc = subprocess.Popen(
                [sys.executable, "-I", "-B", "-X", "utf8", "-c", SERVER_BOOT.format(root=root), str(theirs.fileno())],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                pass_fds=(theirs.fileno(),), cwd="/", env=env, start_new_session=True, close_fds=True)
        finally:
            theirs.close()
        self.sock.settimeout(timeout_s)
        try:
            hello = json.loads(self.sock.recv(4096) or b"{}")
        except (OSError, ValueError):
            hello = {}
        if not hello.get("ready"):
            self.close()
            raise OSError(f"the fork server did not start: {hello.get('error', 'no answer')}")
        self.sock.settimeout(None)

    def spawn(self, config: dict, env: dict, cwd: str, rfd: int, wfd: int, log: int) -> tuple[int, int]:
        """Fork a child: (pid, pidfd). Raises OSError if the server cannot."""
        data = json.dumps({"config": config, "env": env, "cwd": cwd}).encode()
        with self.lock:
            self.sock.settimeout(30)
            try:
                socket.send_fds(self.sock, [data], [rfd, wfd, log])
                reply, fds, _, _ = socket.recv_fds(self.sock, 4096, 1)
            finally:
                self.sock.settimeout(None)
        try:
            answer = json.loads(reply) if reply else {"error": "the fork server has ended"}
        except ValueError:
            answer = {"error": "the fork server's reply is not JSON"}
        if answer.get("error") or not fds:
            for f in fds:
                os.close(f)
            raise OSError(answer.get("error") or "no pidfd")
        return answer["pid"], fds[0]

    def close(self) -> None:
        self.sock.close()
        try:
            self.proc.kill()
            self.proc.wait(timeout=10)
        except (OSError, subprocess.SubprocessError):
            pass


_SERVER: ForkServer | None = None
_SERVER_LOCK = threading.Lock()
_starting = False
_starts = 0


def start(root: str, env: dict, timeout_s: float) -> None:
    """Start this grading process's fork server in the background (again if it died, up to MAX_STARTS times).

    Children are started the plain way until it is ready: a batch's first children do not
    wait for it, and a single notebook (`labkit check`) never starts one.
    """
    global _starting, _starts
    if not available():
        return
    with _SERVER_LOCK:
        if _starting or _starts >= MAX_STARTS or _SERVER is not None and _SERVER.proc.poll() is None:
            return
        _starting, _starts = True, _starts + 1

    def run():
        global _SERVER, _starting
        try:
            server = ForkServer(root, env, timeout_s)
        except OSError:
            server = None
        with _SERVER_LOCK:
            old, _SERVER, _starting = _SERVER, server, False
        if old is not None:
            old.close()

    threading.Thread(target=run, name="labkit-fork-server", daemon=True).start()


def ready() -> ForkServer | None:
    """The fork server, if it has started and is running; never waits for one."""
    with _SERVER_LOCK:
        server = _SERVER
    return server if server is not None and server.proc.poll() is None else None


def forget(failed: ForkServer) -> None:
    """A spawn failed: children start the plain way until a new server is started."""
    global _SERVER
    with _SERVER_LOCK:
        if _SERVER is not failed:
            return
        _SERVER = None
    failed.close()


def wait_for_exit(pidfd: int, timeout_s: float) -> bool:
    """True once the process of `pidfd` has ended (within `timeout_s`)."""
    poller = select.poll()
    poller.register(pidfd, select.POLLIN)
    return bool(poller.poll(timeout_s * 1000))
