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


def test_numbers_of_numpy_fractions_and_decimal_travel_as_the_plain_number_they_are():
    import decimal
    import fractions

    import numpy as np

    sender, receiver = _pair()
    value = [np.int64(7), np.float32(1.5), np.bool_(True), fractions.Fraction(6, 2), fractions.Fraction(1, 4),
             decimal.Decimal("2.5")]
    got = receiver.decode(sender.encode(value))
    assert got == [7, 1.5, True, 3, 0.25, 2.5]
    assert [type(v) for v in got] == [int, float, bool, int, float, float]


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


# --- values sent ahead, methods in one request --------------------------------------------


def _ahead_pair():
    from labkit.grading.endpoint import Ahead

    sender = Codec(lambda handle, desc: ("proxy", handle))
    receiver = Codec(lambda handle, desc: ("proxy", handle))
    return Ahead(), sender, Ahead(), receiver


def test_a_watched_value_is_sent_ahead_only_when_it_changes():
    from labkit.grading.endpoint import UNSENT

    send_side, sender, receive_side, receiver = _ahead_pair()
    state = {"now": 1.0}
    read = lambda handle, name: ("ok", state[name]) if name in state else None  # noqa: E731
    assert receive_side.lookup(receiver, 7, "now") is UNSENT
    send_side.watch(7, "now")
    first = send_side.stamp({}, read, sender)
    assert first["s"] == [[7, "now", {"ok": 1.0}]]
    assert "s" not in send_side.stamp({}, read, sender)  # unchanged: nothing to send
    receive_side.absorb(first)
    assert receive_side.lookup(receiver, 7, "now") == 1.0
    state["now"] = 2.5
    receive_side.absorb(send_side.stamp({}, read, sender))
    assert receive_side.lookup(receiver, 7, "now") == 2.5
    del state["now"]  # no longer a value (say, it became a method): dropped on both sides
    receive_side.absorb(send_side.stamp({}, read, sender))
    assert receive_side.lookup(receiver, 7, "now") is UNSENT and not send_side.watched


def test_an_error_is_sent_ahead_as_the_error_and_a_reset_forgets_everything():
    from labkit.db import ReplicaDown
    from labkit.grading.endpoint import UNSENT

    send_side, sender, receive_side, receiver = _ahead_pair()
    send_side.watch(3, "lag_s")
    receive_side.absorb(send_side.stamp({}, lambda h, n: ("err", ReplicaDown("replica1 is down")), sender))
    with pytest.raises(ReplicaDown, match="replica1 is down"):
        receive_side.lookup(receiver, 3, "lag_s")
    send_side.reset()
    message = send_side.stamp({}, lambda h, n: ("ok", 0.0), sender)
    assert message == {"sr": 1}
    receive_side.absorb(message)
    assert receive_side.lookup(receiver, 3, "lag_s") is UNSENT


def test_values_never_read_are_given_up_so_watching_follows_what_the_code_reads():
    from labkit.grading.endpoint import UNUSED_AFTER

    send_side, sender, receive_side, receiver = _ahead_pair()
    for handle in (1, 2):
        send_side.watch(handle, "is_up")
    receive_side.absorb(send_side.stamp({}, lambda h, n: ("ok", True), sender))
    for _ in range(UNUSED_AFTER):
        receive_side.lookup(receiver, 1, "is_up")
        send_side.absorb(receive_side.stamp({}, lambda h, n: None, receiver))
    assert set(send_side.watched) == {(1, "is_up")}


def test_the_grader_takes_only_plain_values_sent_ahead_by_the_child(endpoint):
    from labkit.grading.runner import _plain_wire

    endpoint.ahead.absorb({"s": [[1, "count", {"ok": 3}], [1, "ratio", {"ok": {"$": "float", "v": "nan"}}]]},
                          _plain_wire)
    assert endpoint.ahead.lookup(endpoint.codec, 1, "count") == 3
    for bad in ({"s": [[1, "x", {"ok": {"$": "ref", "id": 5, "kind": "object"}}]]},
                {"s": [[1, "x", {"ok": {"$": "list", "v": [1]}}]]}, {"s": "junk"}, {"s": [[1, 2, {"ok": 1}]]},
                {"s": [[1, "x", {"maybe": 1}]]}, {"uw": "junk"}):
        with pytest.raises(ProtocolError):
            endpoint.ahead.absorb(bad, _plain_wire)


