"""The grader's wire protocol and the rules for what a child may ask of the grader's objects."""
from __future__ import annotations

import os

import pytest

from labkit import Sim
from labkit.grading.protocol import (Codec, FrameBuffer, ProtocolError, RemoteError, pack, remote_error,
                                     unpack)
from labkit.grading.runner import Budget, ParentEndpoint
from labkit.grading.sandbox import Limits


def test_frames_round_trip_and_refuse_oversized_or_malformed_messages():
    buffer = FrameBuffer(max_size=100)
    frame = pack({"q": 1, "op": "getattr", "name": "now"})
    buffer.feed(frame[:3])
    assert buffer.next() is None
    buffer.feed(frame[3:])
    assert buffer.next() == {"q": 1, "op": "getattr", "name": "now"}
    buffer.feed((10 ** 6).to_bytes(4, "big"))
    with pytest.raises(ProtocolError, match="1,000,000 bytes"):
        buffer.next()
    for body in (b"{oops", b"[1, 2]", b"NaN", b'{"x": NaN}', b"\xff\xfe", b"[" * 100_000):
        with pytest.raises(ProtocolError):
            unpack(body)
    with pytest.raises(ValueError):
        pack({"x": float("nan")})


class Sneaky(str):
    def __eq__(self, other):
        return True

    __hash__ = str.__hash__


class SneakyInt(int):
    def __int__(self):
        raise RuntimeError("never called")


def _pair():
    a = Codec(lambda handle, desc: ("proxy", handle, desc["kind"]))
    return a, Codec(lambda handle, desc: ("proxy", handle, desc["kind"]))


def test_builtin_data_travels_by_value_and_subclasses_arrive_as_their_base():
    sender, receiver = _pair()
    value = {"state": Sneaky("closed"), "n": SneakyInt(3), "xs": (1, 2.5, None, ...), "inf": float("inf"),
             4: {True, False}}
    got = receiver.decode(sender.encode(value))
    assert got == {"state": "closed", "n": 3, "xs": (1, 2.5, None, ...), "inf": float("inf"), 4: {True, False}}
    assert type(got["state"]) is str and type(got["n"]) is int
    assert got["state"] != "open"


def test_objects_travel_by_reference_and_come_back_as_themselves():
    sender, receiver = _pair()
    clock = Sim(1)
    wire = sender.encode([clock, clock])
    proxies = receiver.decode(wire)
    assert proxies[0] is proxies[1] and proxies[0][2] == "object"
    back = receiver.encode(proxies[0])
    assert back == {"$": "back", "id": proxies[0][1]}
    assert sender.decode(back) is clock


def test_decoding_refuses_references_never_sent_and_bad_tags():
    _, receiver = _pair()
    for wire in ({"$": "back", "id": 99}, {"$": "nope"}, [1, 2], {"$": "list", "v": 3},
                 {"$": "dict", "v": [[[1], 2]]}, {"$": "float", "v": "1e400"}, {"$": "ref", "id": 1, "kind": "x"}):
        with pytest.raises(ProtocolError):
            receiver.decode(wire)


def test_a_value_nested_too_deeply_is_refused():
    sender, _ = _pair()
    deep = []
    for _ in range(100):
        deep = [deep]
    with pytest.raises(ValueError, match="nested"):
        sender.encode(deep)


def test_remote_errors_are_caught_as_the_builtin_they_name():
    error = remote_error({"type": "TypeError", "module": "builtins", "message": "bad",
                          "frames": [["<ipython-input-3-ab>", 7, "allow_request", "return self.x + None"]]})
    assert isinstance(error, TypeError) and isinstance(error, RemoteError)
    assert type(error).__name__ == "TypeError" and str(error) == "bad"
    assert error.learner_frames[0].lineno == 7 and error.learner_frames[0].line == "return self.x + None"
    for name in ("KeyboardInterrupt", "SystemExit", "StopIteration"):
        mirrored = remote_error({"type": name, "module": "builtins", "message": ""})
        assert type(mirrored) is RemoteError and mirrored.type_name == name
    odd = remote_error({"type": "UnicodeDecodeError", "module": "builtins", "message": "x", "frames": "junk"})
    assert isinstance(odd, RemoteError) and odd.learner_frames == []
    with pytest.raises(ProtocolError):
        remote_error("not a dict")


def test_labkit_exceptions_are_mirrored_and_keep_their_type_on_the_way_back():
    from labkit.db import ReplicaDown
    from labkit.grading.protocol import describe_error

    error = remote_error(describe_error(ReplicaDown("replica2 is down"), with_frames=False))
    assert isinstance(error, ReplicaDown) and str(error) == "replica2 is down"
    again = remote_error(describe_error(error, with_frames=True))
    assert isinstance(again, ReplicaDown) and again.type_name == "ReplicaDown"
    for module in ("labkit.grading.runner", "os", "labkit.nonexistent"):
        assert type(remote_error({"type": "GraderAbort", "module": module, "message": ""})) is RemoteError


class _FakeChild:
    def __init__(self):
        self.rfd, self.wfd = os.pipe()

    def kill(self):
        pass


@pytest.fixture
def endpoint():
    child = _FakeChild()
    ep = ParentEndpoint(child, Limits(), Budget(10))
    yield ep
    os.close(child.rfd)
    os.close(child.wfd)


def test_the_child_reads_only_exposed_attributes_of_the_grader_s_objects(endpoint):
    clock = Sim(3)
    handle = endpoint.codec.export(clock)
    ask = lambda op, **kw: endpoint.dispatch(op, {"q": 1, "op": op, "target": handle, **kw})  # noqa: E731
    assert ask("getattr", name="now") == 0.0
    for name in ("_queue", "rng", "trace", "run", "advance", "__class__", "__dict__"):
        with pytest.raises(AttributeError):
            ask("getattr", name=name)
    with pytest.raises(TypeError):
        ask("call", args={"$": "list", "v": []}, kwargs={"$": "dict", "v": []})
    with pytest.raises(TypeError):
        ask("setattr", name="now", value=5)
    after = ask("getattr", name="after")
    method = endpoint.codec.export(after)
    assert method in endpoint.codec.granted
    endpoint.dispatch("call", {"q": 2, "op": "call", "target": method,
                               "args": {"$": "list", "v": [1.5, {"$": "back", "id": method}]},
                               "kwargs": {"$": "dict", "v": []}})
    assert clock.pending == 1
    with pytest.raises(ProtocolError):
        endpoint.dispatch("getattr", {"q": 3, "op": "getattr", "target": 12345, "name": "now"})


def test_scenario_callables_become_callable_by_the_child(endpoint):
    calls = []
    endpoint.codec.granting = True
    handle = endpoint.codec.export(calls.append)
    endpoint.codec.granting = False
    endpoint.dispatch("call", {"q": 1, "op": "call", "target": handle, "args": {"$": "list", "v": [7]},
                               "kwargs": {"$": "dict", "v": []}})
    assert calls == [7]
