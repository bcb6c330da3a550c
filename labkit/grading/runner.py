"""Grade one notebook: run it in a sandboxed child, judge its answers here in the grader (course tooling).

The child runs the notebook's code cells and keeps the learner's classes and functions;
the grader runs each exercise's scenarios in its own process against proxies: calling a
proxy class constructs the object in the child, reading an attribute or calling a method
is a request over the pipe, and the grader's own objects (the simulation clock) stay here
and are lent to the child by reference. Every request has a deadline; when one passes,
the child and everything it started are killed and the checks it cuts short fail with a
message that names the exercise.
"""
from __future__ import annotations

import collections
import contextlib
import copy
import math
import os
import select
import sys
import threading
import time
import types
from dataclasses import dataclass, field
from pathlib import Path

from labkit import checking
from labkit.checking import FAILED, NOT_ATTEMPTED, Exercise, Fail, Report, Result
from labkit.grading.endpoint import _PLAIN, UNSENT, Endpoint
from labkit.checking.expose import exposed_names
from labkit.clock import gc_paused
from labkit.grading.notebook import (NotANotebook, Submission, cell_name, defining_cell, detect_lesson,
                                    read_submission)
from labkit.grading.protocol import (INT_LIMIT, MAX_TEXT, FrameBuffer, ProtocolError, RemoteError, describe_error, pack,
                                    truncate)
from labkit.grading import sandbox
from labkit.grading.sandbox import Child, Limits, UidPool

MAX_MESSAGE = 4 << 20        # bytes in one message from the child
MAX_CALLBACKS = 200_000      # requests the child may make of the grader, per submission
MAX_NOTIFICATIONS = 100_000
CELL_GRACE_S = 2.0           # the child interrupts a slow cell itself; the grader waits this much longer
MAX_RESTARTS = 3             # cells that end the child's process are skipped on a fresh start
MAX_CHECK_RESTARTS = 8       # fresh children for the checks after one stopped the last (a loop, a crash)

# Submission statuses, as they appear in the gradebook.
OK, NOT_ATTEMPTED_STATUS, TIMEOUT, ERROR = "ok", "not attempted", "timeout", "error"
NOT_A_NOTEBOOK, WRONG_LESSON, UNKNOWN_LESSON, GRADER_ERROR = ("not a notebook", "wrong lesson", "unknown lesson",
                                                              "grader error")


class GraderAbort(Fail):
    """The grader stopped the child; each check it cut short fails with this message."""

    status = ERROR

    def __init__(self, message: str, short: str = ""):
        super().__init__(message)
        self.short = short or message


class CodeTimeout(GraderAbort):
    """Learner code did not return in time (a call, a cell, or the submission's whole budget)."""

    status = TIMEOUT


class ChildGone(GraderAbort):
    """The child's process ended (os._exit, a crash, the kernel's OOM killer)."""


class BrokenProtocol(GraderAbort):
    """The child sent something that is not the protocol: malformed, oversized, too many."""


class SandboxFailure(GraderAbort):
    """The grader could not start its sandboxed child: the grader's problem, not the learner's."""

    status = GRADER_ERROR


class NotChecked(GraderAbort):
    """A check that could not run because the child had already been stopped."""

    def __init__(self, cause: GraderAbort):
        super().__init__(f"Not checked: the grader had already stopped your code ({cause.short}).", cause.short)
        self.status = cause.status


class _Expired(Exception):
    def __init__(self, kind: str):
        super().__init__(kind)
        self.kind = kind  # "cpu" or "wall"


class _Gone(Exception):
    pass


class _Progress(BaseException):
    """A part of the answer awaited came (`ParentEndpoint.await_progress`): back to the one who waits for it."""


class Budget:
    """CPU seconds of learner code left for one phase (the notebook's cells, or one exercise's checks)."""

    def __init__(self, total_s: float, what: str = "grading"):
        self.total_s = total_s
        self.used_s = 0.0
        self.what = what

    @property
    def remaining(self) -> float:
        return max(0.0, self.total_s - self.used_s)


class CpuMeter:
    """CPU seconds (user + system, every thread) the child has used.

    Read from the kernel's CPU-time clock of the child's process (clock_gettime on
    CPUCLOCK_SCHED of the pid, as clock_getcpuclockid(3) makes it: one system call, exact to
    the nanosecond), else from /proc/PID/stat (whole clock ticks, and a read and a parse: ~5 us
    of every request). Where neither is there, the wall clock stands in, and the limits are
    wall-clock limits.
    """

    def __init__(self, pid: int | None):
        self.fd = None
        self.clock = None
        self.closed = False
        self.last = 0.0
        self._tick = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
        if pid is not None:
            if hasattr(time, "clock_gettime") and sys.platform.startswith("linux"):
                clock = ((~pid) << 3) | 2  # MAKE_PROCESS_CPUCLOCK(pid, CPUCLOCK_SCHED)
                try:
                    time.clock_gettime(clock)
                    self.clock = clock
                except (OSError, OverflowError):
                    self.clock = None
            if self.clock is None:
                try:
                    self.fd = os.open(f"/proc/{pid}/stat", os.O_RDONLY | os.O_CLOEXEC)
                except OSError:
                    self.fd = None
        self._start = time.monotonic()

    @property
    def measures_cpu(self) -> bool:
        return self.clock is not None or self.fd is not None

    def seconds(self) -> float:
        if self.closed:
            return self.last
        if self.clock is not None:
            try:
                self.last = time.clock_gettime(self.clock)
            except OSError:
                pass  # the process is gone (reaped): its last reading stands
            return self.last
        if self.fd is None:
            self.last = time.monotonic() - self._start
            return self.last
        try:
            fields = os.pread(self.fd, 1024, 0).rsplit(b")", 1)[1].split()
            self.last = (int(fields[11]) + int(fields[12])) / self._tick  # utime, stime (fields 14, 15)
        except (OSError, IndexError, ValueError):
            pass  # the process is gone: its last reading stands
        return self.last

    def close(self) -> None:
        """Stop measuring (the child is gone): the last reading stands."""
        if not self.closed:
            self.seconds()
            self.closed = True
        self.clock = None
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


# --- proxies for the learner's objects ----------------------------------------------------