def test_the_grader_sends_ahead_what_the_child_read_of_its_objects(endpoint):
    clock = Sim(3)
    handle = endpoint.codec.export(clock)
    assert endpoint.dispatch("getattr", {"q": 1, "op": "getattr", "target": handle, "name": "now"}) == 0.0
    endpoint.dispatch("getattr", {"q": 2, "op": "getattr", "target": handle, "name": "after"})
    message = endpoint.ahead.stamp({}, endpoint._read_ahead, endpoint.codec)
    assert message["s"] == [[handle, "now", {"ok": 0.0}]]  # the value; never the method
    clock.run(until=4.0)
    assert endpoint.ahead.stamp({}, endpoint._read_ahead, endpoint.codec)["s"] == [[handle, "now", {"ok": 4.0}]]


class _Plain:
    limit = 3

    def __init__(self):
        self.count, self.items, self.name = 1, [1, 2], "x"

    @property
    def total(self):
        raise AssertionError("a property must not be read ahead: it may run code")

    def read(self):
        return self.count


class _Sneaky(_Plain):
    def __getattribute__(self, name):
        raise AssertionError("must not be called")


class _Slots:
    __slots__ = ("count",)

    def __init__(self):
        self.count = 1


def test_the_child_sends_ahead_only_plain_values_kept_in_an_instance_s_dict():
    from labkit.grading.child import _class_function, _plain_attribute
    from labkit.grading.endpoint import UNSENT

    plain = _Plain()
    plain.__dict__["total"] = 5  # shadowed by the property: not the value obj.total gives
    assert _plain_attribute(plain, "count") == 1 and _plain_attribute(plain, "name") == "x"
    for name in ("items", "total", "limit", "read", "missing"):
        assert _plain_attribute(plain, name) is UNSENT, name
    assert _plain_attribute(object.__new__(_Sneaky), "count") is UNSENT
    assert _plain_attribute(_Slots(), "count") is UNSENT
    assert _class_function(plain, "read") and not _class_function(plain, "count")
    plain.read = lambda: 0  # an instance attribute shadows the class's method
    assert not _class_function(plain, "read")


def test_waiting_is_limited_by_the_child_s_cpu_time_with_a_wall_clock_backstop(endpoint):
    import math
    import select
    import time

    from labkit.grading.runner import _Expired

    class Meter:
        last = 0.0

        def __init__(self, cpu):
            self.cpu = cpu

        def seconds(self):
            return self.cpu

    endpoint.meter = Meter(cpu=0.0)  # a child that waits and computes nothing
    endpoint.deadlines.append((0.1, time.monotonic() + 0.3))
    with pytest.raises(_Expired) as waited:
        endpoint._wait(select.POLLIN)
    assert waited.value.kind == "wall"
    endpoint.meter = Meter(cpu=5.0)  # a child that has used its CPU seconds
    endpoint.deadlines[-1] = (1.0, math.inf)
    with pytest.raises(_Expired) as spun:
        endpoint._wait(select.POLLIN)
    assert spun.value.kind == "cpu"


def test_a_router_reads_replica_state_without_asking_and_each_method_once(tmp_path, monkeypatch):
    """Lesson 01's first router graded live (as hidden scenarios are): what it reads of the replicas
    (is_up) arrives with the messages instead of one request per read, and the grader looks each
    router method up once."""
    import json
    from collections import Counter
    from pathlib import Path

    import nbformat

    from labkit import checking
    from labkit.grading import runner

    try:
        exercise = checking.get("01.1")
    except ValueError:
        pytest.skip("lesson 01 is not registered")
    root = Path(__file__).resolve().parents[2]
    solution = json.loads((root / "solutions" / "01_read_replicas.ipynb").read_text(encoding="utf-8"))
    router = next("".join(c["source"]) for c in solution["cells"]
                  if c["cell_type"] == "code" and "".join(c["source"]).startswith("class Router"))
    path = tmp_path / "01_router.ipynb"
    nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("import labkit as lk"),
                                                   nbformat.v4.new_code_cell(router)]), path)
    asked, served = Counter(), Counter()
    request, dispatch = runner.ParentEndpoint.request, runner.ParentEndpoint.dispatch

    def counting_request(self, op, **fields):
        asked[op, fields.get("name")] += 1
        return request(self, op, **fields)

    def counting_dispatch(self, op, message):
        served[op, message.get("name")] += 1
        return dispatch(self, op, message)

    monkeypatch.setattr(runner.ParentEndpoint, "request", counting_request)
    monkeypatch.setattr(runner.ParentEndpoint, "dispatch", counting_dispatch)
    record = runner.grade_notebook(path, limits=Limits(replay=False)).record
    assert record["points"]["01.1"] == sum(s.points for s in exercise.scenarios), record["exercises"]["01.1"]
    reads = asked["callmethod", "read"]
    assert reads > 200  # the checks read through the router many times ...
    assert served["getattr", "is_up"] < reads / 20  # ... and is_up is asked for only when first seen
    assert asked["getattr", "read"] < 20  # one lookup per router, not one per call
