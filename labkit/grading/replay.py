"""A public scenario graded by replay: the child runs it and writes down what learner code did, the grader checks it all (course tooling).

Live, each of a scenario's calls into learner code is a round trip over the pipe, and so
is each call the learner's code makes back into the grader's objects: lesson 01's
scenarios make some 30,000, and each costs both processes a JSON message, a system call
and a wake-up. Replay makes it one request per scenario:

1. The child runs the scenario itself, with its own copy of labkit, through the same two
   ends the pipe joins (the grader's `GraderEnd`, the child's `ChildEndpoint`), wired back
   to back in memory (`record`). It writes down every message the learner's end sends and,
   with each, what learner code did without a message since the last one: the plain values
   it read from the grader's objects (a replica's `lag_s`) and the calls with plain
   arguments it made of them (`replica.read(key)`), which it makes on the child's objects
   directly. Of the messages the grader's end sent it keeps only their SHA-256.
2. The grader runs the same scenario against its own objects, with a `ReplayEndpoint`
   where the pipe would be: each message it receives is the next one of the record; before
   acting on it, it reads those values and makes those calls again on its own objects, in
   order, under the same `expose` rules as live, and each must come out as recorded; at the
   end, what it sent must have the record's digest. The verdict is its own scenario's.

Why this is as safe as live: every message the grader acts on is one a live child could
have sent, given exactly what the grader's objects showed learner code and exactly the
messages the grader sent. What the child gains is knowing the grader's next message
before it answers, and for a public scenario it knows that anyway: the scenario's code is
in labkit, which the child imports. Hidden scenarios are never recorded (the child never
learns them). A record that differs from the grader's run (the notebook patched labkit, or
forged it), is malformed or too big is dropped and the scenario runs live: replay changes
how fast a verdict comes, never which.

The grader asks for every public scenario's record at once (`runner._Session`), so the
child records the next ones while the grader replays the first: the two processes work at
the same time. Within a scenario too: the child sends its record in parts of PART_ENTRIES
entries as it goes, and the grader replays each part as it comes, so a large scenario's
replay ends soon after its recording, not a whole replay later (lesson 01's solution is
graded 0.2-0.35 s sooner so). The parts together are checked as one record.
"""
from __future__ import annotations

import base64
import collections
import copy
import gc
import hashlib
import signal
import threading
import zlib

from labkit import checking
from labkit.checking import Exercise, Scenario
from labkit.clock import gc_paused
from labkit.grading.child import CellTimeout, ChildEndpoint
from labkit.grading.endpoint import UNSENT, Ahead, Endpoint
from labkit.grading.protocol import INT_LIMIT, ProtocolError, _decode, _encode, remote_error
from labkit.grading.runner import GraderEnd, RemoteContext, _contains_proxy

MAX_RECORD_BYTES = 32 << 20   # a longer record is not sent: the scenario runs live
MAX_RERECORDS = 3             # runs again of a scenario whose grader methods called back into learner code
PART_ENTRIES = 500            # learner entries per part sent ahead while the child records (`record(stream=...)`)


class Diverged(BaseException):
    """The grader's run left the record: a BaseException, so no `except Exception` in a scenario swallows it."""


class Restarted(BaseException):
    """The child recorded the scenario again (`record`): the parts of the record received so far are void."""


class NoAhead(Ahead):
    """Nothing sent ahead: a record notes what learner code reads with the messages instead (`_Tape.events`)."""

    def watch(self, handle: int, name: str) -> None:
        pass

    def stamp(self, message: dict, read, codec) -> dict:
        return message

    def absorb(self, message: dict, check_value=None) -> None:
        if "s" in message or "sr" in message or "uw" in message:
            raise ProtocolError("values sent ahead in a record")


def public_scenarios(exercise: Exercise) -> list[Scenario]:
    """The scenarios a child knows: the record names one by its place in this list."""
    return [s for s in exercise.scenarios if not s.hidden]


def run_scenario(endpoint: GraderEnd, exercise: Exercise, scenario: Scenario):
    """The report of one scenario run by the grader's end `endpoint`: the same steps in the child and in the grader."""
    reply = endpoint.answer(exercise.answer_name)
    if reply.get("state") != "value" or not _contains_proxy(reply.get("value")):
        raise Diverged("the answer is not the learner's code")
    single = copy.copy(exercise)
    single.scenarios = [scenario]
    return single.run(reply["value"], ctx_factory=lambda: RemoteContext(endpoint), include_hidden=True)