class RemoteObject:
    """The grader's handle on a learner object (or function) that lives in the child.

    Two things save round trips. A plain value in the object's own `__dict__` (a counter, a
    state string) that the grader read once is sent ahead by the child with every later
    message, so reading it again asks nothing. A name that turned out to be a method of the
    object's class becomes a `RemoteMethod`: calling it asks the child once to look the
    name up and call it, as `obj.name(...)` does locally.
    """

    __slots__ = ("_lk_endpoint", "_lk_handle", "_lk_desc", "_lk_methods")

    def __init__(self, endpoint, handle, desc):
        object.__setattr__(self, "_lk_endpoint", endpoint)
        object.__setattr__(self, "_lk_handle", handle)
        object.__setattr__(self, "_lk_desc", desc)
        object.__setattr__(self, "_lk_methods", {})

    def __getattr__(self, name):
        if name.startswith("__") and name.endswith("__"):
            raise AttributeError(name)  # copy, pickle and numpy probes never reach learner code
        method = self._lk_methods.get(name)
        if method is not None:
            return method
        ep = self._lk_endpoint
        if ep.broken is None:
            value = ep.ahead.lookup(ep.codec, self._lk_handle, name)
            if value is not UNSENT:
                return value
        value = ep.request("getattr", target=self._lk_handle, name=name,
                           what=f"reading .{name} of your {self._lk_desc['name']}")
        if ep.method_reply:
            self._lk_methods[name] = method = RemoteMethod(self, name)
            return method
        return value

    def __setattr__(self, name, value):
        ep = self._lk_endpoint
        ep.request("setattr", target=self._lk_handle, name=name, value=ep.codec.encode(value),
                   what=f"setting .{name} of your {self._lk_desc['name']}")

    def __call__(self, *args, **kwargs):
        return self._lk_endpoint.call(self._lk_handle, args, kwargs, f"calling {self._lk_desc['name']}()")

    def __bool__(self):
        value = self._lk_endpoint.request("bool", target=self._lk_handle, what=f"bool() of your {self._lk_desc['name']}")
        if type(value) is not bool:
            raise BrokenProtocol("The notebook's process answered bool() with something else.")
        return value

    def __len__(self):
        value = self._lk_endpoint.request("len", target=self._lk_handle, what=f"len() of your {self._lk_desc['name']}")
        if type(value) is not int or value < 0:
            raise BrokenProtocol("The notebook's process answered len() with something else.")
        return value

    def __iter__(self):
        ep = self._lk_endpoint
        iterator = ep.request("iter", target=self._lk_handle, what=f"iterating over your {self._lk_desc['name']}")
        handle = ep.codec.handle_of_proxy(iterator)
        if handle is None:
            raise BrokenProtocol("The notebook's process answered iter() with something else.")
        while True:
            step = ep.request("next", target=handle, what=f"iterating over your {self._lk_desc['name']}")
            if type(step) is not dict or step.get("done") is True:
                return
            yield step.get("value")

    def __getitem__(self, key):
        ep = self._lk_endpoint
        return ep.request("getitem", target=self._lk_handle, key=ep.codec.encode(key),
                          what=f"indexing your {self._lk_desc['name']}")

    def __repr__(self):
        ep = self._lk_endpoint
        if ep.broken is None:
            text = ep.request("repr", target=self._lk_handle, what=f"repr() of your {self._lk_desc['name']}")
            if type(text) is str:
                return truncate(text, 300)
        return f"<your {self._lk_desc['name']} object>"

    def __str__(self):
        ep = self._lk_endpoint
        if ep.broken is None:
            text = ep.request("str", target=self._lk_handle, what=f"str() of your {self._lk_desc['name']}")
            if type(text) is str:
                return truncate(text, MAX_TEXT)
        return f"<your {self._lk_desc['name']} object>"


class RemoteMethod:
    """`obj.name` for a method of a learner object's class: calling it is one request, looked up afresh in the child."""

    __slots__ = ("_lk_owner", "_lk_name", "_lk_what")

    def __init__(self, owner: RemoteObject, name: str):
        self._lk_owner, self._lk_name = owner, name
        self._lk_what = f"calling {owner._lk_desc['name']}.{name}()"  # built once, not on every call

    def __call__(self, *args, **kwargs):
        owner = self._lk_owner
        return owner._lk_endpoint.call(owner._lk_handle, args, kwargs, self._lk_what, method=self._lk_name)

    def __repr__(self):
        return f"<method {self._lk_name} of your {self._lk_owner._lk_desc['name']}>"


class RemoteClass(type):
    """Metaclass of the grader's stand-in for a learner's class: calling it constructs in the child.

    The stand-in is a real class, so `isinstance(Breaker, type)` holds, and it subclasses
    the labkit classes the learner's class derives from, so `issubclass(Breaker,
    lk.CircuitBreaker)` answers as it would locally.
    """

    def __call__(cls, *args, **kwargs):
        return cls._lk_endpoint.call(cls._lk_handle, args, kwargs, f"creating {cls.__qualname__}(...)")

    def __getattr__(cls, name):
        if name.startswith("__") and name.endswith("__") or name.startswith("_lk_"):
            raise AttributeError(name)
        return cls._lk_endpoint.request("getattr", target=cls._lk_handle, name=name,
                                        what=f"reading {cls.__qualname__}.{name}")

    def __repr__(cls):
        return f"<class {cls.__qualname__!r} from your notebook>"


def _remote_class(endpoint, handle, desc) -> type:
    bases = []
    for pair in desc.get("labkit_bases", [])[:1]:
        base = _labkit_class(pair)
        if base is not None:
            bases.append(base)
    namespace = {"_lk_endpoint": endpoint, "_lk_handle": handle, "__module__": desc["module"] or "__main__",
                 "__qualname__": desc["name"], "__doc__": None}
    name = desc["name"].rsplit(".", 1)[-1]
    try:
        return RemoteClass(name, tuple(bases), namespace)
    except TypeError:
        return RemoteClass(name, (), namespace)


def _labkit_class(pair):
    """The grader's own labkit class a child names, if it is already imported here (never import by name)."""
    import sys

    if type(pair) is not list or len(pair) != 2 or not all(type(p) is str for p in pair):
        return None
    module, qualname = pair
    obj = sys.modules.get(module) if module.startswith("labkit.") else None
    for part in qualname.split("."):
        if obj is None or part.startswith("_"):
            return None
        obj = getattr(obj, part, None)
    if isinstance(obj, type) and obj.__module__ == module and type(obj) is type:
        return obj
    return None


def _plain_wire(wire) -> None:
    """A learner value sent ahead must be plain: a string, number, bool or None."""
    if not (type(wire) in (str, int, float, bool, type(None))
            or type(wire) is dict and wire.get("$") == "float" and wire.get("v") in ("nan", "inf", "-inf")):
        raise ProtocolError("a value sent ahead must be a string, number, bool or None")


def _contains_proxy(value, depth=0) -> bool:
    if isinstance(value, (RemoteObject, RemoteClass)):
        return True
    if depth > 60:
        return False
    if isinstance(value, (list, tuple, set, frozenset)):
        return any(_contains_proxy(v, depth + 1) for v in value)
    if isinstance(value, dict):
        return any(_contains_proxy(k, depth + 1) or _contains_proxy(v, depth + 1) for k, v in value.items())
    return False


# --- the grader's end of the pipe ---------------------------------------------------------


