"""The grader's wire protocol: JSON messages over a pipe between the grader and its child (course tooling).

A frame is a 4-byte big-endian length followed by that many bytes of UTF-8 JSON (never
pickle, so a message can only ever decode to plain data). Messages:

    {"q": n, "op": "getattr", ...}     a request, numbered by the side that sends it
    {"r": n, "ok": value}              the reply to request n ...
    {"r": n, "err": {...}}             ... or the error it raised
    {"n": "cell", ...}                 a notification (child to grader only, no reply)

Either side may send requests while it waits for a reply (the grader's clock is called
back from inside the learner's method), so replies arrive in last-in, first-out order.

A value is a JSON scalar, or an object tagged with "$": "list", "tuple", "set", "dict"
(a list of [key, value] pairs), "float" (nan and infinities), "..." (Ellipsis), "ref" (an
object that stays in the sender's process: the receiver gets a proxy) or "back" (one of
the receiver's own objects, sent back to it). Builtin data and its subclasses travel as
plain data, so an `str` subclass whose `__eq__` always says True arrives as a plain `str`.
"""
from __future__ import annotations

import itertools
import json
import math
import os
import struct
import traceback

from labkit.validate import plain_number

HEADER = struct.Struct(">I")
MAX_DEPTH = 60          # nesting of one value
MAX_ITEMS = 100_000     # a bigger container is sent as a reference, not by value
MAX_TEXT = 2_000        # characters of an error message or repr that cross the pipe
INT_LIMIT = 10 ** 300   # a bigger int is sent as a reference (computed once: Python does not fold it)
_LABKIT_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_SCALARS = (str, int, float, bool, type(None))
_SCALAR_SET = frozenset(_SCALARS)


class ProtocolError(Exception):
    """The other side broke the protocol: a malformed, oversized or unexpected message."""


def _no_constant(name):
    raise ValueError(f"{name} is not JSON")


# Built once: json.dumps and json.loads with options build a new encoder or decoder per call
# (about 3 us of every message).
_encode = json.JSONEncoder(separators=(",", ":"), allow_nan=False).encode
_decode = json.JSONDecoder(parse_constant=_no_constant).decode


def pack(message: dict) -> bytes:
    """One frame: the length, then the message as compact UTF-8 JSON (strict: no NaN)."""
    data = _encode(message).encode("utf-8")
    return HEADER.pack(len(data)) + data


def unpack(data) -> dict:
    """The message in one frame's body (bytes or a bytearray); ProtocolError for anything but a JSON object."""
    try:
        message = _decode(data.decode("utf-8"))
    except (ValueError, RecursionError, UnicodeDecodeError) as exc:
        raise ProtocolError(f"malformed message ({type(exc).__name__}: {str(exc)[:100]})") from None
    if type(message) is not dict:
        raise ProtocolError("a message must be a JSON object")
    return message


def truncate(text: str, limit: int = MAX_TEXT) -> str:
    """`text` cut to `limit` characters, saying so."""
    text = str.__str__(text) if isinstance(text, str) else str(text)
    return text if len(text) <= limit else text[:limit] + f"... [{len(text) - limit} more characters]"


class FrameBuffer:
    """Bytes in, whole messages out, refusing any frame longer than `max_size`."""

    def __init__(self, max_size: int):
        self.max_size = max_size
        self.data = bytearray()

    def feed(self, chunk: bytes) -> None:
        self.data += chunk

    def next(self) -> dict | None:
        """The next whole message, or None until more bytes arrive."""
        if len(self.data) < HEADER.size:
            return None
        (size,) = HEADER.unpack_from(self.data)
        if size > self.max_size:
            raise ProtocolError(f"a message of {size:,} bytes (the limit is {self.max_size:,})")
        if len(self.data) < HEADER.size + size:
            return None
        body = self.data[HEADER.size:HEADER.size + size]
        del self.data[:HEADER.size + size]
        return unpack(body)


# --- errors that cross the pipe ---------------------------------------------------------