# --- in the child: run a scenario back to back, writing every message down -----------------


class _Tape:
    """What one recorded scenario sent, in order, and where a call ran out of time.

    `events` holds what learner code did with the grader's objects without a message since
    the learner's end last sent one: plain values it read ([handle, name, value]; each once,
    until a call may have changed it) and calls it made with plain arguments ([handle, args,
    kwargs, {"ok": value} or {"err": error}]). They go with that message, for the grader to
    do again, in order, and compare.
    """

    def __init__(self, stream=None):
        self.grader: list = []        # the messages the grader's end sent
        self.learner: list = []       # what the learner's end sent: [message] or [message, events]
        self.events: list = []
        self.seen: set = set()        # (handle, name) of the values in `events` since the last call
        self.stopped: tuple[str, int] | None = None   # ("cpu" or "wall", learner entries before the stop)
        self.called_back: set[int] = set()   # handles of grader methods called directly that called learner code
        self.stream = stream          # sends a part of the record ahead (`record`), or None
        self.streamed = 0             # learner entries sent ahead so far
        self.parts = 0                # parts sent ahead

    def sent(self) -> int:
        return len(self.grader) + len(self.learner)

    def send_ahead(self) -> None:
        """Send the learner's entries written since the last part, while the scenario goes on."""
        part = self.learner[self.streamed:]
        self.streamed = len(self.learner)
        self.parts += 1
        self.stream(_pack_part(part))


class _InMemory:
    """Two ends joined in memory: a message sent is written on the tape and put in the other end's inbox.

    Both ends run in this one thread, so waiting for a message means letting the other end
    handle the requests in its inbox until one arrives (nested, as over the pipe).
    """

    def _join(self, peer: "_InMemory", tape: _Tape, side: int) -> None:
        self.peer, self.tape, self.side = peer, tape, side
        self.inbox: collections.deque = collections.deque()

    def send(self, message: dict) -> None:
        tape = self.tape
        if tape.stopped is not None:
            raise CellTimeout()   # learner code that caught the first one gets no further
        if not self.side:
            tape.grader.append(message)
        elif tape.events:
            tape.learner.append([message, tape.events])
            tape.events = []
            tape.seen = set()
        else:
            tape.learner.append([message])
        if self.side and tape.stream is not None and len(tape.learner) - tape.streamed >= PART_ENTRIES \
                and not tape.called_back:
            tape.send_ahead()
        self.peer.inbox.append(message)

    def receive(self) -> dict:
        while not self.inbox:
            if not self.peer.inbox:
                raise ProtocolError("both ends are waiting")
            message = self.peer.inbox.popleft()
            if "q" not in message:
                raise ProtocolError("a reply that nobody waits for")
            self.peer.serve(message)
        return self.inbox.popleft()


class _RecordingGrader(_InMemory, GraderEnd):
    def __init__(self):
        GraderEnd.__init__(self)
        self.ahead = NoAhead()


class _ReadsFromGrader(NoAhead):
    """The learner's end reads a plain value of the grader's objects directly (they are in this process) and notes it."""

    def __init__(self, grader: _RecordingGrader, tape: _Tape):
        super().__init__()
        self.grader, self.tape = grader, tape

    def lookup(self, codec, handle: int, name: str):
        value = self.grader.plain_value(handle, name)
        if value is not UNSENT:
            tape = self.tape
            if (handle, name) not in tape.seen:
                tape.seen.add((handle, name))
                tape.events.append([handle, name, value])
        return value


_JSON_SCALARS = frozenset((str, int, float, bool, type(None)))


def _plain(value) -> bool:
    t = type(value)
    return (t is str or t is bool or value is None or t is float and value - value == 0.0
            or t is int and -INT_LIMIT < value < INT_LIMIT)


