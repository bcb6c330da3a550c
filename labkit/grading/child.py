"""The grader's child process: confine itself, run a notebook's cells, then serve the grader (course tooling).

Started by `labkit.grading.sandbox.Child` as `python -I -c BOOT CONFIG`. Nothing here
judges anything: the child runs the learner's code and answers the grader's questions
about it (which names exist, is this a stub, call this method). The grader, in its own
process, decides. A notebook that rewrites this module can only send different answers,
and the grader judges the behaviour it observes through them.
"""
from __future__ import annotations

import contextlib
import functools
import json
import os
import signal
import sys
import threading
import traceback
import types

from labkit.checking import LocalContext, is_stub
from labkit.grading.endpoint import UNSENT, Endpoint
from labkit.grading.protocol import INT_LIMIT, FrameBuffer, ProtocolError, describe_error, pack, truncate
from labkit.grading.sandbox import confine
from labkit.mode import notebook_cells

ENDPOINT: "ChildEndpoint | None" = None
_MAIN_PID = os.getpid()   # set again by `main`: a fork server's child imported this module in the server


class CellTimeout(BaseException):
    """A cell used more CPU time than the grader's per-cell limit (raised by SIGPROF in the cell)."""


def _cell_timed_out(signum, frame):
    """SIGPROF while a cell (or a demo run made when read) runs: it used up its CPU allowance."""
    raise CellTimeout()


class CappedStream:
    """sys.stdout/stderr for the notebook: keeps the first `cap` characters, drops the rest quietly.

    The grader keeps only the start and end of the output anyway; RLIMIT_FSIZE still bounds
    what C code writes to the file descriptor directly.
    """

    def __init__(self, stream, cap: int = 1 << 20):
        self.stream, self.cap, self.written, self.dropped = stream, cap, 0, 0

    def write(self, text) -> int:
        text = str(text)
        room = self.cap - self.written
        if room <= 0:
            self.dropped += len(text)
            return len(text)
        kept = text[:room]
        try:
            self.stream.write(kept)
            if len(kept) < len(text):
                self.stream.write("\n[... output truncated by the grader ...]\n")
        except (OSError, ValueError):
            pass
        self.written += len(kept)
        self.dropped += len(text) - len(kept)
        return len(text)

    def flush(self) -> None:
        try:
            self.stream.flush()
        except (OSError, ValueError):
            pass

    def isatty(self) -> bool:
        return False

    def __getattr__(self, name):
        return getattr(self.stream, name)


class GraderObject:
    """Stand-in for one of the grader's objects (such as the simulation clock) inside the notebook.

    Reading an attribute or calling a method asks the grader, which answers with plain data
    or another stand-in. The grader only answers for the attributes it chose to expose.
    """

    __slots__ = ("_lk_endpoint", "_lk_handle", "_lk_desc", "_lk_methods")

    def __init__(self, endpoint, handle, desc):
        object.__setattr__(self, "_lk_endpoint", endpoint)
        object.__setattr__(self, "_lk_handle", handle)
        object.__setattr__(self, "_lk_desc", desc)
        object.__setattr__(self, "_lk_methods", {})

    def __getattr__(self, name):
        if name.startswith("__") and name.endswith("__"):
            raise AttributeError(name)
        method = self._lk_methods.get(name)
        if method is not None:
            return method
        ep = self._lk_endpoint
        value = ep.ahead.lookup(ep.codec, self._lk_handle, name)
        if value is not UNSENT:
            return value
        value = ep.request("getattr", target=self._lk_handle, name=name)
        if isinstance(value, GraderObject) and value._lk_desc["kind"] == "function":
            # The grader hands out only methods bound to this object, and its classes do not
            # change them: one request per method, not one per call.
            self._lk_methods[name] = value
        return value

    def __setattr__(self, name, value):
        raise AttributeError(f"the grader's {self._lk_desc['name']} is read-only while grading")

    def __call__(self, *args, **kwargs):
        ep = self._lk_endpoint
        value = ep.direct_call(self._lk_handle, args, kwargs)
        if value is not UNSENT:
            return value
        return ep.request("call", target=self._lk_handle, **ep.encode_call(args, kwargs))

    def __repr__(self):
        return self._lk_endpoint.request("repr", target=self._lk_handle)

    def __str__(self):
        return self._lk_endpoint.request("str", target=self._lk_handle)

    def __bool__(self):
        return self._lk_endpoint.request("bool", target=self._lk_handle) is True