def describe_error(exc: BaseException, *, with_frames: bool) -> dict:
    """An exception as plain data: type, message and (child side) the learner's own frames.

    The learner's frames are those outside labkit, the same rule `checking._describe_exception`
    applies locally, so the grader reports the same line a local check would.
    """
    if isinstance(exc, RemoteError):  # one that crossed the pipe before: keep its original type
        info = {"type": exc.type_name, "module": exc.remote_module}
    else:
        info = {"type": type(exc).__name__, "module": type(exc).__module__}
    try:
        info["message"] = truncate(str(exc))
    except BaseException:  # noqa: BLE001 - a learner's __str__ may raise anything
        info["message"] = "<the exception's message could not be shown>"
    if with_frames:
        frames = []
        for f in traceback.extract_tb(exc.__traceback__)[-50:]:
            if not os.path.abspath(f.filename).startswith(_LABKIT_DIR):
                frames.append([truncate(f.filename, 300), f.lineno or 0, truncate(f.name, 200),
                               truncate(f.line or "", 300)])
        info["frames"] = frames
    return info


class RemoteError(Exception):
    """An exception raised on the other side of the pipe, with its type name and the learner's frames.

    `labkit.checking` describes it like a local exception: `type_name` stands for the type
    and `learner_frames` (FrameSummary objects) for the traceback's frames outside labkit.
    When the remote type is a builtin exception, the instance is also an instance of that
    builtin (a remote TypeError is caught by `except TypeError`).
    """

    def __init__(self, info: dict):
        self.type_name = _text(info.get("type"), "Exception")
        self.remote_module = _text(info.get("module"), "")
        self.message = _text(info.get("message"), "")
        self.learner_frames = []
        frames = info.get("frames")
        if type(frames) is list:
            for f in frames[-50:]:
                if type(f) is list and len(f) == 4:
                    filename, lineno, name, line = f
                    self.learner_frames.append(traceback.FrameSummary(
                        _text(filename, "?"), lineno if type(lineno) is int else 0, _text(name, "?"),
                        line=_text(line, ""), lookup_line=False))
        super().__init__(self.message)

    def __str__(self) -> str:
        return self.message


def _text(value, default: str) -> str:
    return truncate(value) if type(value) is str else default


_REMOTE_TYPES: dict[tuple, type] = {}
# Not re-created as themselves: they steer control flow (a loop, the grader's Ctrl-C, exit).
_NOT_MIRRORED = {"KeyboardInterrupt", "SystemExit", "GeneratorExit", "StopIteration", "StopAsyncIteration"}


def _mirrored_class(name, module):
    """The exception class a remote error names, if it is a builtin or an already imported labkit one."""
    import builtins
    import sys

    if type(name) is not str or type(module) is not str or name in _NOT_MIRRORED:
        return None
    if module == "builtins":
        cls = getattr(builtins, name, None)
    elif module.startswith("labkit.") and not module.startswith("labkit.grading"):
        cls = getattr(sys.modules.get(module), name, None)  # never imports a module a message names
    else:
        return None
    if isinstance(cls, type) and issubclass(cls, Exception) and cls.__module__ == module:
        return cls
    return None


def remote_error(info) -> RemoteError:
    """A RemoteError for an error description, also an instance of the exception class it names.

    Builtins and labkit's own exceptions are mirrored: a remote TypeError is caught by
    `except TypeError`, and the grader's `ReplicaDown` by a notebook's `except lk.ReplicaDown`.
    """
    if type(info) is not dict:
        raise ProtocolError("an error reply must be an object")
    name, module = info.get("type"), info.get("module")
    base = _mirrored_class(name, module)
    cls = RemoteError
    if base is not None:
        cls = _REMOTE_TYPES.get((module, name))
        if cls is None:
            try:
                # Named like the original, so a message built from type(exc).__name__ reads the same.
                cls = type(name, (RemoteError, base), {"__module__": __name__})
            except TypeError:
                cls = RemoteError
            _REMOTE_TYPES[(module, name)] = cls
    try:
        return cls(info)
    except Exception:  # noqa: BLE001 - an exception whose constructor wants other arguments
        return RemoteError(info)