@dataclass
class _Pending:
    """A request sent to the child and not yet answered, or its answer."""

    what: str                 # what the grader was doing, for the messages
    limit: float              # CPU seconds of the child it may take ...
    budget: "Budget"          # ... and the budget they are charged to
    exercise: str | None      # the exercise it belongs to, for the messages
    start: tuple[float, float] = (0.0, 0.0)   # child CPU and wall clock when the child started on it
    number: int = 0
    done: bool = False
    value: object = None
    error: BaseException | None = None
    parts: collections.deque = field(default_factory=collections.deque)   # sent ahead of the answer


class GraderEnd(Endpoint):
    """The grader's end of the exchange, whatever carries the messages: the child may only use what `expose` allows.

    `ParentEndpoint` carries them over the pipe to a live child; `labkit.grading.replay`
    carries them in memory (in the child, to write a scenario down) or from that record (in
    the grader, to replay it).
    """

    catch = Exception

    def __init__(self):
        super().__init__()
        self.broken: GraderAbort | None = None
        self.exercise: str | None = None
        self.callbacks = 0
        self._readable: dict[tuple[int, str], object] = {}   # (handle, exposed name) -> our object

    def fatal(self) -> tuple:
        return (ProtocolError, GraderAbort)

    def make_proxy(self, handle, desc):
        if desc["kind"] == "class":
            return _remote_class(self, handle, desc)
        return RemoteObject(self, handle, desc)

    def request(self, op: str, *, what: str = "", timeout: float | None = None, **fields):
        """Send a request, serving the child's meanwhile; `what` names it in a timeout's message, `timeout` its CPU limit."""
        if self.broken is not None:
            raise NotChecked(self.broken)
        return super().request(op, **fields)

    def _where(self) -> str:
        return f" (exercise {self.exercise})" if self.exercise else ""

    def abort(self, exc: GraderAbort) -> GraderAbort:
        if self.broken is None:
            self.broken = exc
        return exc

    def call(self, handle: int, args, kwargs, what: str, method: str | None = None):
        """Call a learner callable (or `method` of a learner object) in the child; our callables among the arguments become callable there."""
        self.codec.granting = True
        try:
            fields = self.encode_call(args, kwargs)
        finally:
            self.codec.granting = False
        if method is not None:
            return self.request("callmethod", target=handle, name=method, what=what, **fields)
        return self.request("call", target=handle, what=what, **fields)

    def _read_ahead(self, handle: int, name: str):
        """The current value of an exposed attribute the child reads, to send ahead (None: not a value)."""
        obj = self.codec.objects.get(handle)
        try:
            value = getattr(obj, name)
        except Exception as exc:  # noqa: BLE001 - sent ahead as the error the child would get
            return "err", exc
        if type(value) in _PLAIN:
            return "ok", value
        if callable(value) or isinstance(value, (types.ModuleType, type)):
            return None
        return "ok", value

    def plain_value(self, handle: int, name: str):
        """The value learner code reads as `obj.name` of our object `handle`, if it is an exposed plain value; else UNSENT.

        Plain: a string, a finite number, a bool or None, read without an error. Anything else
        (a method, an object, an error, a name not exposed) takes a request, as live.
        """
        key = (handle, name)
        obj = self._readable.get(key)
        if obj is None:
            obj = self.codec.objects.get(handle)
            if obj is None or name not in exposed_names(obj):
                return UNSENT
            self._readable[key] = obj   # a handle names one object for good, and exposure does not change
        try:
            value = getattr(obj, name)
        except Exception:  # noqa: BLE001 - the request path reports it
            return UNSENT
        t = type(value)
        if t is str or t is bool or value is None or t is int and -INT_LIMIT < value < INT_LIMIT \
                or t is float and value - value == 0.0:
            return value
        return UNSENT

    def plain_call(self, handle: int, args: list, kwargs: dict) -> tuple[str, object]:
        """Call our callable `handle` as a "call" request would, answered as ("ok", wire value) or ("err", error).

        For a call whose arguments are plain values, made where both ends are in one process
        (a record), and checked the same way in a replay.
        """
        self._count_request()
        obj = self.codec.objects.get(handle)
        if obj is None:
            raise ProtocolError("a call of an object that was never sent")
        try:
            return "ok", self.codec.encode(self._call(handle, obj, args, kwargs))
        except self.catch as exc:
            if isinstance(exc, self.fatal()):
                raise
            return "err", describe_error(exc, with_frames=self.with_frames)

    def _count_request(self) -> None:
        self.callbacks += 1
        if self.callbacks > MAX_CALLBACKS:
            raise self.abort(BrokenProtocol(
                f"Your code made more than {MAX_CALLBACKS:,} requests to the grader's objects{self._where()}; "
                "the grader stopped it.", f"more than {MAX_CALLBACKS:,} requests to the grader"))

    def _call(self, handle: int, obj, args: list, kwargs: dict):
        if handle not in self.codec.granted:
            raise TypeError(f"{type(obj).__name__!r} object is not callable")
        bad = [k for k in kwargs if not k.isidentifier()]
        if bad:  # such names end up in SQL column lists, attribute names...: refuse them here
            raise TypeError(f"keyword argument names must be Python identifiers, got {bad[0]!r}")
        return obj(*args, **kwargs)

    # what the child may ask of the grader's objects
    def dispatch(self, op: str, message: dict):
        self._count_request()
        obj = self.target(message)
        kind = type(obj).__name__
        if op == "getattr":
            name = self.name(message)
            if name not in exposed_names(obj):
                raise AttributeError(f"{kind!r} object has no attribute {name!r} that your code may use while "
                                     "it is graded")
            value = getattr(obj, name)
            if callable(value) or isinstance(value, (types.ModuleType, type)):
                if not (isinstance(value, (types.MethodType, types.BuiltinMethodType))
                        and getattr(value, "__self__", None) is obj):
                    raise AttributeError(f"{kind}.{name} is not available to your code while it is graded")
                self.codec.granted.add(self.codec.export(value))
            else:
                self.ahead.watch(message["target"], name)
            return value
        if op == "call":
            if message.get("target") not in self.codec.granted:
                raise TypeError(f"{kind!r} object is not callable")
            args, kwargs = self.arguments(message)
            return self._call(message["target"], obj, args, kwargs)
        if op in ("repr", "str"):
            return truncate(repr(obj), 300) if exposed_names(obj) else f"<the grader's {kind}>"
        if op == "bool":
            return bool(obj) if exposed_names(obj) else True
        raise TypeError(f"the grader's {kind} cannot be used that way ({truncate(op, 20)}) while grading")

    def answer(self, name: str):
        reply = self.request("answer", name=name, what=f"reading your answer {name}")
        if type(reply) is not dict or reply.get("state") not in ("missing", "stub", "value"):
            raise self.abort(BrokenProtocol("The notebook's process answered with something else.",
                                            "its process sent a malformed answer"))
        return reply