class ChildEndpoint(Endpoint):
    """The child's end: blocking pipe I/O, learner code runs here, errors carry the learner's frames."""

    catch = BaseException
    with_frames = True

    def __init__(self, rfd: int, wfd: int):
        super().__init__()
        self.rfd, self.wfd = rfd, wfd
        self.buffer = FrameBuffer(256 << 20)
        self.main_thread = threading.get_ident()
        self.shell = None
        self.spy: LocalContext | None = None

    def send(self, message: dict) -> None:
        data = memoryview(pack(self.ahead.stamp(message, self._read_ahead, self.codec)))
        while data:
            data = data[os.write(self.wfd, data):]

    def receive(self) -> dict:
        while True:
            message = self.buffer.next()
            if message is not None:
                self.ahead.absorb(message)
                return message
            chunk = os.read(self.rfd, 1 << 16)
            if not chunk:
                raise EOFError("the grader closed the pipe")
            self.buffer.feed(chunk)

    def request(self, op: str, **fields):
        if os.getpid() != _MAIN_PID or threading.get_ident() != self.main_thread:
            raise RuntimeError("the grader's objects can only be used from the notebook's main thread")
        return super().request(op, **fields)

    def direct_call(self, handle: int, args: tuple, kwargs: dict):
        """A call of the grader's callable `handle` made without a message, or UNSENT: over the pipe, never."""
        return UNSENT

    def notify(self, kind: str, **fields) -> None:
        self.send({"n": kind, **fields})

    def make_proxy(self, handle, desc):
        return GraderObject(self, handle, desc)

    def fatal(self) -> tuple:
        return (ProtocolError, EOFError, CellTimeout)

    def _read_ahead(self, handle: int, name: str):
        """A learner attribute to send ahead: a plain value in the instance's own __dict__, read without running its code."""
        obj = self.codec.objects.get(handle)
        value = _plain_attribute(obj, name) if obj is not None else UNSENT
        if value is UNSENT:
            return None
        return "ok", value

    def dispatch(self, op: str, message: dict):
        if op == "getattr":
            obj, name = self.target(message), self.name(message)
            value = getattr(obj, name)
            if _plain_attribute(obj, name) is not UNSENT:
                self.ahead.watch(message["target"], name)
            elif isinstance(value, types.MethodType) and value.__self__ is obj and _class_function(obj, name):
                self._mark_method = True
            return value
        if op == "run":
            return self.run_cells(message)
        if op == "answer":
            return self.answer(self.name(message))
        if op == "spy":
            return self.wall_clock_spy(message.get("action"))
        if op == "record":
            from labkit.grading.replay import record

            return record(self.shell, message.get("exercise"), message.get("scenario"), message.get("name"),
                          message.get("call_cpu_s"), message.get("call_wall_s"),
                          stream=lambda part: self.notify("part", data=part))
        return super().dispatch(op, message)

    # what the grader asks of a notebook
    def run_cells(self, message: dict) -> list:
        cells, skip = message.get("cells"), message.get("skip") or []
        cell_timeout = message.get("cell_timeout")
        if type(cells) is not list or not isinstance(cell_timeout, (int, float)):
            raise ProtocolError("run needs cells and a cell_timeout")
        from IPython.core.interactiveshell import InteractiveShell
        from traitlets.config import Config

        if self.shell is None:
            sys.stdout, sys.stderr = CappedStream(sys.stdout), CappedStream(sys.stderr)
            config = Config()
            config.HistoryManager.enabled = False
            config.InteractiveShell.colors = "nocolor"
            config.InteractiveShell.xmode = "Plain"
            self.shell = InteractiveShell.instance(config=config, displayhook_class=_remembered())
        results = []
        with notebook_cells(functools.partial(_own_allowance, cell_timeout)):
            for index, source in cells:
                if index in skip:
                    results.append({"index": index, "status": "skipped"})
                    continue
                self.notify("cell", index=index)
                results.append({"index": index, **self.run_cell(source, cell_timeout)})
                if os.getpid() != _MAIN_PID:
                    os._exit(0)  # a copy made by os.fork() in the cell: it must not run on, or answer
                _reap()
        return results

    def run_cell(self, source: str, cell_timeout: float) -> dict:
        error = None
        # ITIMER_PROF counts this process's CPU time, as the grader does: a busy machine does
        # not interrupt a cell. A cell that sleeps is stopped by the grader's wall-clock backstop.
        previous = signal.signal(signal.SIGPROF, _cell_timed_out)
        signal.setitimer(signal.ITIMER_PROF, cell_timeout)
        try:
            result = self.shell.run_cell(source, store_history=True)
            error = result.error_before_exec or result.error_in_exec
        except BaseException as exc:  # noqa: BLE001 - whatever the cell raised, the notebook goes on
            error = exc
        finally:
            signal.setitimer(signal.ITIMER_PROF, 0)
            signal.signal(signal.SIGPROF, previous if previous is not None else signal.SIG_DFL)
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:  # noqa: BLE001 - a full disk or a replaced stream is the notebook's business
                pass
        if error is None:
            return {"status": "ok"}
        if isinstance(error, CellTimeout):
            return {"status": "timeout", "error": f"did not finish within {cell_timeout:g} s of CPU time"}
        info = describe_error(error, with_frames=True)
        where = ""
        if isinstance(error, SyntaxError):
            info["message"] = truncate(str(error.msg))
            where = f" (line {error.lineno})" if error.lineno else ""
        else:
            # The deepest frame in the notebook's own cells, not in a library it called.
            cell_frames = [f for f in info.get("frames", []) if f[0].startswith("<ipython-input-")]
            if cell_frames:
                _, line, name, _ = cell_frames[-1]
                where = f" (line {line}" + (f", in {name}()" if name != "<module>" else "") + ")"
        message = f"{info['type']}: {info['message']}" if info["message"] else info["type"]
        return {"status": "error", "error": truncate(message, 300) + where}

    def answer(self, name: str) -> dict:
        namespace = self.shell.user_ns if self.shell is not None else {}
        if name not in namespace:
            return {"state": "missing"}
        value = namespace[name]
        try:
            stub = is_stub(value) is True
        except Exception:  # noqa: BLE001 - an answer whose inspection fails is not a stub
            stub = False
        return {"state": "stub"} if stub else {"state": "value", "value": value}

    def wall_clock_spy(self, action):
        if action == "start":
            self.stop_spy()
            self.spy = LocalContext().__enter__()
            return 0
        count = self.spy.wall_clock_reads if self.spy is not None else 0
        if action == "stop":
            self.stop_spy()
        return count

    def stop_spy(self) -> None:
        if self.spy is not None:
            self.spy.__exit__(None, None, None)
            self.spy = None

    def serve_forever(self) -> None:
        while True:
            try:
                message = self.receive()
            except (EOFError, OSError):
                return
            if "q" not in message:
                return
            self.serve(message)


