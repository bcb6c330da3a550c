"""One end of the grader's pipe: requests, replies, and the operations either side may ask for (course tooling)."""
from __future__ import annotations

import itertools

from labkit.grading.protocol import Codec, ProtocolError, check_request, describe_error, remote_error, truncate

OBJECT_OPS = ("getattr", "setattr", "call", "bool", "len", "repr", "str", "iter", "next", "getitem")


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
        number = next(self._numbers)
        self.send({"q": number, "op": op, **fields})
        self.depth += 1
        try:
            while True:
                message = self.receive()
                if "r" in message:
                    if message["r"] != number:
                        raise ProtocolError("a reply to a request that was not waiting for one")
                    if "ok" in message:
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
            reply = {"r": number, "ok": self.codec.encode(self.dispatch(op, message))}
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
        if type(args) is not list or type(kwargs) is not dict or not all(type(k) is str for k in kwargs):
            raise ProtocolError("call arguments must be a list and a dict with string keys")
        return args, kwargs

    def encode_call(self, args, kwargs) -> dict:
        return {"args": self.codec.encode(list(args)), "kwargs": self.codec.encode(dict(kwargs))}