class ParentEndpoint(GraderEnd):
    """The grader's end of the pipe to a live child: every wait has a deadline.

    A deadline is a pair: CPU seconds of the child (what a limit means) and a wall-clock
    backstop (`Limits.wall_s`). The child's CPU time is read once per request from the
    grader's scenarios and once a second while the grader waits, so a loaded machine, the
    grader's own work and its callbacks cost the learner nothing.
    """

    def __init__(self, child: Child, limits: Limits, budget: Budget):
        super().__init__()
        self.child, self.limits, self.budget = child, limits, budget
        self.rfd, self.wfd = child.rfd, child.wfd
        os.set_blocking(self.rfd, False)
        os.set_blocking(self.wfd, False)
        self.buffer = FrameBuffer(MAX_MESSAGE)
        self.meter = CpuMeter(getattr(child, "pid", None))
        self.deadlines: list[tuple[float, float]] = []   # (child CPU seconds, wall clock)
        self.queue: collections.deque[_Pending] = collections.deque()   # sent, not answered yet, oldest first
        self._budget_deadline = (math.inf, math.inf)
        self._progress: "_Pending | None" = None   # the request whose parts `await_progress` waits for
        self._expired = "cpu"
        self.notifications = 0
        self.current_cell: int | None = None
        self.hello: dict | None = None
        self._pollers = {}
        for fd, event in ((self.rfd, select.POLLIN), (self.wfd, select.POLLOUT)):
            self._pollers[event] = poller = select.poll()
            poller.register(fd, event)

    def fatal(self) -> tuple:
        return (ProtocolError, GraderAbort, _Expired, _Gone)

    # pipe I/O with deadlines
    def _wait(self, event: int) -> None:
        poller = self._pollers[event]
        while True:
            cpu_deadline, wall_deadline = self.deadlines[-1] if self.deadlines else (math.inf, math.inf)
            left = wall_deadline - time.monotonic()
            if left <= 0:
                raise _Expired("wall")
            if poller.poll(min(left, 1.0) * 1000):
                return
            if cpu_deadline < math.inf and self.meter.seconds() >= cpu_deadline:
                raise _Expired("cpu")

    def send(self, message: dict) -> None:
        data = memoryview(pack(self.ahead.stamp(message, self._read_ahead, self.codec)))
        while data:
            try:
                data = data[os.write(self.wfd, data):]
            except BlockingIOError:
                self._wait(select.POLLOUT)  # the pipe is full: the child is not reading
            except OSError:
                raise _Gone() from None

    def receive(self) -> dict:
        while True:
            message = self.buffer.next()
            if message is not None:
                self.ahead.absorb(message, _plain_wire)
                return message
            self._wait(select.POLLIN)
            try:
                chunk = os.read(self.rfd, 1 << 16)
            except BlockingIOError:
                continue
            except OSError:
                raise _Gone() from None
            if not chunk:
                raise _Gone()
            self.buffer.feed(chunk)

    # requests, with deadlines and the budget
    def request(self, op: str, *, what: str = "", timeout: float | None = None, **fields):
        if self.deadlines:   # nested in a request the child is serving: its CPU clock runs on
            cpu, outer = self.meter.last, self.deadlines[-1]
            limit = self.limits.call_timeout_s if timeout is None else timeout
            self.deadlines.append((min(cpu + limit, outer[0]), min(time.monotonic() + self.limits.wall_s(limit), outer[1])))
            try:   # a deadline that passes unwinds to the outermost request, which names what it was
                return super().request(op, **fields)
            finally:
                self.deadlines.pop()
        return self.await_pending(self.send_pending(op, what=what, timeout=timeout, **fields))

    def send_pending(self, op: str, *, what: str = "", timeout: float | None = None, budget: Budget | None = None,
                     of_exercise: str | None = None, **fields) -> "_Pending":
        """Send a request and return at once; `await_pending` gives its reply.

        Several may be outstanding: the child answers them in order, and each one's clock
        (its CPU limit `timeout`, and the budget it is charged to) starts when the child has
        answered the one before. Meanwhile the grader may work on its own (a replay), but
        sends the child nothing else.
        """
        if self.broken is not None:
            raise NotChecked(self.broken)
        limit = self.limits.call_timeout_s if timeout is None else timeout
        pending = _Pending(what, limit, budget or self.budget, of_exercise or self.exercise)
        if not self.queue:
            pending.start = (self.meter.seconds(), time.monotonic())
        # A child that stops reading fills the pipe: the send waits, but not for ever.
        self.deadlines.append((math.inf, time.monotonic() + self.limits.wall_s(self.budget.total_s)))
        try:
            with self._stopping(what):
                pending.number = self.send_request(op, **fields)
        finally:
            self.deadlines.pop()
        self.queue.append(pending)
        return pending

    def await_progress(self, pending: "_Pending") -> None:
        """Wait until the child has answered `pending` or sent a part of its answer ahead (`_Pending.parts`)."""
        while not pending.done and not pending.parts:
            head = self.queue[0]
            self._finish(head, progress=head is pending)

    def await_pending(self, pending: "_Pending"):
        """The reply to a request `send_pending` sent (raising what it raised), once those before it are answered."""
        while not pending.done:
            self._finish(self.queue[0])
        if pending.error is not None:
            raise pending.error
        return pending.value

    def _finish(self, pending: "_Pending", progress: bool = False) -> None:
        """Wait for the child's answer to `pending`, the oldest one; with `progress`, or for a part sent ahead."""
        cpu, wall = pending.start
        budget = self.budget = pending.budget
        self.exercise = pending.exercise
        left = budget.remaining
        limit = min(pending.limit, left)
        self._budget_deadline = (cpu + left, wall + self.limits.wall_s(left))
        self.deadlines.append((cpu + limit, wall + self.limits.wall_s(limit)))
        self._progress = pending if progress else None
        partial = False
        try:
            with self._stopping(pending.what):
                pending.value = self.await_reply(pending.number)
        except _Progress:
            partial = True   # not answered yet: its clocks run on from its start
        except Exception as exc:  # noqa: BLE001 - kept for await_pending to raise
            pending.error = exc
        finally:
            self._progress = None
            self.deadlines.pop()
            if not partial:
                now = self.meter.seconds()
                budget.used_s += now - cpu
                pending.done = True
                self.queue.popleft()
                if self.queue:   # the child went on to the next one when it answered this one, at the latest
                    self.queue[0].start = (now, time.monotonic())

    @contextlib.contextmanager
    def _stopping(self, what: str):
        """A deadline passed, a child gone or a broken protocol stops the child, with a message that says so."""
        if self.broken is not None:
            raise NotChecked(self.broken)
        try:
            yield
        except _Expired as exc:
            self._expired = exc.kind
            raise self.abort(self._timeout(what)) from None
        except _Gone:
            raise self.abort(self._gone(what)) from None
        except ProtocolError as exc:
            raise self.abort(BrokenProtocol(
                f"The grader stopped your notebook's process: it broke the grader's protocol ({exc}) "
                f"while the grader was {what or 'waiting for it'}{self._where()}.",
                f"its process broke the protocol: {exc}")) from None

    def _timeout(self, what: str) -> CodeTimeout:
        if self.current_cell is not None:
            what = f"running {cell_name(self.current_cell)}"
        if self._expired == "wall":
            # It waited rather than computed (a sleep, a blocking read): only the backstop stops that.
            limit = self.limits.cell_timeout_s if self.current_cell is not None else self.limits.call_timeout_s
            wall = self.limits.wall_s(limit)
            return CodeTimeout(f"Your code did not finish within {wall:g} s of wall-clock time while the grader was "
                               f"{what}{self._where()}: is it sleeping or waiting for something that never comes?",
                               f"{what}{self._where()}: did not finish within {wall:g} s of wall-clock time")
        if self.meter.last >= self._budget_deadline[0] - 0.05:
            total = self.budget.total_s
            return CodeTimeout(f"Your notebook's code used up its {total:g} s of CPU time for {self.budget.what} "
                               f"while the grader was {what}{self._where()}: an infinite loop, or very slow code?",
                               f"{what}{self._where()}: used up its {total:g} s for {self.budget.what}")
        limit = self.limits.call_timeout_s
        if self.current_cell is not None:
            limit = self.limits.cell_timeout_s
            cell = cell_name(self.current_cell)
            return CodeTimeout(f"{cell.capitalize()} did not finish within {limit:g} s: an infinite loop?",
                               f"{cell} did not finish within {limit:g} s")
        return CodeTimeout(f"Your code did not finish within {limit:g} s: an infinite loop? "
                           f"(exercise {self.exercise}, while the grader was {what})" if self.exercise else
                           f"Your code did not finish within {limit:g} s while the grader was {what}: an infinite loop?",
                           f"{'exercise ' + self.exercise + ': ' if self.exercise else ''}your code did not finish "
                           f"within {limit:g} s ({what}): an infinite loop?")

    def stopped_in_record(self, what: str, kind: str) -> CodeTimeout:
        """The timeout of a call that ran out of `kind` ("cpu", "wall") time while the child recorded a scenario.

        Live, the grader would have stopped the child there: it stops it now, so the rest of
        the exercise runs in a fresh one, as it would have.
        """
        self._expired = kind
        self._budget_deadline = (math.inf, math.inf)
        return self.abort(self._timeout(what))

    def _gone(self, what: str) -> ChildGone:
        if self.current_cell is not None:
            what = f"running {cell_name(self.current_cell)}"
        return ChildGone(f"Your notebook's process ended while the grader was {what}{self._where()}: "
                         "os._exit(), a crash, or it ran out of memory.",
                         f"its process ended while the grader was {what}{self._where()}")

    def abort(self, exc: GraderAbort) -> GraderAbort:
        super().abort(exc)
        self.child.kill()
        self.meter.close()
        return exc

    def on_notify(self, message: dict) -> None:
        self.notifications += 1
        if self.notifications > MAX_NOTIFICATIONS:
            raise ProtocolError("too many notifications")
        if message.get("n") == "part" and self.queue and (message.get("data") is None
                                                         or type(message.get("data")) is str):
            head = self.queue[0]   # the child answers in order: a part belongs to the oldest request
            head.parts.append(message["data"])
            if self._progress is head:
                raise _Progress()
            return
        if message.get("n") == "cell" and type(message.get("index")) is int and len(self.deadlines) == 1:
            self.current_cell = message["index"]
            limit = self.limits.cell_timeout_s + CELL_GRACE_S
            self.deadlines[0] = (min(self._budget_deadline[0], self.meter.seconds() + limit),
                                 min(self._budget_deadline[1], time.monotonic() + self.limits.wall_s(limit)))
            return
        raise ProtocolError("an unexpected notification")

    # the phases of one submission
    def wait_hello(self) -> dict:
        self.deadlines.append((math.inf, time.monotonic() + self.limits.startup_timeout_s))
        try:
            message = self.receive()
        except _Expired:
            raise self.abort(SandboxFailure("The grader's sandboxed process did not start in time.",
                                            "the sandbox did not start in time")) from None
        except (_Gone, ProtocolError):
            raise self.abort(SandboxFailure("The grader's sandboxed process failed to start.",
                                            "the sandbox failed to start")) from None
        finally:
            self.deadlines.pop()
        if message.get("n") != "hello" or "error" in message or type(message.get("sandbox")) is not dict:
            error = truncate(str(message.get("error", "no hello")), 2000)
            raise self.abort(SandboxFailure(f"The grader's sandbox could not be set up: {error}",
                                            f"the sandbox could not be set up: {error}"))
        self.hello = message["sandbox"]
        return self.hello

    def run_notebook(self, cells: list, skip: set) -> list:
        self.current_cell = None
        results = self.request("run", what="running the notebook's cells", timeout=self.budget.remaining + 1,
                               cells=[[i, s] for i, s in cells], skip=sorted(skip),
                               cell_timeout=self.limits.cell_timeout_s)
        self.current_cell = None
        clean = []
        if type(results) is list:
            for r in results[:len(cells)]:
                if type(r) is dict and type(r.get("index")) is int and r.get("status") in (
                        "ok", "error", "timeout", "skipped"):
                    clean.append({"index": r["index"], "status": r["status"],
                                  **({"error": truncate(str(r["error"]), 400)} if r.get("error") else {})})
        return clean