_SCALAR_TYPES = (str, bool, float, type(None))


def _remembered():
    from IPython.core.displayhook import DisplayHook

    class Remembered(DisplayHook):
        """A cell's last value kept in `_`, `Out` and `_N`, as in Jupyter, but not shown: nobody reads it here,
        and showing it would make a demo run that nothing else reads (`mode.made_when_read`)."""

        def write_output_prompt(self):
            pass

        def compute_format_data(self, result):
            return {}, {}

    return Remembered


@contextlib.contextmanager
def _own_allowance(cell_timeout: float):
    """A demo run made when first read gets a cell's CPU allowance of its own, as its cell had in a notebook;
    the limits of the cell or call that read it resume afterwards, with what they had left."""
    if threading.current_thread() is not threading.main_thread():   # signals reach the main thread only
        yield
        return
    timers = {which: signal.getitimer(which) for which in (signal.ITIMER_PROF, signal.ITIMER_REAL)}
    handler = signal.signal(signal.SIGPROF, _cell_timed_out)
    signal.setitimer(signal.ITIMER_REAL, 0)
    signal.setitimer(signal.ITIMER_PROF, cell_timeout)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_PROF, 0)
        signal.signal(signal.SIGPROF, handler if handler is not None else signal.SIG_DFL)
        for which, (left, interval) in timers.items():
            if left or interval:
                signal.setitimer(which, left or interval, interval)


