"""One end of the grader's pipe: requests, replies, and the operations either side may ask for (course tooling)."""
from __future__ import annotations

import itertools

from labkit.grading.protocol import Codec, ProtocolError, check_request, describe_error, remote_error, truncate

OBJECT_OPS = ("getattr", "setattr", "call", "callmethod", "bool", "len", "repr", "str", "iter", "next", "getitem")
MAX_AHEAD = 10_000  # attribute values the other side may keep sending ahead
UNUSED_AFTER = 64   # messages after which a value sent ahead but never read is given up


class Ahead:
    """Attribute values one side sends ahead with every message, so the other side reads them without asking.

    The two processes take turns: while one runs, the other waits for its next message and
    changes nothing. So a value read just before a message is sent stays true until the
    receiver sends one back, and the receiver can answer `obj.name` from it instead of
    asking. The sender watches the (object, attribute) pairs the receiver once asked for and
    sends only what changed since its last message (`"s"` in the message: `[handle, name,
    {"ok": value} or {"err": error}]`, or `[handle, name]` when a value cannot be sent
    ahead any more, such as a name that became a method). `"sr"` tells the receiver to forget
    everything it was sent: the grader says so at the start of each scenario. And every
    64 messages a receiver names the values it has not read since (`"uw"`) and forgets
    them, so the sender stops reading them: watching stays proportional to what the code
    reads now, not to every object it ever touched.
    """

    def __init__(self):
        self.watched: dict[tuple, object] = {}   # (handle, name) -> what we last sent
        self.received: dict[tuple, tuple] = {}   # (handle, name) -> ("ok", wire) | ("err", info)
        self.used: set[tuple] = set()            # received values read since the last "uw"
        self.sends = 0
        self.reset_pending = False

    def watch(self, handle: int, name: str) -> None:
        if len(self.watched) < MAX_AHEAD:
            self.watched.setdefault((handle, name), _UNSENT)

    def reset(self) -> None:
        """Forget both directions now, and tell the other side to forget with the next message."""
        self.watched.clear()
        self.received.clear()
        self.used.clear()
        self.reset_pending = True

    def stamp(self, message: dict, read, codec: Codec) -> dict:
        """`message` with what changed since our last one.

        `read(handle, name)` gives ("ok", value), ("err", exception) or None (cannot be sent
        ahead). A value equal to the last one sent, or the same object, is not encoded again.
        """
        if self.reset_pending:
            message["sr"] = 1
            self.reset_pending = False
        self.sends += 1
        if self.sends % UNUSED_AFTER == 0 and self.received:
            unused = [key for key in self.received if key not in self.used]
            for key in unused:
                del self.received[key]
            if unused:
                message["uw"] = [list(key) for key in unused]
            self.used.clear()
        if not self.watched:
            return message
        changes = dropped = None
        for key, last in self.watched.items():
            now = read(*key)
            if now is None:
                (dropped := dropped or []).append(key)
                continue
            kind, raw = now
            if last is not _UNSENT and kind == last[0]:
                # An unchanged plain value, tested inline: most of what is watched, on every message.
                t = type(raw)
                if t in _PLAIN:
                    if t is type(last[1]) and raw == last[1]:
                        continue
                elif _same(raw, last[1], last[3]):
                    continue
            try:
                wire = codec.encode(raw) if kind == "ok" else describe_error(raw, with_frames=False)
            except (ValueError, ProtocolError):
                (dropped := dropped or []).append(key)
                continue
            if last is _UNSENT or wire != last[2]:
                (changes := changes or []).append([key[0], key[1], {kind: wire}])
            self.watched[key] = (kind, raw, wire, _items(raw))
        if dropped:
            changes = changes or []
            for key in dropped:
                # Not watched again until it is asked for; the other side asks next time.
                if self.watched.pop(key) is not _UNSENT:
                    changes.append([key[0], key[1]])
        if changes:
            message["s"] = changes
        return message

    def absorb(self, message: dict, check_value=None) -> None:
        """Take in what the other side sent ahead with `message`; check_value(wire) may refuse a value."""
        if "sr" in message:
            self.watched.clear()
            self.received.clear()
            self.used.clear()
        unused = message.get("uw")
        if unused is not None:
            if type(unused) is not list:
                raise ProtocolError("unwatched values must be a list")
            for key in unused:
                if type(key) is list and len(key) == 2 and type(key[0]) is int and type(key[1]) is str:
                    self.watched.pop((key[0], key[1]), None)
        changes = message.get("s")
        if changes is None:
            return
        if type(changes) is not list:
            raise ProtocolError("values sent ahead must be a list")
        for change in changes:
            if type(change) is not list or len(change) not in (2, 3) or type(change[0]) is not int \
                    or type(change[1]) is not str:
                raise ProtocolError("a value sent ahead must be [handle, name] or [handle, name, value]")
            key = (change[0], change[1])
            if len(change) == 2:
                self.received.pop(key, None)
                continue
            value = change[2]
            if type(value) is not dict or len(value) != 1 or not ("ok" in value or "err" in value):
                raise ProtocolError("a value sent ahead must be {ok: value} or {err: error}")
            if "ok" in value:
                if check_value is not None:
                    check_value(value["ok"])
                entry = ("ok", value["ok"])
            else:
                entry = ("err", value["err"])
            if key not in self.received and len(self.received) >= MAX_AHEAD:
                raise ProtocolError(f"more than {MAX_AHEAD:,} values sent ahead")
            self.received[key] = entry

    def lookup(self, codec: Codec, handle: int, name: str):
        """The value sent ahead for `handle.name` (raising the error sent ahead), or _UNSENT."""
        key = (handle, name)
        entry = self.received.get(key)
        if entry is None:
            return _UNSENT
        self.used.add(key)
        if entry[0] == "ok":
            return codec.decode(entry[1])
        raise remote_error(entry[1])