class RemoteContext:
    """A scenario's `ctx` for learner code in the child: its wall-clock spy is installed there."""

    def __init__(self, endpoint: ParentEndpoint):
        self.endpoint = endpoint
        self._final: int | None = None

    def __enter__(self):
        self.endpoint.ahead.reset()  # each scenario watches only the attributes it reads
        self.endpoint.request("spy", action="start", what="starting a check")
        return self

    def __exit__(self, exc_type, exc, tb):
        try:
            self._final = _count(self.endpoint.request("spy", action="stop", what="finishing a check"))
        except GraderAbort:
            if exc_type is None:
                raise
        return False

    @property
    def wall_clock_reads(self) -> int:
        if self._final is not None:
            return self._final
        if self.endpoint.broken is not None:
            return 0
        return _count(self.endpoint.request("spy", action="count", what="counting wall-clock reads"))


class NoCodeContext:
    """A scenario's `ctx` for an answer that is plain data: no learner code runs, so no clock is read."""

    wall_clock_reads = 0

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def _count(value) -> int:
    return value if type(value) is int and value >= 0 else 0


# --- one submission -----------------------------------------------------------------------


@dataclass
class Graded:
    """The outcome for one submission: the gradebook record (plain data) and the exercise reports."""

    record: dict
    reports: list[Report] = field(default_factory=list)

    @property
    def status(self) -> str:
        return self.record["status"]