class _RecordingLearner(_InMemory, ChildEndpoint):
    """The learner's end, and each call into learner code under the grader's per-call limits (CPU, and wall clock)."""

    def __init__(self, shell, call_cpu_s: float, call_wall_s: float, indirect: set[int]):
        Endpoint.__init__(self)
        self.shell, self.spy = shell, None
        self.main_thread = threading.get_ident()
        self.call_cpu_s, self.call_wall_s = call_cpu_s, call_wall_s
        self.indirect = indirect   # handles whose calls go as messages

    def direct_call(self, handle: int, args: tuple, kwargs: dict):
        """A call with plain arguments, made on the grader's object itself and noted on the tape; else UNSENT."""
        if threading.get_ident() != self.main_thread or handle in self.indirect or not all(map(_plain, args)) \
                or kwargs and not all(map(_plain, kwargs.values())):
            return UNSENT
        tape = self.tape
        args, kwargs, before = list(args), dict(kwargs), tape.sent()
        kind, outcome = self.peer.plain_call(handle, args, kwargs)
        if tape.sent() != before:   # it called back into learner code: the order of the tape is lost
            tape.called_back.add(handle)
        tape.events.append([handle, args, kwargs, {kind: outcome}])
        tape.seen = set()   # the call may have changed what learner code reads next
        if kind == "ok":
            return self.codec.decode(outcome)
        raise remote_error(outcome)

    def serve(self, message: dict) -> None:
        if self.depth:   # a call back into learner code, inside a call the outer limit already covers
            return super().serve(message)
        # Re-armed every half second, in case learner code caught the first one.
        signal.setitimer(signal.ITIMER_PROF, self.call_cpu_s, 0.5)
        signal.setitimer(signal.ITIMER_REAL, self.call_wall_s, 0.5)
        try:
            super().serve(message)
        finally:
            signal.setitimer(signal.ITIMER_PROF, 0)
            signal.setitimer(signal.ITIMER_REAL, 0)


def record(shell, exercise_id, index, name, call_cpu_s, call_wall_s, stream=None) -> str:
    """Run public scenario `index` of an exercise against the notebook in `shell`; the record, packed as text.

    The record holds what the learner's end sent: a list of [message] or [message, events]
    (what learner code did without a message before sending it: see `_Tape`), and last, if
    a call into learner code ran out of time, ["cpu"] or ["wall"]. For what the grader's end
    sent, it holds only the SHA-256 of their JSON: the grader sends its own, and must send
    exactly these.

    With `stream`, every PART_ENTRIES entries are packed (`_pack_part`) and passed to it while
    the scenario goes on, so the grader replays them while the child records the rest; the
    text returned holds the entries after the last part. A run recorded again (below) is
    announced by `stream(None)`: the parts sent before are void.
    """
    checking.all_exercises()   # every lesson's `expose` lines, as in the grader (lesson 02's database is lesson 01's)
    exercise = checking.get(exercise_id)
    scenarios = public_scenarios(exercise)
    if type(index) is not int or not 0 <= index < len(scenarios) or scenarios[index].name != name:
        raise ValueError(f"exercise {exercise_id} has no public scenario {index} called {name!r}")
    for limit in (call_cpu_s, call_wall_s):
        if type(limit) not in (int, float) or not limit > 0:
            raise ValueError("call limits must be positive numbers")
    indirect: set[int] = set()
    with gc_paused():   # the tape keeps a container per message: the collector would scan them again and again
        for _ in range(MAX_RERECORDS + 1):
            tape = _record(shell, exercise, scenarios[index], call_cpu_s, call_wall_s, indirect, stream)
            if not tape.called_back or tape.called_back <= indirect:
                break
            # A grader method called back into learner code: the run is recorded again with that
            # method's calls sent as messages, so the callback's messages come in their place.
            indirect |= tape.called_back
            if tape.parts:
                stream(None)
        text = _pack(tape)
        # Freed while the collector is still paused: it would otherwise count them all as young
        # objects and scan every one of them as soon as it is enabled again.
        tape.grader.clear()
        tape.learner.clear()
        return text


def _record(shell, exercise: Exercise, scenario: Scenario, call_cpu_s: float, call_wall_s: float,
            indirect: set[int], stream=None) -> _Tape:
    tape = _Tape(stream)
    grader, learner = _RecordingGrader(), _RecordingLearner(shell, call_cpu_s, call_wall_s, indirect)
    learner.ahead = _ReadsFromGrader(grader, tape)
    grader._join(learner, tape, 0)
    learner._join(grader, tape, 1)

    def expired(signum, frame):
        if tape.stopped is None:
            tape.stopped = ("cpu" if signum == signal.SIGPROF else "wall", len(tape.learner))
        raise CellTimeout()

    previous = {signum: signal.signal(signum, expired) for signum in (signal.SIGPROF, signal.SIGALRM)}
    try:
        run_scenario(grader, exercise, scenario)
    except Diverged:
        pass
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler if handler is not None else signal.SIG_DFL)
        learner.stop_spy()
        grader._readable.clear()
        for end in (grader, learner):   # the ends, their proxies and the tape refer to each other: a cycle
            end.codec.objects.clear()
            end.codec.proxies.clear()
            end.peer = None
    return tape