# --- values -----------------------------------------------------------------------------


class Codec:
    """Turns values into wire data and back, keeping the table of objects the other side may name.

    `make_proxy(handle, description)` builds the local stand-in for an object that stays on
    the other side; one proxy per handle, so identity (`a is b`) survives the trip.
    """

    def __init__(self, make_proxy, *, max_objects: int = 200_000):
        self.make_proxy = make_proxy
        self.max_objects = max_objects
        self.objects: dict[int, object] = {}     # our handle -> our object
        self._handle_of: dict[int, int] = {}     # id(our object) -> handle
        self.proxies: dict[int, object] = {}     # their handle -> our proxy
        self._proxy_handle: dict[int, int] = {}  # id(proxy) -> their handle
        self._serial = itertools.count(1)
        self._described: dict[int, dict] = {}  # handle -> its description (the receiver keeps the first anyway)
        self.granted: set[int] = set()  # handles of our callables the other side may call
        self.granting = False           # while True, every callable exported is granted

    # our objects
    def export(self, obj) -> int:
        """The handle the other side uses for `obj` (the table keeps it alive)."""
        handle = self._handle_of.get(id(obj))
        if handle is None or self.objects.get(handle) is not obj:
            if len(self.objects) >= self.max_objects:
                raise ProtocolError(f"more than {self.max_objects:,} objects crossed the pipe")
            handle = next(self._serial)
            self.objects[handle] = obj
            self._handle_of[id(obj)] = handle
        if self.granting and callable(obj):
            self.granted.add(handle)
        return handle

    def describe(self, obj) -> dict:
        """What the other side learns about an object it gets a reference to."""
        kind = "class" if isinstance(obj, type) else "function" if callable(obj) else "object"
        target = obj if kind != "object" else type(obj)
        name = getattr(target, "__qualname__", None) or getattr(target, "__name__", None)
        module = getattr(target, "__module__", None)
        desc = {"kind": kind, "name": truncate(name, 200) if isinstance(name, str) else type(obj).__name__,
                "module": truncate(module, 200) if isinstance(module, str) else ""}
        if kind == "class":
            try:
                mro = type.mro(obj)
            except Exception:  # noqa: BLE001
                mro = [obj]
            desc["labkit_bases"] = [[c.__module__, c.__qualname__] for c in mro
                                    if type(getattr(c, "__module__", None)) is str
                                    and c.__module__.startswith("labkit.")][:10]
        return desc

    def encode(self, value, depth: int = 0):
        """Wire data for `value`: builtin data by value (subclasses as their base), the rest by reference."""
        if depth > MAX_DEPTH:
            raise ValueError("a value nested more than 60 levels deep")
        t = type(value)
        if value is None or t is bool or t is str:
            return value
        if t is int:
            return value if -INT_LIMIT < value < INT_LIMIT else self._ref(value)
        if t is float:
            return value if math.isfinite(value) else {"$": "float", "v": repr(value)}
        if value is ...:
            return {"$": "..."}
        handle = self._proxy_handle.get(id(value))
        if handle is not None and self.proxies.get(handle) is value:
            return {"$": "back", "id": handle}
        # Exactly a list, tuple or dict (nothing overridden): the common case, before the subclass tests.
        if (t is list or t is tuple) and len(value) <= MAX_ITEMS:
            items = []
            for v in value:   # plain items inline: most arguments are a key or a number
                tv = type(v)
                if tv is str or tv is bool or v is None or tv is float and v - v == 0.0 \
                        or tv is int and -INT_LIMIT < v < INT_LIMIT:
                    items.append(v)
                else:
                    items.append(self.encode(v, depth + 1))
            return {"$": "list" if t is list else "tuple", "v": items}
        if t is dict and len(value) <= MAX_ITEMS:
            return {"$": "dict", "v": [[self.encode(k, depth + 1), self.encode(v, depth + 1)] for k, v in value.items()]}
        # Builtin data and subclasses of it, read through the base type's own methods so a
        # subclass cannot change what is sent (or run code while it is sent).
        if isinstance(value, str):
            return str.__str__(value)
        if isinstance(value, int):
            return self.encode(int.__int__(value), depth)
        if isinstance(value, float):
            return self.encode(float.__float__(value), depth)
        number = plain_number(value)
        if number is not None:
            return self.encode(number, depth)
        for base, tag in ((list, "list"), (tuple, "tuple"), (set, "set"), (frozenset, "set")):
            if isinstance(value, base) and base.__len__(value) <= MAX_ITEMS:
                return {"$": tag, "v": [self.encode(v, depth + 1) for v in base.__iter__(value)]}
        if isinstance(value, dict) and dict.__len__(value) <= MAX_ITEMS:
            return {"$": "dict", "v": [[self.encode(k, depth + 1), self.encode(v, depth + 1)]
                                       for k, v in dict.items(value)]}
        return self._ref(value)

    def _ref(self, value) -> dict:
        handle = self.export(value)
        desc = self._described.get(handle)
        if desc is None:
            desc = self._described[handle] = {"$": "ref", "id": handle, **self.describe(value)}
        return desc

    def decode(self, wire, depth: int = 0):
        """The value for wire data: builtins, our own objects sent back, or proxies."""
        if depth > MAX_DEPTH:
            raise ProtocolError("a value nested more than 60 levels deep")
        t = type(wire)
        if t in _SCALAR_SET:
            return wire
        if t is not dict:
            raise ProtocolError(f"a bare JSON {t.__name__} is not a value")
        tag = wire.get("$")
        items = wire.get("v")
        if tag in ("list", "tuple", "set"):
            if type(items) is not list:
                raise ProtocolError(f"a {tag} needs a list of items")
            values = [v if type(v) in _SCALAR_SET else self.decode(v, depth + 1) for v in items]
            if tag == "list":
                return values
            if tag == "tuple":
                return tuple(values)
            try:
                return set(values)
            except TypeError:
                raise ProtocolError("a set of unhashable items") from None
        if tag == "dict":
            if type(items) is not list or not all(type(p) is list and len(p) == 2 for p in items):
                raise ProtocolError("a dict needs a list of [key, value] pairs")
            try:
                return {self.decode(k, depth + 1): self.decode(v, depth + 1) for k, v in items}
            except TypeError:
                raise ProtocolError("a dict with an unhashable key") from None
        if tag == "float":
            if items not in ("nan", "inf", "-inf"):
                raise ProtocolError("a float tag must be nan, inf or -inf")
            return float(items)
        if tag == "...":
            return ...
        handle = wire.get("id")
        if type(handle) is not int:
            raise ProtocolError(f"unknown value tag {str(tag)[:40]!r}")
        if tag == "back":
            if handle not in self.objects:
                raise ProtocolError(f"a reference to object {handle}, which was never sent")
            return self.objects[handle]
        if tag == "ref":
            proxy = self.proxies.get(handle)
            if proxy is None:
                kind = wire.get("kind")
                if kind not in ("class", "function", "object"):
                    raise ProtocolError("a reference needs a kind: class, function or object")
                if len(self.proxies) >= self.max_objects:
                    raise ProtocolError(f"more than {self.max_objects:,} objects crossed the pipe")
                proxy = self.make_proxy(handle, {
                    "kind": kind, "name": _text(wire.get("name"), "?"), "module": _text(wire.get("module"), ""),
                    "labkit_bases": wire.get("labkit_bases") if type(wire.get("labkit_bases")) is list else []})
                self.proxies[handle] = proxy
                self._proxy_handle[id(proxy)] = handle
            return proxy
        raise ProtocolError(f"unknown value tag {str(tag)[:40]!r}")

    def handle_of_proxy(self, proxy) -> int | None:
        handle = self._proxy_handle.get(id(proxy))
        return handle if handle is not None and self.proxies.get(handle) is proxy else None


def check_request(message: dict) -> tuple[int, str]:
    """(number, op) of a request, or ProtocolError."""
    number, op = message.get("q"), message.get("op")
    if type(number) is not int or type(op) is not str:
        raise ProtocolError("a request needs an integer q and a string op")
    return number, op