class DataAnswerCache:
    """Reports for plain-data answers, shared by a batch: scenarios are seeded, so equal data, equal verdict."""

    def __init__(self):
        self._reports: dict = {}
        self._lock = threading.Lock()

    def get(self, key):
        with self._lock:
            return self._reports.get(key)

    def put(self, key, report) -> None:
        with self._lock:
            self._reports[key] = report


def empty_record(path: Path) -> dict:
    return {"submission": str(path), "sha256": None, "lesson": None, "status": GRADER_ERROR, "reason": "",
            "points": {}, "public": 0.0, "hidden": 0.0, "total": 0.0, "max_public": 0.0, "max_hidden": 0.0,
            "max_total": 0.0, "exercises": {}, "cells": [], "sandbox": {}, "scenarios": {}, "output": "",
            "seconds": 0.0}


def lesson_exercises(lesson: str) -> list[Exercise]:
    return [e for e in checking.all_exercises() if e.id.split(".")[0] == lesson]


_warming: threading.Thread | None = None


def _warm_up() -> None:
    """Import what the scenarios build their objects with, in the background, once per grader process.

    labkit imports SQLite (sqlite_utils) and fakeredis on first use, as they are slow to
    import (a quarter of a second); the grader would otherwise pay that in its first
    scenario, while the child is starting and running the notebook and the grader waits.
    """
    global _warming
    if _warming is None:
        def imports():
            try:
                import fakeredis  # noqa: F401
                import sqlite_utils  # noqa: F401
            except ImportError:
                pass

        _warming = threading.Thread(target=imports, name="labkit-warm-up", daemon=True)
        _warming.start()


def grade_notebook(path, *, limits: Limits | None = None, expected_lesson: str | None = None,
                   uid_pool: UidPool | None = None, base_dir: str | None = None,
                   cache: DataAnswerCache | None = None, submission: Submission | None = None) -> Graded:
    """Grade one notebook file the way `labkit grade` does; never raises for a bad submission."""
    import tempfile

    path = Path(path)
    limits = limits or Limits()
    started = time.monotonic()
    record = empty_record(path)
    graded = Graded(record)
    own_base = base_dir is None
    if own_base:
        base_dir = tempfile.mkdtemp(prefix="labkit-grade-")
        if os.geteuid() == 0:
            os.chmod(base_dir, 0o711)
    if uid_pool is None and os.geteuid() == 0:
        uid_pool = UidPool()
    try:
        try:
            submission = submission or read_submission(path)
        except NotANotebook as exc:
            record.update(status=exc.status, reason=str(exc), sha256=exc.sha256)  # not a notebook, too big
            return graded
        record["sha256"] = submission.sha256
        everything = checking.all_exercises()
        lesson = detect_lesson(submission, everything)
        record["lesson"] = lesson
        if lesson is None:
            record.update(status=UNKNOWN_LESSON, reason="no lk.check(...) call, answer name or NN_ filename of "
                                                        "any lesson was found")
            return graded
        if expected_lesson is not None and lesson != expected_lesson:
            record.update(status=WRONG_LESSON, reason=f"this notebook is lesson {lesson}, not {expected_lesson}")
            return graded
        exercises = lesson_exercises(lesson)
        _warm_up()
        _grade_in_child(graded, submission, exercises, limits, uid_pool, base_dir, cache)
    except Exception as exc:  # noqa: BLE001 - a grader bug: record it, keep the batch going
        import traceback

        record.update(status=GRADER_ERROR, reason=truncate(f"{type(exc).__name__}: {exc}", 300),
                      traceback=traceback.format_exc()[-3000:])
    finally:
        record["seconds"] = round(time.monotonic() - started, 2)
        if own_base:
            import shutil

            shutil.rmtree(base_dir, ignore_errors=True)
    return graded


# What a child never needs from the checkout: the solutions and the tests (Landlock leaves them out
# as well; as root they are covered in the child's own mount namespace).
# Only in a checkout: installed into site-packages, labkit's parent folder is everyone's.
_REPOSITORY_PRIVATE = ([os.path.join(sandbox.REPOSITORY, d) for d in ("solutions", "tests", "benchmarks")]
                       if os.path.isfile(os.path.join(sandbox.REPOSITORY, "pyproject.toml")) else [])


def hidden_test_files() -> list[str]:
    """The files that define hidden scenarios (loaded into the grader before any child starts)."""
    files = set()
    for exercise in checking.all_exercises():
        for scenario in exercise.scenarios:
            if scenario.hidden:
                filename = getattr(getattr(scenario.fn, "__code__", None), "co_filename", None)
                if isinstance(filename, str) and os.path.isfile(filename):
                    files.add(os.path.abspath(filename))
                    files.add(os.path.dirname(os.path.abspath(filename)))
    return sorted(files)