def _pack(tape: _Tape) -> str:
    if tape.called_back:
        raise ValueError("this scenario cannot be recorded: a call of the grader's objects called back into learner "
                         "code")
    learner = tape.learner if tape.stopped is None else tape.learner[:tape.stopped[1]]
    learner = learner[tape.streamed:]
    if tape.stopped is not None:
        learner.append([tape.stopped[0]])
    return _compress({"digest": _digest(tape.grader), "learner": learner, "parts": tape.parts})


def _pack_part(entries: list) -> str:
    return _compress({"part": entries})


def _compress(record: dict) -> str:
    data = _encode(record).encode("utf-8")
    if len(data) > MAX_RECORD_BYTES:
        raise ValueError(f"a record of {len(data):,} bytes (the limit is {MAX_RECORD_BYTES:,})")
    # Its messages repeat each other: compressed, a record is a tenth of the size on the pipe.
    return base64.b64encode(zlib.compress(data, 1)).decode("ascii")


def _digest(messages: list) -> str:
    return hashlib.sha256(_encode(messages).encode("utf-8")).hexdigest()


def _unpack(text, limit: int = MAX_RECORD_BYTES):
    """A part or the last text of a record as `record` packs them (a dict, and its inflated size in "bytes");
    None if it is not one, or inflates past `limit` bytes."""
    if type(text) is not str:
        return None
    try:
        inflate = zlib.decompressobj()
        data = inflate.decompress(base64.b64decode(text, validate=True), limit + 1)
        if len(data) > limit or not inflate.eof:
            return None
        collecting = gc.isenabled()
        gc.disable()   # decoding builds a container per message: the cyclic collector would run over them all many times
        try:
            record = _decode(data.decode("utf-8"))
        finally:
            if collecting:
                gc.enable()
    except (ValueError, RecursionError, zlib.error):
        return None
    if type(record) is not dict:
        return None
    if set(record) == {"part"} and type(record["part"]) is list \
            or set(record) == {"digest", "learner", "parts"} and type(record["digest"]) is str \
            and type(record["learner"]) is list and type(record["parts"]) is int:
        return {**record, "bytes": len(data)}
    return None


# --- in the grader: the same scenario, each message checked against the record --------------