_PLAIN = (str, int, float, bool, type(None))
_CONTAINERS = (list, tuple, dict, set, frozenset)


def _items(raw):
    """The items of a list or tuple, to tell later whether it still holds the same objects."""
    return tuple(raw) if type(raw) in (list, tuple) and len(raw) <= 100 else None


def _same(raw, last, last_items) -> bool:
    """True if `raw` surely encodes as `last` did: an equal plain value, the same object, or a list of the same objects."""
    t = type(raw)
    if t in _PLAIN:
        return t is type(last) and raw == last
    if t in (list, tuple):
        if last_items is None or len(raw) != len(last_items):
            return False
        for a, b in zip(raw, last_items):
            if a is not b or type(a) in _CONTAINERS:
                return False
        return True
    return raw is last and t not in _CONTAINERS


class _Unsent:
    __slots__ = ()

    def __repr__(self):
        return "<not sent ahead>"


_UNSENT = _Unsent()
UNSENT = _UNSENT


class Endpoint:
    """Sends requests and serves the other side's, nested: while it waits for a reply it serves callbacks.

    Subclasses provide `send(message)`, `receive() -> message`, `make_proxy(handle, desc)` and
    may extend `dispatch(op, message)`. `catch` is what a served request may raise and still
    get an error reply; anything else (a timeout, a broken pipe) unwinds the whole exchange.
    """

    catch: type | tuple = Exception
    with_frames = False
    max_depth = 50

    def __init__(self):
        self.codec = Codec(self.make_proxy)
        self._numbers = itertools.count(1)
        self.depth = 0
        self.ahead = Ahead()
        self.method_reply = False   # the last reply said: a method defined by the object's class
        self._mark_method = False

    # subclass hooks
    def send(self, message: dict) -> None:
        raise NotImplementedError

    def receive(self) -> dict:
        raise NotImplementedError

    def make_proxy(self, handle: int, desc: dict):
        raise NotImplementedError

    def on_notify(self, message: dict) -> None:
        raise ProtocolError("unexpected notification")

    # the exchange
    def request(self, op: str, **fields):
        """Send a request and return the decoded reply, serving the other side's requests meanwhile."""
        return self.await_reply(self.send_request(op, **fields))

    def send_request(self, op: str, **fields) -> int:
        """Send a request without waiting: its number, for `await_reply` (the grader works meanwhile)."""
        number = next(self._numbers)
        self.send({"q": number, "op": op, **fields})
        return number

    def await_reply(self, number: int):
        """The decoded reply to request `number`, serving the other side's requests until it comes."""
        self.depth += 1
        try:
            while True:
                message = self.receive()
                if "r" in message:
                    if message["r"] != number:
                        raise ProtocolError("a reply to a request that was not waiting for one")
                    if "ok" in message:
                        self.method_reply = message.get("m") == 1
                        return self.codec.decode(message["ok"])
                    raise remote_error(message.get("err"))
                if "q" in message:
                    self.serve(message)
                elif "n" in message:
                    self.on_notify(message)
                else:
                    raise ProtocolError("a message that is neither a request, a reply nor a notification")
        finally:
            self.depth -= 1

    def serve(self, message: dict) -> None:
        """Run one request from the other side and send its reply (an error reply if it raised)."""
        number, op = check_request(message)
        try:
            if self.depth > self.max_depth:
                raise RecursionError("calls between the grader and the notebook nested too deeply")
            self._mark_method = False
            reply = {"r": number, "ok": self.codec.encode(self.dispatch(op, message))}
            if self._mark_method:
                reply["m"] = 1
        except self.catch as exc:
            if isinstance(exc, self.fatal()):
                raise
            reply = {"r": number, "err": describe_error(exc, with_frames=self.with_frames)}
        self.send(reply)

    def fatal(self) -> tuple:
        """Exceptions that must unwind instead of becoming an error reply."""
        return (ProtocolError,)

    def dispatch(self, op: str, message: dict):
        """The generic object operations on one of this side's objects."""
        if op not in OBJECT_OPS:
            raise ValueError(f"unknown operation {truncate(op, 40)!r}")
        obj = self.target(message)
        if op == "getattr":
            return getattr(obj, self.name(message))
        if op == "setattr":
            setattr(obj, self.name(message), self.codec.decode(message.get("value")))
            return None
        if op == "call":
            args, kwargs = self.arguments(message)
            return obj(*args, **kwargs)
        if op == "callmethod":  # getattr and call in one round trip, looked up afresh each time
            args, kwargs = self.arguments(message)
            return getattr(obj, self.name(message))(*args, **kwargs)
        if op == "bool":
            return bool(obj)
        if op == "len":
            return len(obj)
        if op == "repr":
            return truncate(repr(obj))
        if op == "str":
            return truncate(str(obj))
        if op == "iter":
            return iter(obj)
        if op == "next":
            try:
                return {"done": False, "value": next(obj)}
            except StopIteration:
                return {"done": True}
        return obj[self.codec.decode(message.get("key"))]  # getitem

    def target(self, message: dict):
        handle = message.get("target")
        if type(handle) is not int or handle not in self.codec.objects:
            raise ProtocolError("a request about an object that was never sent")
        return self.codec.objects[handle]

    @staticmethod
    def name(message: dict) -> str:
        name = message.get("name")
        if type(name) is not str:
            raise ProtocolError("an attribute name must be a string")
        return name

    def arguments(self, message: dict) -> tuple[list, dict]:
        args, kwargs = self.codec.decode(message.get("args")), self.codec.decode(message.get("kwargs"))
        if type(args) is not list or type(kwargs) is not dict or kwargs and not all(type(k) is str for k in kwargs):
            raise ProtocolError("call arguments must be a list and a dict with string keys")
        return args, kwargs

    def encode_call(self, args, kwargs) -> dict:
        return {"args": self.codec.encode(list(args)),
                "kwargs": self.codec.encode(dict(kwargs)) if kwargs else {"$": "dict", "v": []}}