class _Session:
    """The child that runs one submission's notebook, started again (same cells skipped) after a check stopped it."""

    def __init__(self, record: dict, submission: Submission, exercises: list[Exercise], limits: Limits, uid_pool,
                 base_dir: str, replay: bool = True):
        self.record, self.submission, self.exercises, self.limits = record, submission, exercises, limits
        self.uid_pool, self.base_dir = uid_pool, base_dir
        self.skipped: dict[int, dict] = {}
        self.child: Child | None = None
        self.endpoint: ParentEndpoint | None = None
        self.cells: list = []
        self.answers: dict = {}
        self.first_abort: GraderAbort | None = None
        self.restarts = 0
        self.keep_output = True
        self.must_hide = hidden_test_files()
        self.replay = replay
        self.budgets: dict[str, Budget] = {}
        self.recordings: dict[tuple[str, int], _Recording] = {}   # (exercise id, scenario index) -> its record
        self.replayed = self.live = 0   # public scenarios graded from a record, and scenarios run live
        # RLIMIT_CPU of the child: everything the grader may ask of one process, plus its start.
        self.cpu_s = (limits.timeout_s + len(exercises) * limits.exercise_timeout_s + limits.startup_timeout_s + 10)

    def start(self) -> None:
        """Run the notebook in a fresh child, skipping cells that hung or ended the process, then read the answers."""
        limits = self.limits
        budget = Budget(limits.timeout_s, "the notebook's cells")
        cells: list = []
        for attempt in range(MAX_RESTARTS + 1):
            self.close_child()
            self.child = Child(self.submission.data, self.submission.path.name, self.base_dir, limits,
                               uid_pool=self.uid_pool, cpu_s=self.cpu_s, hide=_REPOSITORY_PRIVATE,
                               must_hide=self.must_hide)
            self.endpoint = endpoint = ParentEndpoint(self.child, limits, budget)
            self.record["sandbox"] = hello = endpoint.wait_hello()
            if self.must_hide and hello.get("hidden_tests") != "unreadable (checked)":
                endpoint.abort(SandboxFailure(
                    "The hidden tests would be readable by the submission's process (no Landlock, and not "
                    "running as root): grade as root, or on a Linux with Landlock, or without --hidden.",
                    "the hidden tests would be readable by the submission (needs root or Landlock)"))
                raise endpoint.broken
            try:
                cells = endpoint.run_notebook(self.submission.cells, set(self.skipped))
                break
            except (CodeTimeout, ChildGone) as exc:
                cell = endpoint.current_cell
                if cell is None or cell in self.skipped or budget.remaining < 1 or attempt == MAX_RESTARTS:
                    raise
                # The cell hung past its limit or ended the process: run the notebook again without it.
                how = (f"did not finish within {limits.cell_timeout_s:g} s" if isinstance(exc, CodeTimeout)
                       else "ended the notebook's process")
                self.skipped[cell] = {"index": cell, "status": "timeout" if isinstance(exc, CodeTimeout)
                                      else "crashed", "error": f"{how}; the notebook was run again without it"}
        self.cells = [self.skipped.get(c["index"], c) for c in cells]
        self.answers = {}
        for exercise in self.exercises:
            try:
                self.answers[exercise.id] = self.endpoint.answer(exercise.answer_name)
            except (GraderAbort, RemoteError) as exc:
                self.answers[exercise.id] = exc
        if self.endpoint.broken is not None and self.first_abort is None:
            self.first_abort = self.endpoint.broken

    def budget_of(self, exercise: Exercise) -> Budget:
        """The CPU budget of an exercise's checks: its own, so one hang costs only what it breaks."""
        if exercise.id not in self.budgets:
            self.budgets[exercise.id] = Budget(self.limits.exercise_timeout_s, f"exercise {exercise.id}'s checks")
        return self.budgets[exercise.id]

    def ask_for_records(self, exercise: Exercise, index: int) -> None:
        """Ask the child for the record of every public scenario still to check, from `index` of `exercise` on.

        All at once: the child records the next ones while the grader replays the first.
        Each is charged to its own exercise's budget, from when the child starts on it.
        """
        later = False
        for other in self.exercises:
            later = later or other is exercise
            answer = self.answers.get(other.id)
            if not later or not (type(answer) is dict and answer.get("state") == "value"
                                 and _contains_proxy(answer.get("value"))):
                continue
            for i, scenario in enumerate(other.scenarios):
                if not scenario.hidden and (other is not exercise or i >= index):
                    self.recordings[other.id, i] = _Recording(other, scenario, self.endpoint, self.budget_of(other))

    def restart(self) -> bool:
        """A fresh child for the checks still to run, after one stopped the last; False if that is not possible."""
        if self.restarts >= MAX_CHECK_RESTARTS:
            return False
        self.restarts += 1
        try:
            self.start()
        except GraderAbort:
            return False
        return True

    def close_child(self) -> None:
        if self.child is not None:
            if self.keep_output:
                self.record["output"] = self.child.output()
            self.child.close()
            self.child = None
        if self.endpoint is not None:
            self.endpoint.meter.close()


def _grade_in_child(graded: Graded, submission: Submission, exercises: list[Exercise], limits: Limits,
                    uid_pool, base_dir: str, cache) -> None:
    record = graded.record
    session = _Session(record, submission, exercises, limits, uid_pool, base_dir, limits.replay)
    try:
        try:
            session.start()
        except GraderAbort as exc:
            session.first_abort = exc
            graded.reports = [_all_failed(exercise, str(exc)) for exercise in exercises]
        else:
            record["cells"] = [c for c in session.cells if c["status"] != "ok"]
            record["output"] = session.child.output()
            session.keep_output = False
            for exercise in exercises:
                graded.reports.append(_judge_exercise(exercise, session, submission, cache))
    finally:
        session.close_child()
    # How the learner-code scenarios were graded: from the child's record, or live (hidden ones, and any
    # whose record diverged from the grader's run). All public ones replay unless something is amiss.
    record["scenarios"] = {"replayed": session.replayed, "live": session.live}
    _summarise(graded, exercises, session.first_abort, session.cells)


def _judge_exercise(exercise: Exercise, session: _Session, submission: Submission, cache) -> Report:
    """One exercise's report. Learner code in the child is checked one scenario at a time, within the
    exercise's own CPU budget; a scenario that stops the child costs only itself: the next one runs in a
    fresh child."""
    answer = session.answers[exercise.id]
    if not (type(answer) is dict and answer.get("state") == "value" and _contains_proxy(answer.get("value"))):
        return _judge(exercise, answer, session.endpoint, submission, session.cells, cache)
    budget = session.budget_of(exercise)
    results: list[Result] = []
    stopped: GraderAbort | None = None
    for index, scenario in enumerate(exercise.scenarios):
        if session.endpoint.broken is not None:
            stopped = stopped or session.endpoint.broken
            answer = None
            if budget.remaining > 0.05 and session.restart():
                answer = session.answers[exercise.id]
            if not (type(answer) is dict and answer.get("state") == "value" and _contains_proxy(answer.get("value"))):
                why = (f"exercise {exercise.id} used up its {budget.total_s:g} s of CPU time"
                       if budget.remaining <= 0.05 else stopped.short)
                results.append(Result(exercise.id, scenario.name, FAILED, 0, scenario.points,
                                      f"Not checked: the grader had already stopped your code ({why}).",
                                      scenario.hidden))
                continue
        endpoint = session.endpoint
        endpoint.budget, endpoint.exercise = budget, exercise.id
        replayed = None
        if session.replay and not scenario.hidden:
            recording = session.recordings.get((exercise.id, index))
            if recording is None or recording.endpoint is not endpoint:
                session.ask_for_records(exercise, index)
                recording = session.recordings[exercise.id, index]
            replayed = recording.replayed()
        if replayed is not None:
            results.extend(replayed)
            session.replayed += 1
        else:
            single = copy.copy(exercise)
            single.scenarios = [scenario]
            results.extend(single.run(answer["value"], ctx_factory=lambda: RemoteContext(endpoint),
                                      include_hidden=True).results)
            session.live += 1
        if endpoint.broken is not None and session.first_abort is None:
            session.first_abort = endpoint.broken
    return Report(exercise.id, exercise.title, results)