class ReplayEndpoint(GraderEnd):
    """The grader's end of a recorded scenario: what it receives comes from the record, what it sends must match.

    Before it acts on a message, the values learner code read to write it are read again
    here and must be equal; at the end (or at a stop), the messages the grader sent must
    have the digest the child's run of the grader's end had. `live` is the endpoint of the
    child that wrote the record: where a call ran out of time in the record, the grader
    stops that child, as it would have live.
    """

    def __init__(self, record, live, exercise_id: str | None = None):
        """`record` is the text `record` returned, or a callable that gives its texts as they come: the parts
        sent ahead, then the last text (raising Restarted where the child began again)."""
        super().__init__()
        self.ahead = NoAhead()
        self.live, self.exercise = live, exercise_id
        self.diverged: str | None = None
        self.sent: list = []
        self.direct = False   # doing again a call learner code made without a message
        self.next_text = record if callable(record) else iter([record]).__next__
        self.entries: list = []
        self.position = 0
        self.digest: str | None = None   # known once the last text is in
        self.parts = self.size = 0
        self.what = ""

    def _take(self) -> None:
        """The next text of the record: a part's entries, or the last entries and the digest."""
        try:
            text = self.next_text()
        except StopIteration:
            self._diverge("the record ended early")
        record = _unpack(text, MAX_RECORD_BYTES - self.size)   # the parts together, as one record
        if record is None:
            self._diverge("the record is not one, or is too big")
        self.size += record["bytes"]
        if "part" in record:
            self.parts += 1
            self.entries += record["part"]
        elif record["parts"] != self.parts:
            self._diverge(f"the record has {record['parts']} parts, not {self.parts}")
        else:
            self.entries += record["learner"]
            self.digest = record["digest"]

    def _at_end(self) -> bool:
        """True if every entry was taken and none is still to come (the digest is in)."""
        while self.digest is None and self.position == len(self.entries):
            self._take()
        return self.position == len(self.entries)

    def _diverge(self, why: str):
        self.diverged = self.diverged or why
        raise Diverged(why)

    def send(self, message: dict) -> None:
        if self.diverged is not None:
            raise Diverged(self.diverged)
        if self.direct:
            self._diverge(f"entry {self.position}: a call learner code made calls back into it here")
        self.sent.append(message)

    def receive(self) -> dict:
        if self.diverged is not None:
            raise Diverged(self.diverged)
        while self.position >= len(self.entries):
            if self.digest is not None:
                self._diverge("the record ended early")
            self._take()
        entry = self.entries[self.position]
        self.position += 1
        if type(entry) is not list or not 1 <= len(entry) <= 2:
            self._diverge(f"entry {self.position} is not [message] or [message, reads]")
        message = entry[0]
        if message in ("cpu", "wall") and len(entry) == 1 and self._at_end():
            if _digest(self.sent) != self.digest:
                self._diverge("the grader sent other messages than the record's")
            raise self.abort(self.live.stopped_in_record(self.what, message))
        if type(message) is not dict:
            self._diverge(f"entry {self.position}: not a message")
        if len(entry) == 2:
            self._check_events(entry[1])
        return message

    def _check_events(self, events) -> None:
        """Do again what learner code did without a message (reads, plain calls), in order; each must come out the same."""
        if type(events) is not list:
            self._diverge(f"entry {self.position}: events must be a list")
        plain_value = self.plain_value
        for event in events:
            if type(event) is not list:
                self._diverge(f"entry {self.position}: an event must be a read or a call")
            if len(event) == 3 and type(event[0]) is int and type(event[1]) is str:
                handle, name, seen = event
                value = plain_value(handle, name)
                if value is UNSENT or type(value) is not type(seen) or value != seen:
                    self._diverge(f"entry {self.position}: learner code read another value than the grader's")
                continue
            if not (len(event) == 4 and type(event[0]) is int and type(event[1]) is list and type(event[2]) is dict
                    and type(event[3]) is dict and len(event[3]) == 1):
                self._diverge(f"entry {self.position}: an event must be a read or a call")
            handle, args, kwargs, outcome = event
            for value in args:   # decoded JSON: a scalar is plain (the child sends nothing else)
                if type(value) not in _JSON_SCALARS:
                    self._diverge(f"entry {self.position}: a call's arguments must be plain values")
            for value in kwargs.values():
                if type(value) not in _JSON_SCALARS:
                    self._diverge(f"entry {self.position}: a call's arguments must be plain values")
            self.direct = True
            try:
                kind, value = self.plain_call(handle, args, kwargs)
            finally:
                self.direct = False
            # The grader keeps its own result; the record's is what learner code was given, and it must be
            # equal: == on the wire form, as JSON gives it (inside a row, 1 and 1.0 would compare equal).
            recorded = outcome.get(kind, UNSENT)
            if recorded is UNSENT or type(recorded) is not type(value) or recorded != value:
                self._diverge(f"entry {self.position}: a call learner code made came out otherwise here")

    def request(self, op: str, *, what: str = "", timeout: float | None = None, **fields):
        if not self.depth:
            self.what = what
        try:
            return super().request(op, what=what, timeout=timeout, **fields)
        except ProtocolError as exc:
            self._diverge(f"entry {self.position}: {exc}")

    def close(self) -> None:
        """Let go of the record and the scenario's objects (proxies and this end refer to each other: a cycle)."""
        self.entries, self.sent = [], []
        self._readable.clear()
        self.codec.objects.clear()
        self.codec.proxies.clear()

    @property
    def complete(self) -> bool:
        """True if the run followed the record to its end and sent what the child's copy of the grader sent."""
        if self.diverged is not None:
            return False
        if self.broken is not None and self.digest is not None and self.position == len(self.entries):
            return True   # stopped where the record says a call ran out of time (the digest was checked there)
        return self._at_end() and _digest(self.sent) == self.digest