def _instance_dict(obj):
    """obj's own __dict__ when reading it and its entries runs no learner code, else None."""
    cls = type(obj)
    if cls.__getattribute__ is not object.__getattribute__:
        return None
    for klass in cls.__mro__:
        own = type.__dict__["__dict__"].__get__(klass)
        if "__dict__" in own:
            descriptor = own["__dict__"]
            if type(descriptor) is not types.GetSetDescriptorType:
                return None
            d = descriptor.__get__(obj, cls)
            return d if type(d) is dict else None
    return None


def _plain_attribute(obj, name: str):
    """obj.name if it is a plain value (str, number, bool, None) kept in obj's __dict__, not shadowed by a descriptor; else UNSENT."""
    d = _instance_dict(obj)
    if d is None:
        return UNSENT
    value = d.get(name, UNSENT)
    if value is UNSENT:
        return UNSENT
    if not (type(value) in _SCALAR_TYPES or type(value) is int and -INT_LIMIT < value < INT_LIMIT):
        return UNSENT
    for klass in type(obj).__mro__:
        own = type.__dict__["__dict__"].__get__(klass)
        if name in own:
            kind = type(own[name])
            if hasattr(kind, "__set__") or hasattr(kind, "__delete__"):
                return UNSENT  # a data descriptor (a property) wins over the instance's __dict__
            break
    return value


def _class_function(obj, name: str) -> bool:
    """True if obj.name is a plain function of obj's class, not shadowed: the same method on every lookup."""
    cls = type(obj)
    if cls.__getattribute__ is not object.__getattribute__:
        return False
    d = _instance_dict(obj)
    if d is not None and name in d:
        return False
    for klass in cls.__mro__:
        own = type.__dict__["__dict__"].__get__(klass)
        if name in own:
            return type(own[name]) is types.FunctionType
    return False


def _reap() -> None:
    """Collect finished child processes (a fork bomb's), so they stop counting against RLIMIT_NPROC."""
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except (ChildProcessError, OSError):
            return
        if pid == 0:
            return


def _forked():
    """In a copy made by os.fork(): let go of the grader's pipe, so the copy cannot answer for the notebook."""
    if ENDPOINT is not None:
        for fd in (ENDPOINT.rfd, ENDPOINT.wfd):
            try:
                os.close(fd)
            except OSError:
                pass


def preload(everything: bool = False) -> None:
    """Import what the notebook and the child need before confinement (later imports still work).

    With `everything` (the fork server, which imports once for all its children) also what
    lessons import on first use, the slowest part of a child's start: SQLite through
    sqlite_utils, fakeredis, ipywidgets, and every lesson's exercises.
    """
    import labkit  # noqa: F401 - what `import labkit as lk` loads: the simulation kit, plots, widgets
    import IPython.core.interactiveshell  # noqa: F401
    import traitlets.config  # noqa: F401

    if everything:
        import importlib

        for name in ("sqlite_utils", "fakeredis", "ipywidgets"):
            try:
                importlib.import_module(name)
            except ImportError:
                pass
        from labkit import checking

        checking.all_exercises()


def main(config_json: str) -> None:
    """Entry point of the child (see the module docstring)."""
    global ENDPOINT, _MAIN_PID
    _MAIN_PID = os.getpid()
    config = json.loads(config_json)
    rfd, wfd = config["rfd"], config["wfd"]
    for fd in (rfd, wfd):
        os.set_inheritable(fd, False)  # programs the notebook starts do not get the grader's pipe
    ENDPOINT = endpoint = ChildEndpoint(rfd, wfd)
    try:
        preload()
        sandbox = confine(config)
    except BaseException as exc:  # noqa: BLE001 - report, and never run learner code unconfined
        endpoint.notify("hello", error=truncate(f"{type(exc).__name__}: {exc}\n{traceback.format_exc()}", 3000))
        os._exit(3)
    os.register_at_fork(after_in_child=_forked)
    endpoint.notify("hello", sandbox=sandbox)
    endpoint.serve_forever()
    sys.stdout.flush()
    os._exit(0)