class _Recording:
    """A public scenario's record (`labkit.grading.replay`), asked of the child, maybe not back yet."""

    def __init__(self, exercise: Exercise, scenario, endpoint: ParentEndpoint, budget: Budget):
        from labkit.grading import replay

        self.exercise, self.scenario, self.endpoint = exercise, scenario, endpoint
        self.stopped: GraderAbort | None = None
        index = next(i for i, s in enumerate(replay.public_scenarios(exercise)) if s is scenario)
        limits = endpoint.limits
        self.pending = None
        try:
            self.pending = endpoint.send_pending(
                "record", exercise=exercise.id, scenario=index, name=scenario.name,
                call_cpu_s=limits.call_timeout_s, call_wall_s=limits.wall_s(limits.call_timeout_s),
                what=f"checking {scenario.name!r}", timeout=budget.total_s, budget=budget, of_exercise=exercise.id)
        except GraderAbort as exc:
            self.stopped = exc

    def more(self) -> str:
        """The next text of the record as the child sends it: each part sent ahead, then the answer.

        Raises `replay.Restarted` where the child recorded the scenario again, and
        `replay.Diverged` where it did not finish: it stopped (`stopped`: the scenario failed
        as it would have live) or could not record it (run it live).
        """
        from labkit.grading import replay

        pending = self.pending
        if pending is None:
            raise replay.Diverged("nothing more was recorded")
        self.endpoint.await_progress(pending)   # what stops the child ends `pending` with the error
        if pending.parts:
            part = pending.parts.popleft()
            if part is None:
                raise replay.Restarted()
            return part
        self.pending = None
        if isinstance(pending.error, GraderAbort):   # it looped past the exercise's budget, or ended its process
            self.stopped = pending.error
        if pending.error is not None:
            raise replay.Diverged("the child did not finish the record")   # a RemoteError: too big, or a changed labkit
        return pending.value

    def replayed(self) -> list[Result] | None:
        """The scenario's results, graded by replaying the record against the grader's own objects as it comes;
        None: run it live."""
        from labkit.grading import replay

        scenario = self.scenario
        report, complete = None, False
        for _ in range(replay.MAX_RERECORDS + 1):
            if self.stopped is not None:
                break
            try:
                with gc_paused():   # the record is a container per message: the collector would scan them again and again
                    replaying = replay.ReplayEndpoint(self.more, self.endpoint, self.exercise.id)
                    try:
                        report = replay.run_scenario(replaying, self.exercise, scenario)
                        complete = replaying.complete
                    finally:
                        replaying.close()
            except replay.Restarted:
                continue
            except replay.Diverged:
                complete = False
            break
        if self.pending is not None and self.stopped is None:   # left before its end: the rest comes first
            try:
                self.endpoint.await_pending(self.pending)
            except GraderAbort as exc:
                self.stopped = exc
            except RemoteError:
                pass
            self.pending = None
        if self.stopped is not None:
            return [Result(self.exercise.id, scenario.name, FAILED, 0, scenario.points, str(self.stopped),
                           scenario.hidden)]
        return report.results if report is not None and complete else None


def _judge(exercise: Exercise, answer, endpoint: ParentEndpoint, submission: Submission, cells: list,
           cache) -> Report:
    name = exercise.answer_name
    if isinstance(answer, GraderAbort):
        return _all_failed(exercise, str(answer))
    if isinstance(answer, RemoteError):
        return _all_failed(exercise, f"The grader could not read your {name} ({answer.type_name}: {answer}).")
    if answer["state"] == "missing":
        return _not_attempted(exercise, _missing_message(name, submission, cells))
    if answer["state"] == "stub":
        return exercise.run(..., ctx_factory=NoCodeContext, include_hidden=True)
    value = answer.get("value")
    if _contains_proxy(value):
        return exercise.run(value, ctx_factory=lambda: RemoteContext(endpoint), include_hidden=True)
    key = None
    if cache is not None:
        try:
            key = (exercise.id, tuple(map(id, exercise.scenarios)), repr(endpoint.codec.encode(value)))
        except Exception:  # noqa: BLE001
            key = None
        report = cache.get(key) if key else None
        if report is not None:
            return report
    report = exercise.run(value, ctx_factory=NoCodeContext, include_hidden=True)
    if key is not None:
        cache.put(key, report)
    return report


def _missing_message(name: str, submission: Submission, cells: list) -> str:
    cell = defining_cell(submission, name)
    problem = next((c for c in cells if c["index"] == cell and c["status"] != "ok"), None)
    if problem is not None:
        return (f"{name} is not defined: its cell raised {problem.get('error', 'an error')}. Fix that cell and "
                "run the notebook from the top.")
    return (f"{name} is not defined. Was its cell deleted, renamed, or never run? Keep the name "
            f"{name} from the starter cell.")


def _not_attempted(exercise: Exercise, message: str) -> Report:
    return Report(exercise.id, exercise.title, [Result(exercise.id, s.name, NOT_ATTEMPTED, 0, s.points, message,
                                                       s.hidden) for s in exercise.scenarios])


def _all_failed(exercise: Exercise, message: str) -> Report:
    return Report(exercise.id, exercise.title, [Result(exercise.id, s.name, FAILED, 0, s.points, message, s.hidden)
                                                for s in exercise.scenarios])


def _summarise(graded: Graded, exercises: list[Exercise], broken: GraderAbort | None, cells: list) -> None:
    record = graded.record
    reports = {r.exercise: r for r in graded.reports}
    ordered = [reports[e.id] for e in exercises if e.id in reports]
    graded.reports = ordered
    record["exercises"] = {r.exercise: r.to_dict() for r in ordered}
    record["points"] = {r.exercise: r.score for r in ordered}
    results = [res for r in ordered for res in r.results]
    record["public"] = sum(r.points for r in results if not r.hidden)
    record["hidden"] = sum(r.points for r in results if r.hidden)
    record["max_public"] = sum(r.max_points for r in results if not r.hidden)
    record["max_hidden"] = sum(r.max_points for r in results if r.hidden)
    record["total"] = record["public"] + record["hidden"]
    record["max_total"] = record["max_public"] + record["max_hidden"]
    if broken is not None:
        record["status"] = broken.status
        record["reason"] = truncate(broken.short, 300)
    elif ordered and all(r.status == NOT_ATTEMPTED for r in ordered):
        record["status"] = NOT_ATTEMPTED_STATUS
        record["reason"] = truncate(_not_attempted_reason(ordered, exercises), 300)
    else:
        record["status"] = OK
        # A row that scores 0 somewhere says why: an answer missing (renamed, deleted) or left as `...`.
        reasons = [_not_attempted_reason([r for r in ordered if r.status == NOT_ATTEMPTED], exercises)]
        problems = [c for c in cells if c["status"] != "ok"]
        if problems:
            first = problems[0]
            reasons.append(f"{len(problems)} cell(s) did not run cleanly; first: {cell_name(first['index'])} "
                           f"{first['status']}: {first.get('error', '')}")
        record["reason"] = truncate("; ".join(r for r in reasons if r), 300)


def _not_attempted_reason(reports: list[Report], exercises: list[Exercise]) -> str:
    """'03.1, 03.2: CircuitBreaker is not defined. ...; 03.3: still the starter's ...' for these reports."""
    by_message: dict[str, list[str]] = {}
    for r in reports:
        message = r.results[0].message if r.results else ""
        stub = any(message == e.stub_message for e in exercises)
        by_message.setdefault("still the starter's ..." if stub else message, []).append(r.exercise)
    return "; ".join(f"{', '.join(ids)}: {m}" for m, ids in by_message.items())
