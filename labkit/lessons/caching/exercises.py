"""Exercises of lesson 02, caching: scenarios and the messages each mistake earns.

Every scenario builds its own caches and database on a fresh seeded `Sim`, hands them to
the learner's class, and judges it by what those components saw (their traces and
counters) and by what the learner's methods returned or replied. The components stay
in the checker's process; under the grader the learner's object calls them through a
proxy, so the scenarios only construct the answer and call its methods.
"""
from __future__ import annotations

import math

from labkit.cache import LRUCache, RedisCache
from labkit.checking import Exercise, Fail, concept_question, construct, counted, refuse_reference, register
from labkit.checking.expose import expose
from labkit.lessons.caching.model import CacheAside, SlowDatabase, simulate_hot_key, stale_set_race
from labkit.clock import Sim

# What a learner's cache class may use of the grader's caches and database. Not `client` or
# `namespace` (a raw Redis connection), `flush`, `outages` (the scenario's faults) or `sim`.
expose(SlowDatabase, "query_s", "is_up", "load", "write_many", "queries", "round_trips")
expose(RedisCache, "name", "get", "set", "delete", "set_if_newer", "get_or_lease", "set_with_lease",
       "hits", "misses", "hit_ratio", "default_ttl_s", "lease_ttl_s")
expose(LRUCache, "name", "get", "set", "delete", "hits", "misses", "hit_ratio", "max_items", "ttl_s", "keys")

L1_TTL_S, L2_TTL_S = 5.0, 60.0


def _refuse_labkit(Answer) -> None:
    refuse_reference(Answer, CacheAside, "lk.caching.CacheAside", "CacheAside", note="the plain version the lesson breaks")


def _none_stored(exc) -> bool:
    return isinstance(exc, ValueError) and "must not be None" in str(exc)


def _peek(db, key):
    """The row as the database holds it, read without going through the traced API."""
    row = db.db.execute(f"SELECT * FROM [{db.table}] WHERE id = ?", [key])
    names = [d[0] for d in row.description]
    found = row.fetchone()
    return None if found is None else dict(zip(names, found))


# --------------------------------------------------------------------------------------------
# 02.1 a two-level read-through: L1 -> L2 -> database, with back-fill


class _Servers:
    """Two app servers, each with its own L1, sharing one L2 (Redis) and one database."""

    def __init__(self, Answer, seed: int = 0):
        _refuse_labkit(Answer)
        self.sim = Sim(seed)
        self.l2 = RedisCache(self.sim, "l2", default_ttl_s=L2_TTL_S)
        self.db = SlowDatabase(self.sim, "db", table="users")
        for key in range(1, 11):
            self.db.write(key, name=f"user {key}", plan="free")
        self.l1s = [LRUCache(self.sim, 100, ttl_s=L1_TTL_S, name=f"server {i} L1") for i in (1, 2)]
        self.apps = [construct(Answer, l1, self.l2, self.db, shown="l1, l2, db") for l1 in self.l1s]
        self.events = self.sim.trace.events

    def close(self) -> None:
        self.l2.flush()

    def call(self, server: int, method: str, *args, **kwargs):
        """One call on server 1 or 2: (what it returned, the component events it caused)."""
        before = len(self.events)
        try:
            result = getattr(self.apps[server - 1], method)(*args, **kwargs)
        except Exception as exc:  # noqa: BLE001 - matched by type name: under the grader it crossed a pipe
            if _none_stored(exc):
                raise Fail(f"Your code tried to store None in a cache during {method}({_args(args, kwargs)}), but "
                           "to both caches None means 'not cached' (a miss). For a row the database does not "
                           "have, store a marker instead, such as an empty dict {}.") from None
            raise
        return result, self.events[before:]

    def get(self, server: int, key):
        return self.call(server, "get", key)


def _args(args, kwargs) -> str:
    return ", ".join([*map(repr, args), *(f"{k}={v!r}" for k, v in kwargs.items())])


def _count(events, component, event=None, key=None) -> int:
    return sum(1 for e in events if e.component == component and (event is None or e.event == event)
               and (key is None or str(e.fields.get("key")) == str(key)))


def _partial(row, expected) -> bool:
    """True if `row` is some of `expected`'s fields, not all: what set(key, **fields) was given, not the row."""
    return (isinstance(row, dict) and isinstance(expected, dict) and bool(row) and row != expected
            and all(expected.get(k) == v for k, v in row.items()))


def _partial_fail(row, key, expected, when: str):
    return Fail(f"{when}, get({key!r}) returned {row!r}: only the fields set() was given, not the row the database "
                f"has ({expected!r}). A cache holds whole rows, as db.read returns them: on set(), delete the "
                "key from the caches (the next read fetches the whole row), or store the row read back.")


def _l2_first(ev, l1_name) -> bool:
    """True if a get asked the shared L2 before (or without) asking this server's own L1."""
    order = [e.component for e in ev if e.event in ("hit", "miss") and e.component in ("l2", l1_name)]
    return bool(order) and order[0] == "l2"


def _l2_cleared_before_write(ev, key) -> bool:
    """True if a set() deleted `key` from the shared L2 before its database write, and left L2 alone after it.

    The events of one call are in call order, even at one instant: a reader that lands between such a delete
    and the write fills L2 with the old row."""
    writes = [i for i, e in enumerate(ev) if e.component == "db" and e.event == "write"]
    if not writes:
        return False
    l2 = [(i, e.event) for i, e in enumerate(ev) if e.component == "l2" and e.event in ("delete", "set")
          and str(e.fields.get("key")) == str(key)]
    return any(i < writes[0] and event == "delete" for i, event in l2) and not any(i > writes[-1] for i, _ in l2)


def _expect_row(row, key, expected, when: str) -> None:
    if row != expected:
        if _partial(row, expected):
            raise _partial_fail(row, key, expected, when)
        if row is not None and not isinstance(row, dict):
            raise Fail(f"{when}, get({key!r}) returned {row!r}, but the database has the row {expected!r}. "
                       "Return the row (a dict).")
        raise Fail(f"{when}, get({key!r}) returned {row!r}, but the database has {expected!r}.")


two_level = register(Exercise(
    "02.1", "a two-level cache with back-fill", answer="TwoLevelCache",
    hints=(
        "get: ask self.l1, then self.l2, then self.db.read(key). Test for a miss with `is None`. On the way back, "
        "store what you found in every level that missed: l2 if the database answered, l1 in both cases.",
        "A missing row: the database returns None, and a cache cannot store None (it means 'not cached'). Store a "
        "marker such as {} in both levels, and turn it back into None before returning.",
        "set: self.db.write(key, **fields), then delete the key from l2 and l1 (invalidate). Deleting is safer "
        "than storing the new row: a delete cannot put anything old back.",
    )))


@two_level.scenario("a miss reads the database once and fills both levels")
def _fills(Answer, ctx):
    s = _Servers(Answer)
    try:
        expected = _peek(s.db, 1)
        row, ev = s.get(1, 1)
        _expect_row(row, 1, expected, "On a cold cache")
        reads = _count(ev, "db", "read")
        if reads > 1:
            raise Fail(f"One get(1) on a cold cache read the database {reads} times. One query is enough.")
        row, ev = s.get(1, 1)
        _expect_row(row, 1, expected, "Reading it again on the same server")
        if _count(ev, "db", "read"):
            raise Fail("Server 1 read user 1 twice, and both reads queried the database: nothing was cached. "
                       "On a miss, store the row in both levels before returning it.")
        if _l2_first(ev, "server 1 L1"):
            raise Fail("Server 1 read user 1 twice; its second get(1) asked the shared L2 before its own L1 (a "
                       "network round trip for a row this server already had). Ask self.l1 first, then self.l2, "
                       "then the database.")
        if _count(ev, "l2", "hit") or _count(ev, "l2", "miss"):
            raise Fail("Server 1 read user 1 twice; the second read had to ask the shared L2, so the row was not "
                       "kept in server 1's own L1. Store it in self.l1 on the way back.")
        row, ev = s.get(2, 1)
        _expect_row(row, 1, expected, "On the other server")
        if _count(ev, "db", "read") and not (_count(ev, "l2", "hit") or _count(ev, "l2", "miss")):
            raise Fail("After server 1 had read user 1, server 2 read it: its own L1 missed and it went straight "
                       "to the database, without asking the shared L2 (which server 1 had filled). On an L1 "
                       "miss, ask self.l2 before the database.")
        if _count(ev, "db", "read"):
            raise Fail("After server 1 had read user 1, server 2 read it and had to query the database again: the "
                       "row never reached the shared L2. Store what the database returns in self.l2 too, so every "
                       "server can use it.")
        row, ev = s.get(2, 1)
        _expect_row(row, 1, expected, "On the other server, again")
        if _count(ev, "l2", "hit") or _count(ev, "l2", "miss"):
            raise Fail("Server 2 found user 1 in the shared L2, but its next read had to ask L2 again: an L2 hit "
                       "was not copied into server 2's own L1 (back-fill). Store L2 hits in self.l1, so the next "
                       "read stays in-process.")
    finally:
        s.close()
    return "1 database read; the second read was an L1 hit; the other server got it from L2 and kept it in its L1"


@two_level.scenario(f"after set(), no server serves the old row longer than its L1's TTL ({L1_TTL_S:g} s)")
def _set(Answer, ctx):
    s = _Servers(Answer)
    try:
        s.get(1, 2)
        s.get(2, 2)
        s.get(2, 6)   # user 6 the other way round: server 2's L1 filled from the database, not from L2
        s.get(1, 6)
        before = _peek(s.db, 2)
        result, ev = s.call(1, "set", 2, plan="pro")
        wrote = _count(ev, "db", "write")
        after = _peek(s.db, 2)
        if after == before or after.get("plan") != "pro":
            raise Fail("set(2, plan='pro') did not change the database: user 2 still has "
                       f"{after!r}. Write the change with self.db.write(key, **fields).")
        if wrote > 1:
            raise Fail(f"One set() wrote the database {wrote} times; once is enough.")
        if _l2_cleared_before_write(ev, 2):
            raise Fail("set(2, plan='pro') deleted user 2 from the shared L2 before it wrote the database, and did "
                       "not touch L2 after the write. On a busy site another server's get(2) can land between the "
                       "two: it misses, reads the old row from the database and stores it in L2, where it stays "
                       f"for the L2's {L2_TTL_S:g} s TTL. Write the database first, then invalidate.")
        set_ev = ev
        row, ev = s.get(1, 2)
        if row is None and _count(ev, "l2", "hit") and _count(set_ev, "l2", "set"):
            raise Fail("Right after set(2, plan='pro'), the same server's get(2) returned None for a user who "
                       "exists: your set() stored a value in the shared L2 that reads as 'no such row' (your "
                       "'not found' marker?). To invalidate, delete the key: self.l2.delete(key).")
        if _partial(row, after):
            raise _partial_fail(row, 2, after, "Right after set(2, plan='pro'), on the same server")
        if row != after and _count(ev, "l2", "hit"):
            raise Fail(f"Right after set(2, plan='pro'), the same server's get(2) found the old row {row!r} in the "
                       f"shared L2: the shared L2 still held the old row, and would for its {L2_TTL_S:g} s TTL. "
                       "After writing the database, delete the key from L2 too (and from this server's L1).")
        if row != after and _count(ev, "server 1 L1", "hit"):
            raise Fail(f"Right after set(2, plan='pro'), the same server's get(2) returned the old row {row!r} from "
                       "its own L1: set() must clear (or update) the key in this server's L1 and in L2.")
        _expect_row(row, 2, after, "On the server that called set(2, plan='pro'), right afterwards")
        s.call(1, "set", 6, plan="pro")
        afters = {2: (after, "from the shared L2"), 6: (_peek(s.db, 6), "from the database")}
        s.sim.advance(L1_TTL_S + 0.5)
        for key, (after, filled) in afters.items():
            row, ev = s.get(2, key)
            if row == after:
                continue
            if _count(ev, "server 2 L1", "hit"):
                raise Fail(f"Server 2's L1 still served the old row {row!r} {L1_TTL_S + 0.5:g} s after set({key}, "
                           f"plan='pro'), past the L1's {L1_TTL_S:g} s TTL (server 2 had filled it {filled}). Keep "
                           "the caches' TTLs: call set(key, value) without a longer ttl_s, on every path. That TTL "
                           "is what bounds how stale another server can be.")
            if _count(ev, "l2", "hit"):
                raise Fail(f"{L1_TTL_S + 0.5:g} s after set({key}, plan='pro'), server 2's L1 entry had expired, "
                           f"but the shared L2 still held the old row {row!r}, and would for its {L2_TTL_S:g} s "
                           "TTL. After writing the database, delete the key from L2 too (and from this server's L1).")
            _expect_row(row, key, after, f"{L1_TTL_S + 0.5:g} s after set() on server 1, on server 2")
    finally:
        s.close()
    return "the writer saw its change at once, the other server once its L1 entry expired"


@two_level.scenario("invalidate(key) makes the next read go to the database")
def _invalidate(Answer, ctx):
    s = _Servers(Answer)
    try:
        s.get(1, 3)
        s.db.write(3, name="renamed by a migration", plan="free")   # behind the caches' back
        expected = _peek(s.db, 3)
        _, inv = s.call(1, "invalidate", 3)
        row, ev = s.get(1, 3)
        if row is None and _count(ev, "l2", "hit") and _count(inv, "l2", "set"):
            raise Fail("A migration changed user 3 in the database and server 1 called invalidate(3); its next "
                       "get(3) returned None for a user who exists: invalidate stored a value in the shared L2 that "
                       "reads as 'no such row' (your 'not found' marker?). Delete the key instead: "
                       "self.l2.delete(key).")
        if row != expected:
            where = ("its L1" if _count(ev, "server 1 L1", "hit") else "L2" if _count(ev, "l2", "hit")
                     else "somewhere")
            raise Fail(f"A migration changed user 3 in the database and server 1 called invalidate(3); its next "
                       f"get(3) still returned the old row {row!r}, from {where}. invalidate must delete the key "
                       "from both levels.")
        if _count(ev, "db", "read") != 1:
            raise Fail("After invalidate(3), get(3) returned the new row without reading the database once.")
        row, ev = s.get(2, 3)
        _expect_row(row, 3, expected, "After invalidate(3) on server 1, on server 2 (which never read it)")
    finally:
        s.close()
    return "after invalidate, one database read brought the new row"


@two_level.scenario("a row that does not exist: None, and remembered as missing")
def _missing(Answer, ctx):
    s = _Servers(Answer)
    try:
        row, ev = s.get(1, 404)
        if row is not None:
            raise Fail(f"get(404) returned {row!r}, but the database has no user 404: return None for a row that "
                       "does not exist (and turn your 'not found' marker back into None).")
        l1_then_l2 = 0   # repeated reads the L1 answered (with the marker) that still asked the L2
        for _ in range(5):
            row, more = s.get(1, 404)
            ev = ev + more
            if row is not None:
                raise Fail(f"A repeated get(404) returned {row!r} for a user that does not exist: return None.")
            l1_then_l2 += bool(_count(more, "server 1 L1", "hit", 404)
                               and (_count(more, "l2", "hit", 404) or _count(more, "l2", "miss", 404)))
        reads = _count(ev, "db", "read")
        if reads > 1:
            l1_hits = _count(ev, "server 1 L1", "hit", 404)
            if l1_hits:
                raise Fail(f"Server 1 read user 404, who does not exist, 6 times: its L1 held your 'not found' "
                           f"marker and answered {l1_hits} times, yet {reads} reads still queried the database. "
                           "Your code treats the marker as a miss: an empty marker such as {} is falsy, so "
                           "`if value:` skips it. Test for a miss with `if value is None`.")
            raise Fail(f"Server 1 read user 404, who does not exist, 6 times, and all {reads} reads queried the "
                       "database. Cache the 'not found' too (negative caching): otherwise anyone can bypass "
                       "the cache by asking for ids that do not exist, and every such request reaches the database.")
        if l1_then_l2:
            raise Fail(f"Server 1 read user 404, who does not exist, 6 times: its L1 held your 'not found' marker "
                       f"and answered, yet {l1_then_l2} of the 5 repeated reads still asked the shared L2 (a network "
                       "round trip for an answer this server had). Your code treats the L1's marker as a miss: an "
                       "empty marker such as {} is falsy, so `if value:` skips it. Test for a miss with "
                       "`if value is None`, at both levels.")
        row, ev = s.get(2, 404)
        if row is None and _count(ev, "db", "read") and not (_count(ev, "l2", "hit") or _count(ev, "l2", "miss")):
            raise Fail("After server 1 had found that user 404 does not exist, server 2 asked: its own L1 missed "
                       "and it went straight to the database, without asking the shared L2. On an L1 miss, ask "
                       "self.l2 before the database.")
        if row is not None or _count(ev, "db", "read"):
            raise Fail("After server 1 had found that user 404 does not exist, server 2 asked and "
                       + ("got " + repr(row) if row is not None else "had to query the database again")
                       + ": store the 'not found' marker in the shared L2 as well, and return None for it.")
        s.call(1, "set", 404, name="new user", plan="free")
        expected = _peek(s.db, 404)
        row, _ = s.get(1, 404)
        if _partial(row, expected):
            raise _partial_fail(row, 404, expected, "Right after set(404, ...) created user 404, on the same server")
        if row != expected:
            raise Fail(f"set(404, ...) created user 404, but get(404) on the same server then returned {row!r}: "
                       "the cached 'not found' must go when the row is written (invalidate it like any other "
                       "entry).")
        s.sim.advance(L1_TTL_S + 0.5)
        row, ev = s.get(2, 404)
        if row is None and _count(ev, "server 2 L1", "hit"):
            raise Fail(f"{L1_TTL_S + 0.5:g} s after set(404, ...) on server 1 created user 404, server 2 still said it "
                       f"does not exist: its L1 kept the 'not found' marker past the L1's {L1_TTL_S:g} s TTL. Keep the "
                       "caches' own TTLs: call set(key, value) without a longer ttl_s.")
        if row is None and _count(ev, "l2", "hit"):
            raise Fail(f"{L1_TTL_S + 0.5:g} s after set(404, ...) on server 1 created user 404, server 2 still said it "
                       "does not exist: the shared L2 still held the 'not found' marker. set() must delete the key "
                       "from L2 too.")
        _expect_row(row, 404, expected, f"{L1_TTL_S + 0.5:g} s after user 404 was created, on the other server")
    finally:
        s.close()
    return "6 reads of a missing row, 1 database query; the marker went away when the row was created"


# Reads of user 5 by both servers, every 15-20 s: each finds its L1 entry expired (5 s) and the L2's
# entry live. A migration changes the row behind the caches' back after each fill; the L2's TTL, counted
# from the fill, is the only thing that brings the change. Two rounds: the second fill expires too.
_MIGRATION_READS = ((20.0, 2), (40.0, 1), (55.0, 2))


@two_level.scenario(f"a row changed behind the caches' back is served at most the L2's TTL ({L2_TTL_S:g} s)")
def _l2_ttl(Answer, ctx):
    s = _Servers(Answer)
    try:
        for n, start in enumerate((0.0, L2_TTL_S + 0.5), 1):
            s.sim.advance(start - s.sim.now)
            row, ev = s.get(1, 5)   # the round's fill: the first round's from the database, the second's after the expiry
            s.db.write(5, name=f"renamed by migration {n}", plan="free")   # behind the caches' back
            expected = _peek(s.db, 5)
            resets = []
            for at, server in _MIGRATION_READS:
                s.sim.advance(start + at - s.sim.now)
                _, ev = s.get(server, 5)
                if _count(ev, "l2", "hit") and _count(ev, "l2", "set"):
                    resets.append(s.sim.now)
            s.sim.advance(start + L2_TTL_S + 0.5 - s.sim.now)
            row, ev = s.get(1, 5)
            if row == expected:
                continue
            head = (f"A migration changed user 5 in the database at t={start:g} s, right after a fill, without "
                    f"telling the caches. At t={s.sim.now:g} s, past the L2's {L2_TTL_S:g} s TTL, server 1's "
                    f"get(5) still returned the old row {row!r}")
            if _count(ev, "l2", "hit") and resets:
                times = ", ".join(f"{t:g}" for t in resets)
                raise Fail(head + f", from the shared L2. Your get() stored an L2 hit in the L2 again (at t={times} s): "
                           "each set restarts the entry's TTL, so a key read at least once a TTL never expires, "
                           "and a change the caches are not told about is never seen. On an L2 hit, fill only "
                           "this server's L1.")
            longest = max((e.fields.get("ttl_s") or float("inf") for e in s.events
                           if e.component == "l2" and e.event == "set" and str(e.fields.get("key")) == "5"),
                          default=None)
            if _count(ev, "l2", "hit") and longest is not None and longest > L2_TTL_S:
                kept = "with no TTL" if longest == float("inf") else f"for {longest:g} s"
                raise Fail(head + f", from the shared L2, which your code had stored {kept}. Keep the caches' own "
                           "TTLs: call set(key, value) without a ttl_s.")
            if _count(ev, "server 1 L1", "hit"):
                raise Fail(head + " from its own L1, past the L1's TTL: keep the caches' own TTLs: call set(key, "
                           "value) without a ttl_s.")
            _expect_row(row, 5, expected, f"At t={s.sim.now:g} s, past the L2's TTL after a migration changed it")
    finally:
        s.close()
    return f"a migrated row reached both servers once the L2's {L2_TTL_S:g} s TTL had passed, in both rounds"


# --------------------------------------------------------------------------------------------
# 02.2 the stale-set race

QUERY_S, RACE_TTL_S = 0.2, 60.0
SLOW_QUERY_S = 0.35   # one race on a slower database: a second delete timed by a constant 0.2 s misses it


def _app(Answer, ttl_s):
    _refuse_labkit(Answer)

    def make(cache, db, clock, ttl_s=ttl_s):
        return construct(Answer, cache, db, clock, ttl_s=ttl_s, shown=f"cache, db, clock, ttl_s={ttl_s:g}")

    make.__name__ = getattr(Answer, "__name__", "your class")
    return make


def _race(Answer, query_s=QUERY_S, **kwargs):
    run = stale_set_race(_app(Answer, RACE_TTL_S), ttl_s=RACE_TTL_S, query_s=query_s, **kwargs)
    unanswered = [(t, who) for t, who, action, got in run.steps if action == "reads" and not got]
    if unanswered:
        t, who = unanswered[0]
        raise Fail(f"A read of Ana's profile at t={t:.2f} s, by {who}, never got an answer: get(key, reply) must "
                   "call reply(row) exactly once, at once on a hit or when the query returns.")
    twice = [(t, who, len(got)) for t, who, action, got in run.steps if action == "reads" and len(got) > 1]
    if twice:
        t, who, n = twice[0]
        raise Fail(f"A read at t={t:.2f} s, by {who}, got {n} answers: call reply(row) exactly once.")
    for t, who, action, got in run.steps:
        if action == "reads" and not (isinstance(got[0][1], dict) and "bio" in got[0][1]):
            raise Fail(_bad_reply(t, got[0][1], 42))
    final = _peek(run.db, run.settings["key"])
    if final is None or final.get("bio") != "new bio":
        raise Fail(f"After update(42, bio='new bio') the database still had {final!r}: write the change with "
                   "self.db.write(key, **fields).")
    return run


def _bad_reply(sent, row, key) -> str:
    if row is None:
        return (f"A read of profile {key} at t={sent:.2f} s got None, though the database has the row: call reply(row) "
                "only once you have the row. On a miss, that is when the query returns; if another request is "
                "filling the key (get_or_lease gave neither a value nor a token), do not answer yet: ask again a "
                "little later with self.clock.after(0.05, self.get, key, reply).")
    return (f"A read at t={sent:.2f} s got {row!r}: reply with the row itself (a dict such as "
            f"{{'id': {key}, 'bio': ...}}), not with what your cache stores around it.")


def _stale_message(run, label: str, write_at: float) -> str:
    stale = [(t, v) for t, v in run.stale_answers() if t >= write_at + 1.0]
    times = ", ".join(f"{t:.1f}" for t, _ in stale[:4]) + (" ..." if len(stale) > 4 else "")
    key = str(run.settings["key"])
    events = [e for e in run.trace.events if e.component == run.settings["cache_name"]
              and str(e.fields.get("key")) == key]   # Ana's profile only: other saves delete their own keys
    fills = [e.time_s for e in events if e.event == "set" and e.fields.get("accepted") and e.time_s > write_at]
    deletes = [e.time_s for e in events if e.event == "delete" and e.time_s > write_at]
    sets_at_write = [e for e in events if e.event == "set" and e.time_s == write_at]
    touched = [e for e in events if e.event in ("set", "delete") and e.time_s == write_at]
    if not touched:
        return (f"{label}: after Ana saved 'new bio' at t={write_at:.2f} s, visitors still saw 'old bio' at "
                f"t={times} s. Your update() wrote the database but never touched the cache, so the cached row "
                f"stays until its TTL ({RACE_TTL_S:g} s): delete it (and then make sure a slow fill cannot bring it "
                "back).")
    query_s = run.settings["query_s"]
    head = (f"{label}: after Ana saved 'new bio' at t={write_at:.2f} s, visitors still saw 'old bio' at t={times} s. "
            f"A read that started before her save queried the database ({query_s:g} s) and stored the old row when "
            "it returned, after the update had cleaned the cache; it stays until its TTL "
            f"({RACE_TTL_S:g} s).")
    if sets_at_write and fills:
        return (head + " Your update() stored the new row in the cache, but the slow fill landed after it and "
                "overwrote it with the old one: setting the cache on write (write-through) does not help. Make "
                "fills that started before an update unable to store: versions (set_if_newer, delete with a "
                "version), leases (get_or_lease, set_with_lease), or a second delete after the slowest query.")
    commits = [e.fields.get("position") for e in run.trace.events if e.component == run.settings["db_name"]
               and e.event == "write" and e.time_s == write_at and str(e.fields.get("key")) == key]
    tombstones = [e.fields.get("version") for e in events if e.event == "delete" and e.time_s == write_at
                  and e.fields.get("version") is not None]
    if commits and tombstones and max(tombstones) < commits[-1]:
        return (head + f" Your update() left a tombstone with version {max(tombstones):g}, but its own commit is "
                f"at log position {commits[-1]}: a fill that read the row before that commit, at position "
                f"{max(tombstones):g}, does not count as older. Give the tombstone the position db.write returns.")
    stale_fills = [e for e in events if e.event == "set" and e.fields.get("accepted") and e.time_s > write_at
                   and e.fields.get("version") is not None and commits and e.fields["version"] >= commits[-1]]
    started = [e.time_s for e in run.trace.events if e.component == run.settings["db_name"]
               and e.event == "read" and e.time_s < write_at]
    if stale_fills and started:
        return (head + f" The fill that brought it back carried version {stale_fills[0].fields['version']:g}, as new "
                f"as the update's commit at position {commits[-1]}, though its query started at t={started[0]:.2f} s, "
                "before the update: take a fill's version from self.db.position just before its query, "
                "unchanged.")
    versioned_fills = [e for e in events if e.event == "set" and e.fields.get("version") is not None]
    plain_deletes = [e for e in events if e.event == "delete" and e.time_s == write_at
                     and e.fields.get("version") is None]
    if versioned_fills and plain_deletes and not tombstones:
        return (head + " Your fills carry a version (set_if_newer), but update() deleted the key with a plain "
                "delete(key), which leaves nothing behind: the slow fill's version had nothing newer to lose "
                "to, so it was stored. The delete must carry the update's version too, a tombstone: "
                "self.cache.delete(key, version=p), where p is the log position db.write returns.")
    if deletes and fills and max(deletes) < max(fills):
        waited = round(max(deletes) - write_at, 6)
        return (head + f" Your last delete came at t={max(deletes):.2f} s, {waited:g} s after the update, before "
                f"the slow fill landed at t={max(fills):.2f} s: a second delete must wait at least as long as a "
                f"query can take, db.query_s, which is {query_s:g} s on this database (read it from self.db, "
                "do not write the number in).")
    return (head + " Make a fill that started before an update unable to store its row: give each fill a version "
            "and delete with one (set_if_newer, delete(key, version=...)), use leases (get_or_lease, "
            "set_with_lease), or delete a second time once the slowest query has returned.")


stale_set = register(Exercise(
    "02.2", "the stale-set race", answer="ConsistentCache",
    hints=(
        "Run the Break it cell with your class: lk.caching.stale_set_race(ConsistentCache).timeline() shows every cache and "
        "database call, so you can see which fill brings the old bio back.",
        "Versions: before db.load, remember version = self.db.position (the query sees every commit up to it); "
        "store with self.cache.set_if_newer(key, row, version, ttl_s=...). In update, take the position "
        "db.write returns and call self.cache.delete(key, version=position).",
        "Leases: value, token = self.cache.get_or_lease(key). A token means 'you fill it': load, then "
        "set_with_lease(key, row, token, ttl_s=...). No value and no token means someone else is filling: ask "
        "again a little later with self.clock.after(0.05, self.get, key, reply). update: write, then delete.",
    )))


@stale_set.scenario("a fill that returns after an update does not bring the old row back")
def _race_one(Answer, ctx):
    run = _race(Answer, reads=(1.0,), write_at=1.1, other_writes=(1.15,), probes=(2.1, 5.0, 20.0, 59.0))
    if any(t >= 2.1 for t, _ in run.stale_answers()):
        raise Fail(_stale_message(run, "One read in flight", 1.1))
    return "the old row never came back after the update"


@stale_set.scenario(f"two reads in flight during an update, on a slower database ({SLOW_QUERY_S:g} s a query)")
def _race_two(Answer, ctx):
    run = _race(Answer, query_s=SLOW_QUERY_S, reads=(1.0, 1.05), write_at=1.1, other_writes=(1.12, 1.17),
                probes=(2.1, 5.0, 20.0, 59.0))
    if any(t >= 2.1 for t, _ in run.stale_answers()):
        raise Fail(_stale_message(run, f"Two reads in flight, queries of {SLOW_QUERY_S:g} s", 1.1))
    return "neither read brought the old row back"


@stale_set.scenario("an update with nothing in flight is seen at once, and written to the database")
def _plain_update(Answer, ctx):
    run = _race(Answer, reads=(0.5,), write_at=2.0, probes=(2.05, 3.0, 30.0))
    stale = run.stale_answers()
    if stale:
        t, value = stale[0]
        refused = [e.fields.get("version") for e in run.trace.events if e.component == run.settings["cache_name"]
                   and e.event == "delete" and e.time_s == 2.0 and e.fields.get("accepted") is False]
        commit = [e.fields.get("position") for e in run.trace.events if e.component == run.settings["db_name"]
                  and e.event == "write" and e.time_s == 2.0]
        if refused and commit and refused[0] >= commit[-1]:
            raise Fail(f"With no read in flight, Ana saved 'new bio' at t=2.00 s, and a visitor at t={t:.2f} s still "
                       f"saw {value!r}: your update's tombstone (version {refused[0]:g}, its commit's position) was "
                       f"refused, because the row cached at t=0.70 s already carried version {refused[0]:g}, though "
                       "it was read before that commit. A fill's version is self.db.position as it is just before "
                       "its query, unchanged.")
        if refused:
            raise Fail(f"With no read in flight, Ana saved 'new bio' at t=2.00 s, and a visitor at t={t:.2f} s still "
                       f"saw {value!r}: your update's delete(key, version={refused[0]:g}) was refused, because the "
                       "cached row already had that version (a tombstone replaces only older values). Give the "
                       "tombstone the position db.write returns for the update's own commit.")
        raise Fail(f"With no read in flight, Ana saved 'new bio' at t=2.00 s, and a visitor at t={t:.2f} s still saw "
                   f"{value!r}: update() must also clear (or replace) the cached row.")
    return "every read after the update saw it"


# Other profiles are saved all the time on a real site: every 0.15 s here, so each later query of Ana's
# profile has another profile's save land while it runs.
_BUSY = tuple(round(4.9 + 0.15 * i, 2) for i in range(42))


def _later_queries(Answer, other_writes) -> int:
    run = _race(Answer, reads=(1.0,), write_at=1.1, other_writes=other_writes,
                probes=tuple(5.0 + 0.5 * i for i in range(12)))
    db = run.settings["db_name"]
    key = str(run.settings["key"])   # Ana's profile: an update may read back the profile it saved
    return sum(1 for e in run.trace.events if e.component == db and e.event == "read" and e.time_s >= 5.0
               and str(e.fields.get("key")) == key)


@stale_set.scenario("it is still a cache: later reads do not all query the database, while others save")
def _still_cached(Answer, ctx):
    queries = _later_queries(Answer, _BUSY)
    if queries > 2:
        head = (f"After the race, 12 reads of Ana's profile between t=5 and t=10.5 s ran {queries} database "
                "queries, while other users saved their own profiles (one save every 0.15 s)")
        quiet = _later_queries(Answer, ())
        if quiet <= 2:
            raise Fail(head + f"; with nobody else saving, the same reads ran {quiet}. Your fills refuse to store "
                       "when any profile was saved during their query: safe, but on a busy site something is "
                       "always being saved, so the row never gets back into the cache. Only an update of this "
                       "key may stop its fill: compare versions per key (set_if_newer against the key's "
                       "tombstone), or use leases (a delete cancels only that key's lease).")
        raise Fail(head + ": the row never got back into the cache. A fill that starts after the update must be "
                   "able to store it (a tombstone's version is the update's log position; a newer fill wins).")
    return f"{queries} database quer{'y' if queries == 1 else 'ies'} for 12 reads after the race, with others saving"


TTL_ROW_S = 10.0


@stale_set.scenario(f"a fill is kept for the ttl_s the class was given ({TTL_ROW_S:g} s here), and no longer")
def _fill_ttl(Answer, ctx):
    """A change the cache is not told about (a migration) shows once the entry's TTL has passed, twice."""
    sim = Sim(3)
    cache = RedisCache(sim, "cache")
    db = SlowDatabase(sim, "db", query_s=QUERY_S, table="profiles")
    try:
        db.write(7, bio="old bio")
        app = _app(Answer, TTL_ROW_S)(cache, db, sim, ttl_s=TTL_ROW_S)
        got = []

        def read():
            answers = []
            got.append((sim.now, answers))
            app.get(7, lambda row=None: answers.append(row))

        for n, start in enumerate((0.0, TTL_ROW_S + 1.0), 1):
            sim.at(start, read)                                           # a miss: the fill lands 0.2 s later
            sim.at(start + 1.0, lambda n=n: db.write(7, bio=f"migrated {n}"))   # behind the cache's back
            sim.at(start + 5.0, read)                                     # a hit: the old bio is allowed
        sim.at(2 * TTL_ROW_S + 2.5, read)
        sim.run(until=2 * TTL_ROW_S + 3.5)
    finally:
        cache.flush()
    for sent, answers in got:
        if len(answers) > 1:
            raise Fail(f"A read at t={sent:g} s got {len(answers)} answers ({', '.join(map(repr, answers))}): call "
                       "reply(row) exactly once.")
        if answers and not (isinstance(answers[0], dict) and "bio" in answers[0]):
            raise Fail(_bad_reply(sent, answers[0], 7))
    for (sent, answers), want in ((got[2], "migrated 1"), (got[4], "migrated 2")):
        bio = answers[0].get("bio") if answers and isinstance(answers[0], dict) else None
        if answers and bio != want:
            sets = [e.fields.get("ttl_s") for e in sim.trace.events
                    if e.component == "cache" and e.event == "set" and e.fields.get("accepted")
                    and str(e.fields.get("key")) == "7"]
            head = (f"A migration changed profile 7 in the database behind the cache's back; a read at "
                    f"t={sent:g} s, more than ttl_s={TTL_ROW_S:g} s after the fill, still got {bio!r}")
            if any(t is None for t in sets):
                raise Fail(head + ": your fill stored the row with no TTL (this cache has no default one), so "
                           "it never expires. Pass the class's own: ttl_s=self.ttl_s.")
            if sets and max(sets) > TTL_ROW_S:
                raise Fail(head + f": your fill stored the row for {max(sets):g} s, not the ttl_s={TTL_ROW_S:g} your "
                           "class was given. Use ttl_s=self.ttl_s.")
            raise Fail(head + f". Store fills for ttl_s={TTL_ROW_S:g} s (self.ttl_s), no longer.")
    return f"a migrated row showed once the fill's {TTL_ROW_S:g} s had passed, twice"


# --------------------------------------------------------------------------------------------
# 02.3 stampede protection

HOT = dict(servers=4, rate_rps=200.0, ttl_s=4.0, query_s=0.2, duration_s=11.0)
MAX_IN_FLIGHT, MAX_QUERIES = 20, 30

stampede = register(Exercise(
    "02.3", "no stampede when a hot key expires", answer="StampedeSafeCache",
    hints=(
        "Coalescing: keep a dict key -> list of replies waiting. A miss whose key is already there only appends its "
        "reply. The first miss starts the query, and when the row arrives every waiting reply gets it.",
        "Remove the key from the dict when the row arrives (pop it before replying), or every later miss waits for a "
        "query that already finished, and nobody answers it.",
        "XFetch instead: store {'row': ..., 'delta': query time, 'expiry': clock.now + ttl_s}. On a hit, recompute "
        "early if clock.now - delta * beta * math.log(rng.random()) >= expiry, with beta = 1 and one "
        "random.Random(seed) shared by all your servers (a class attribute).",
        "Keep exercise 2's fix in whatever fill you write (the check replays its race): store through super().fill, "
        "or the way your ConsistentCache does. A versioned XFetch refresh needs a version newer than the entry's.",
    )))


def _answers_at_all(Answer) -> None:
    """Fail, saying why, if one get() on an empty cache never replies because it never even queries.

    StampedeSafeCache extends the learner's ConsistentCache: with exercise 2 still the starter's `...`, its
    get() (and the query behind super().fill) do nothing, and every check here would judge a cache that
    never answered (a stampede check passes a cache that sends no queries at all)."""
    sim = Sim(0)
    cache = RedisCache(sim, "cache")
    db = SlowDatabase(sim, "db", query_s=HOT["query_s"])
    got = []
    try:
        db.write(1, story="Front page", version=1)
        app = _app(Answer, HOT["ttl_s"])(cache, db, sim, ttl_s=HOT["ttl_s"])
        app.get(1, lambda row=None: got.append(row))
        sim.run(until=1.0)
    finally:
        cache.flush()
    if got:
        return
    events = sim.trace.events
    looked = any(e.component == "cache" for e in events)
    queried = any(e.component == "db" and e.event == "read" for e in events)
    inherited = ("StampedeSafeCache extends your ConsistentCache (exercise 2) and uses what it does not override: "
                 "its get(), and the query behind super().fill. If exercise 2 is still the starter's ..., solve it "
                 "first (this exercise needs a cache that answers), or write them in this class.")
    if not looked and not queried:
        raise Fail("get(1, reply) on an empty cache did nothing: no cache lookup, no database query, and reply was "
                   "never called, so nothing here can be judged. " + inherited)
    if not queried:
        raise Fail("get(1, reply) on an empty cache missed, but never queried the database, and reply was never "
                   "called, so nothing here can be judged. " + inherited)


def _hot_run(Answer, seed):
    _answers_at_all(Answer)
    return simulate_hot_key(_app(Answer, HOT["ttl_s"]), seed=seed, **HOT)


def _hits_and_early(run) -> tuple[int, int]:
    """(reads that found the hot key cached, queries started right after such a hit: early refreshes)."""
    cache, db, key = run.settings["cache_name"], run.settings["db_name"], str(run.settings["key"])
    last, early, hits = None, 0, 0
    for e in run.trace.events:
        if e.component == cache and e.event in ("hit", "miss") and str(e.fields.get("key")) == key:
            last = e.event
            hits += e.event == "hit"
        elif e.component == db and e.event == "read" and last == "hit":
            early += 1
    return hits, early


XFETCH_LEADS, XFETCH_KEYS = (0.4, 1.2, 2.4), 150  # seconds before the expiry; keys read at each


def _xfetch_scale(Answer) -> float | None:
    """delta * beta as the learner's early refreshes imply it, if they follow XFetch's law; else None.

    XFetch refreshes a read with `lead` seconds left before the expiry with chance exp(-lead / (delta * beta)).
    Many keys, each filled once and read once, at one of three leads: each lead's share of refreshes gives
    an estimate of delta * beta. Close estimates: the reads follow that law with another scale (a beta or a
    delta too large); far apart: another law (another formula)."""
    keys = range(1, len(XFETCH_LEADS) * XFETCH_KEYS + 1)
    run = _Requests(Answer, servers=1, rows={k: f"story {k}" for k in keys}, seed=28)
    try:
        for k in keys:
            run.at(0.0, 0, k)
        expiry = HOT["query_s"] + HOT["ttl_s"]
        for k in keys:
            run.at(expiry - XFETCH_LEADS[(k - 1) // XFETCH_KEYS], 0, k)
        run.sim.run(until=expiry + 1.0)
    finally:
        run.cache.flush()
    scales = []
    for n, lead in enumerate(XFETCH_LEADS):
        reads = [caused for sent, _, k, _, caused in run.requests if sent > 0 and (k - 1) // XFETCH_KEYS == n]
        hits = [c for c in reads if any(e.component == "cache" and e.event == "hit" for e in c)]
        refreshes = sum(1 for c in hits if any(e.component == "db" and e.event == "read" for e in c))
        if len(hits) < XFETCH_KEYS // 2 or not 0 < refreshes < len(hits):
            return None
        scales.append(-lead / math.log(refreshes / len(hits)))
    if max(scales) > 1.8 * min(scales) or min(scales) < 3 * HOT["query_s"]:
        return None
    return sum(scales) / len(scales)


def _refused_refreshes(run) -> int:
    """Fills of the hot key the cache refused, in a run that refreshed early. Nothing updates the key in a
    hot-key run, so such a refresh carried the same version as the entry it meant to replace
    (set_if_newer keeps the older). Without early refreshes, refused fills are only concurrent misses."""
    if not _hits_and_early(run)[1]:
        return 0
    cache, key = run.settings["cache_name"], str(run.settings["key"])
    return sum(1 for e in run.trace.select(cache, "set")
               if e.fields.get("accepted") is False and str(e.fields.get("key")) == key)


def _refused_message(head: str, refused: int) -> str:
    return (head + f". {counted(refused, 'fill')} of the key {'was' if refused == 1 else 'were'} refused by "
            "set_if_newer: nothing was written meanwhile, so a refresh reads the same version as the entry it "
            "would replace, and set_if_newer stores only a newer one. The early refresh never replaced the "
            "entry, which kept its old expiry, so read after read refreshed it again, and it still expired. A "
            "refresh must be able to replace the entry it refreshes: give it a version that orders after the "
            "entry's and below the next write's (the position plus a fraction that grows with time, such as "
            "now / (now + 1)).")


def _expiry_past_ttl(Answer) -> str | None:
    """If the learner's entries carry an expiry of their own (XFetch), and it lies past the TTL the class was
    given: a sentence saying so. The cache drops the entry at ttl_s, so an early refresh timed by a later
    expiry never comes first."""
    run = _Requests(Answer, servers=1, rows={1: "Front page"}, seed=27)
    try:
        run.at(0.0, 0, 1)
        run.sim.run(until=HOT["query_s"] + 0.1)
        filled = [e.time_s for e in run.events if e.component == "cache" and e.event == "set" and e.fields.get("accepted")]
        entry = run.cache.get(1)
    finally:
        run.cache.flush()
    if not filled or not isinstance(entry, dict):
        return None
    for name, value in entry.items():
        if "exp" in str(name).lower() and isinstance(value, (int, float)) and not isinstance(value, bool) \
                and HOT["ttl_s"] + 0.5 < value - filled[-1] < 86_400:   # beyond a day: the wall clock's time
            return (f" Your entries record {name!r}: {value:g}, {value - filled[-1]:g} s after their fill at "
                    f"t={filled[-1]:g} s, but the class was given ttl_s={HOT['ttl_s']:g} and the cache drops the entry "
                    f"then, so no read ever comes close enough to that expiry to refresh early. Compute it from the "
                    "class's own TTL: clock.now + self.ttl_s.")
    return None


@stampede.scenario("every request gets the row, once, within a second")
def _answers(Answer, ctx):
    run = _hot_run(Answer, 21)
    s = run.summary()
    if s["answered"] < s["requests"]:
        missing = [sent for sent, got in run.answers if not got]
        raise Fail(f"{s['requests'] - s['answered']} of {s['requests']} requests for the hot key never got an "
                   f"answer (the first was sent at t={missing[0]:.2f} s). Every get(key, reply) must call "
                   "reply(row) exactly once. With coalescing: does every waiting reply get the row, and is the "
                   "key removed from your waiting list once its query has returned?")
    if s["answered_twice"]:
        raise Fail(f"{s['answered_twice']} requests got more than one answer: call reply(row) once per request.")
    bad = next((got[0][1] for _, got in run.answers
                if not (isinstance(got[0][1], dict) and got[0][1].get("story") == "Front page")), None)
    if bad is not None:
        raise Fail(f"A request for the hot key was answered with {bad!r}: reply with the row the database "
                   "returned (a dict), not with what your cache stores around it.")
    if s["max_wait_s"] > 1.0:
        raise Fail(f"A request waited {s['max_wait_s']:.2f} s for its answer; the query takes "
                   f"{HOT['query_s']:g} s. Keep waits under a second.")
    return "every request answered once with the row"


@stampede.scenario(f"when the hot key expires, at most {MAX_IN_FLIGHT} queries for it run at once (4 servers)")
def _no_stampede(Answer, ctx):
    run = _hot_run(Answer, 22)
    s = run.summary()
    if s["peak_in_flight"] > MAX_IN_FLIGHT:
        times, counts = run.in_flight()
        at = times[counts.index(s["peak_in_flight"])]
        expired = [t for t in run.expiries() if t <= at]
        when = f"at t={at:.2f} s" + (f", just after the entry expired at t={expired[-1]:.2f} s" if expired else "")
        refused = _refused_refreshes(run)
        if refused:
            raise Fail(_refused_message(f"200 requests/s for one key through 4 app servers: {when}, "
                                        f"{s['peak_in_flight']} database queries for that one row were running at "
                                        f"once (at most {MAX_IN_FLIGHT} allowed)", refused))
        past_ttl = _expiry_past_ttl(Answer)
        if past_ttl:
            raise Fail(f"200 requests/s for one key through 4 app servers: {when}, {s['peak_in_flight']} database "
                       f"queries for that one row were running at once (at most {MAX_IN_FLIGHT} allowed): a "
                       "stampede at the expiry." + past_ttl)
        raise Fail(f"200 requests/s for one key through 4 app servers: {when}, {s['peak_in_flight']} database "
                   f"queries for that one row were running at once (at most {MAX_IN_FLIGHT} allowed; plain "
                   "cache-aside reaches about 40): a stampede. Every request that missed while the first query "
                   f"was running ({HOT['query_s']:g} s) started its own. Let the misses for a key share one query "
                   "(coalescing), refresh the entry before it expires (XFetch), or use leases. (A random design "
                   "needs servers that draw different numbers, not one random.Random(7) each; one that measures "
                   "time must read self.clock.now.)")
    return f"at most {s['peak_in_flight']} queries for the key at once"


@stampede.scenario(f"the hot key stays cached: at most {MAX_QUERIES} database queries in 11 s")
def _still_hot(Answer, ctx):
    run = _hot_run(Answer, 23)
    s = run.summary()
    if s["db_queries"] <= MAX_QUERIES:
        return f"{s['db_queries']} database queries in {HOT['duration_s']:g} s"
    head = (f"The database ran {s['db_queries']} queries for the hot key in {HOT['duration_s']:g} s "
            f"({s['db_queries'] / HOT['duration_s']:.0f} per second)")
    # What did the cache say just before each query: a hit means the read chose to recompute early.
    hits, early = _hits_and_early(run)
    if hits == 0:
        raise Fail(head + ", and no read ever found it in the cache: store the row in the cache when the query "
                   "returns.")
    refused = _refused_refreshes(run)
    if refused:
        raise Fail(_refused_message(head, refused))
    if 2 * early >= s["db_queries"]:
        scale = _xfetch_scale(Answer)
        if scale is not None:
            raise Fail(head + f"; {early} of them started right after a read had found the entry in the cache. Your "
                       "reads recompute early far too often. They decide as XFetch does (the closer the expiry, the "
                       f"likelier a refresh), but as if delta * beta were {scale:.1f} s, "
                       f"{scale / HOT['query_s']:.0f} times this database's {HOT['query_s']:g} s query: "
                       "refreshes came seconds before the expiry. The formula is XFetch's; its scale is not: delta is "
                       "the time the query took, and beta is 1 (a larger beta makes refreshes come earlier and more "
                       "often).")
        raise Fail(head + f"; {early} of them started right after a read had found the entry in the cache. Your reads "
                   "recompute early far too often. XFetch recomputes only if now - delta * beta * ln(random()) >= "
                   "expiry, which is rare until the last moments before the expiry (not 1 - exp(-delta / t), the "
                   "formula of a popular tutorial).")
    raise Fail(head + ", most of them in bursts when the entry expired: the stampede of the check above."
               + (_expiry_past_ttl(Answer) or ""))


class _Requests:
    """App servers built from the learner's class in front of one cache and one slow database; every request logged."""

    def __init__(self, Answer, *, servers: int, rows: dict, seed: int):
        _refuse_labkit(Answer)
        self.sim = Sim(seed)
        self.rows = rows
        self.cache = RedisCache(self.sim, "cache")
        self.db = SlowDatabase(self.sim, "db", query_s=HOT["query_s"])
        for key, story in rows.items():
            self.db.write(key, story=story, version=1)
        make = _app(Answer, HOT["ttl_s"])
        self.apps = [make(self.cache, self.db, self.sim, ttl_s=HOT["ttl_s"]) for _ in range(servers)]
        self.events = self.sim.trace.events
        self.requests = []   # (sent_s, server, key, [(answered_s, row), ...], events the call itself caused)

    def send(self, server: int, key) -> None:
        got = []

        def reply(row=None):
            got.append((self.sim.now, row))

        before = len(self.events)
        self.apps[server].get(key, reply)
        self.requests.append((self.sim.now, server, key, got, self.events[before:]))

    def at(self, t: float, server: int, key) -> None:
        self.sim.at(t, self.send, server, key)

    def queries(self, key) -> list[float]:
        """When each database query for `key` started."""
        return [e.time_s for e in self.events if e.component == "db" and e.event == "read" and e.fields["key"] == key]

    def run(self, until: float) -> None:
        try:
            self.sim.run(until=until)
        except Exception as exc:  # noqa: BLE001 - by name: under the grader it crossed a pipe
            if not _named(exc, "KeyError"):
                raise
            keys = " and ".join(map(str, self.rows))
            several = len(self.rows) > 1
            raise Fail(f"Requests for the key{'s' if several else ''} {keys} at t={self.sim.now:.2f} s: when a query "
                       f"returned, your code raised KeyError: {exc} (it looked up a key its dict no longer had), so "
                       "the requests waiting for that row never got it. "
                       + ("Does starting a query for one key replace the whole dict (self.waiting = {key: [...]}) "
                          "instead of adding that key (self.waiting[key] = [...])? Keep one waiting list per key, and "
                          "remove only that key's when its row arrives." if several else
                          "Is the key's waiting list removed twice, or never added?")) from None
        finally:
            self.cache.flush()


TWO_HOT = {1: "Front page", 2: "Sports"}


def _unanswered_own_key(run, sent, key) -> None:
    """Fail, saying why, if a request for `key` left unanswered had a query of its own key to wait for."""
    query_s = HOT["query_s"]
    mine = run.queries(key)
    running = [t for t in mine if t <= sent < t + query_s]
    head = (f"Two hot keys, 1 and 2, missed at about the same moment: a request for key {key} at t={sent:.3f} s "
            "never got an answer")
    if running:
        end = running[-1] + query_s
        answered = sum(1 for _, _, k, got, _ in run.requests if k == key and got and abs(got[0][0] - end) < 1e-9)
        raise Fail(head + f", though a query for key {key} was running when it missed, and returned at t={end:.3f} s "
                   f"with the row: {counted(answered, 'request')} got it then, this one did not. When the row "
                   "arrives, answer every reply on the key's waiting list, not only the first.")
    if mine and max(mine) + query_s <= sent:
        raise Fail(head + f": it was a miss, but no query for key {key} started: the last one had returned at "
                   f"t={max(mine) + query_s:.3f} s, and the key was still on your waiting list, so this miss "
                   "waited for a query that had already finished. Remove the key's list (pop it) when its row "
                   "arrives, before answering the replies on it.")


@stampede.scenario("two hot keys that miss at the same moment each get their own query and row")
def _two_hot_keys(Answer, ctx):
    _answers_at_all(Answer)
    run = _Requests(Answer, servers=2, rows=TWO_HOT, seed=24)
    rounds = (1.0, 6.0)   # the second round comes after the first round's entries expired (TTL 4 s)
    for start in rounds:
        for i in range(24):   # keys 1 and 2 in turn, 25 ms apart, over both servers
            run.at(start + 0.025 * i, (i // 2) % 2, 1 + i % 2)
    run.run(until=8.0)
    for sent, server, key, got, _ in run.requests:
        other = 3 - key
        if not got:
            _unanswered_own_key(run, sent, key)
            pending = [t for t in run.queries(other) if t <= sent < t + HOT["query_s"]]
            raise Fail(f"Two hot keys, 1 and 2, missed at about the same moment: a request for key {key} at "
                       f"t={sent:.3f} s never got an answer"
                       + (f", sent while a query for key {other} was running" if pending else "")
                       + ". Keep a waiting list (and a 'query running' mark) per key, so that a miss waits only for a "
                       "query of its own key, and each list is answered when its own row arrives.")
        row = got[0][1]
        if isinstance(row, dict) and row.get("story") == TWO_HOT[other]:
            raise Fail(f"Two hot keys, 1 and 2, missed at about the same moment: a request for key {key} at "
                       f"t={sent:.3f} s was answered with key {other}'s row {row!r}. It waited for the query of "
                       "another key: one waiting list (or one 'busy' flag) shared by every key. Keep them per key.")
    for start in rounds:
        for key in TWO_HOT:
            first = next(t for t, _, k, _, _ in run.requests if k == key and t >= start)
            started = [t for t in run.queries(key) if t >= first]
            if not started and start > rounds[0]:
                hit = next(any(e.component == "cache" and e.event == "hit" for e in caused)
                           for t, _, k, _, caused in run.requests if k == key and t == first)
                if hit:
                    raise Fail(f"Two hot keys were read from t={rounds[0]:g} s, and again from t={start:g} s: at "
                               f"t={first:.3f} s key {key} was still answered from the cache, more than "
                               f"{start - rounds[0]:g} s after its fill, though ttl_s is {HOT['ttl_s']:g} s. Store "
                               "fills for self.ttl_s, no longer.")
            if not started or started[0] > first + HOT["query_s"] / 2:
                other = 3 - key
                when = f"only at t={started[0]:.3f} s" if started else "never"
                raise Fail(f"Two hot keys, 1 and 2, missed at about the same moment: key {key} first missed "
                           f"at t={first:.3f} s, but its query started {when}, after key {other}'s query. A miss "
                           "must wait only for a query of its own key; with one lock or 'busy' flag for every key, "
                           "a hot key's misses queue behind every other key's.")
    return "each key's misses shared that key's query, in both rounds"


@stampede.scenario("early refreshes by different servers do not coincide")
def _refreshes_spread(Answer, ctx):
    _answers_at_all(Answer)
    # 4 servers get their requests at the same instants, so a server's n-th read always comes with
    # the other servers' n-th reads. Servers that draw the same random numbers then decide together.
    run = _Requests(Answer, servers=4, rows={1: "Front page"}, seed=25)
    query_s, ttl_s, servers = HOT["query_s"], HOT["ttl_s"], len(run.apps)

    def ticks(expiry):
        for i in range(18):   # every 40 ms from 0.56 s before the expiry to just after it
            for server in range(servers):
                run.at(expiry - 0.56 + 0.04 * i, server, 1)

    for server in range(servers):
        run.at(0.0, server, 1)
    ticks(query_s + ttl_s)
    run.sim.run(until=query_s + ttl_s + 0.5)
    last = max(run.queries(1), default=0.0)
    # The entry the last query of the first round stored expires then (not before the first round's end).
    second = max(last + query_s + ttl_s, run.sim.now + 1.0)
    ticks(second)
    run.run(until=second + 0.5)
    early = {}   # time -> servers whose read found the entry in the cache and still queried the database
    for sent, server, _, _, caused in run.requests:
        if any(e.component == "cache" and e.event == "hit" for e in caused) and \
                any(e.component == "db" and e.event == "read" for e in caused):
            early.setdefault(sent, set()).add(server)
    together = sorted(t for t, who in early.items() if len(who) == servers)
    # Servers that draw independently can coincide now and then, mostly in the last moments before the
    # expiry; servers that draw the same numbers coincide at every early refresh, in both rounds.
    if len(together) >= 2 and len(together) == len(early):
        # The first such instant of each round (the second round's reads start after the first's last query).
        shown = [together[0], *[t for t in together if t > last][:1]]
        times = " and again at ".join(f"t={t:.2f} s" for t in sorted(set(shown)))
        raise Fail(f"{servers} app servers read the hot key at the same instants. Every time one of them refreshed the "
                   f"entry early, all {servers} did, in the same instant (at {times}): {servers} queries for one row at "
                   "once, the herd that early refresh is meant to break up. Servers that draw the same random numbers "
                   "decide together, and each server with its own random.Random and the same seed does just that. "
                   "Draw from one generator shared by all your servers (a class attribute).")
    refreshes = sum(len(who) for who in early.values())
    return (f"{counted(refreshes, 'early refresh', 'early refreshes')}, never by every server at once" if early
            else "no early refresh")


MIGRATIONS = (1.0, 7.0)   # the hot key's row changed behind the cache's back, twice


@stampede.scenario(f"a row changed in the database is served from the cache at most its TTL ({HOT['ttl_s']:g} s)")
def _hot_ttl(Answer, ctx):
    _answers_at_all(Answer)
    run = _Requests(Answer, servers=2, rows={1: "Front page"}, seed=26)
    for i in range(125):   # every 0.1 s for 12.4 s, over both servers
        run.at(0.1 * i, i % 2, 1)
    for n, t in enumerate(MIGRATIONS, 1):
        run.sim.at(t, lambda n=n: run.db.write(1, story=f"Front page, edition {n + 1}", version=n + 1))
    run.run(until=13.0)
    # A read sent this long after a migration must see it: the TTL, then a query, with margin.
    for n, t in enumerate(MIGRATIONS, 1):
        deadline = t + HOT["ttl_s"] + 0.5
        want = f"Front page, edition {n + 1}"
        for sent, _, _, got, caused in run.requests:
            if sent < deadline or (n < len(MIGRATIONS) and sent >= MIGRATIONS[n]) or not got:
                continue
            row = got[0][1]
            story = row.get("story") if isinstance(row, dict) else row
            if story == want:
                continue
            head = (f"The hot key's row changed in the database at t={t:g} s, behind the cache's back; a read at "
                    f"t={sent:.1f} s, more than the {HOT['ttl_s']:g} s TTL later, still got {story!r}")
            ttls = [e.fields.get("ttl_s") for e in run.events if e.component == "cache" and e.event == "set"
                    and e.fields.get("accepted") and str(e.fields.get("key")) == "1"]
            if any(x is None for x in ttls):
                raise Fail(head + ": your fills stored it with no TTL (this cache has no default one), so it never "
                           "expires. If your fill is ConsistentCache's (super().fill), fix it there: ttl_s=self.ttl_s.")
            if ttls and max(ttls) > HOT["ttl_s"]:
                raise Fail(head + f": your fills stored it for {max(ttls):g} s, not the ttl_s={HOT['ttl_s']:g} your "
                           "class was given. Use ttl_s=self.ttl_s.")
            raise Fail(head + ". Store fills for ttl_s (self.ttl_s), no longer.")
    return "both changes of the row reached readers within the TTL"


@stampede.scenario("exercise 2's race: a fill that started before an update still cannot bring the old row back")
def _race_still_fixed(Answer, ctx):
    _answers_at_all(Answer)
    run = _race(Answer, reads=(1.0, 1.05), write_at=1.1, other_writes=(1.12,), probes=(2.1, 5.0, 20.0))
    if not any(t >= 2.1 for t, _ in run.stale_answers()):
        return "the old row never came back after the update"
    key = str(run.settings["key"])
    events = [e for e in run.trace.events if e.component == run.settings["cache_name"]
              and str(e.fields.get("key")) == key and e.time_s >= 1.1]
    tombstone = any(e.event == "delete" and e.fields.get("version") is not None for e in events)
    plain = [e.time_s for e in events if e.event == "set" and e.fields.get("accepted")
             and e.fields.get("version") is None and e.time_s > 1.1]
    if tombstone and plain:
        raise Fail(f"Break it 2's race, through your StampedeSafeCache: a read started at t=1.00 s, Ana saved 'new "
                   f"bio' at t=1.10 s, and at t={plain[0]:.2f} s the read's fill stored the old row with a plain "
                   "cache.set, which ignores the tombstone your update() left; visitors saw 'old bio' from then on. "
                   "A fill that replaces ConsistentCache's must keep exercise 2's fix: store through super().fill, "
                   "or with set_if_newer and the version read before the query.")
    raise Fail(_stale_message(run, "Break it 2's race, through your StampedeSafeCache", 1.1)
               + " (StampedeSafeCache uses your ConsistentCache's update() and, through super().fill, its fill: if "
               "exercise 2's check fails too, fix that first.)")


# --------------------------------------------------------------------------------------------
# 02.4 write-behind

OUTAGE = (6.0, 12.0)
# An odd number of failed flushes too (5, at t=6..10): a batch put back reversed comes back right after an even number.
ODD_OUTAGE = (6.0, 11.0)
BATCH_SIZE, PLAYERS, MIN_ROWS_PER_TRIP = 20, 40, 4
SMALL_BATCH = 7   # built with another batch_size too: not a divisor of the saves per second


class _Spinning(BaseException):
    """A flush that keeps calling a database that is down, in the same instant (a busy loop)."""


def _named(exc, name: str) -> bool:
    """True if `exc` is (or, after crossing the grader's pipe, stands for) the exception class `name`."""
    return type(exc).__name__ == name or getattr(exc, "type_name", "") == name


class _RecordingDatabase(SlowDatabase):
    """A SlowDatabase that remembers every row it commits, and stops a flush that spins on an outage."""

    def __init__(self, sim, outage=OUTAGE):
        super().__init__(sim, "db", outages=[outage], table="players")
        self.committed: dict = {}     # key -> list of seq values, in commit order
        self.attempts: list = []      # (time, up, [(key, seq), ...]) of every write_many call, refused ones too
        self.batches: list = []
        self.singles = 0
        self._refused_at, self._refused = None, 0

    def _arrive(self, op):
        if not self.is_up:
            if self._refused_at == self.sim.now:
                self._refused += 1
                if self._refused > 200:
                    raise _Spinning()
            else:
                self._refused_at, self._refused = self.sim.now, 1
        super()._arrive(op)

    def write(self, key, **fields):
        position = super().write(key, **fields)
        self.singles += 1
        self.committed.setdefault(key, []).append(fields.get("seq"))
        return position

    def write_many(self, rows):
        rows = list(rows)
        self.attempts.append((self.sim.now, self.is_up, [(k, f.get("seq") if isinstance(f, dict) else None)
                                                         for k, f in rows if isinstance(k, (int, str))]
                              if all(isinstance(r, (tuple, list)) and len(r) == 2 for r in rows) else []))
        position = super().write_many(rows)
        self.batches.append(len(rows))
        for key, fields in rows:
            self.committed.setdefault(key, []).append(fields.get("seq"))
        return position


class _WriteBehindRun:
    """40 players' scores saved 20 times a second for 15 s, the database down for `outage`, flush() every second."""

    def __init__(self, Answer, seed: int = 0, outage=OUTAGE, batch_size: int = BATCH_SIZE):
        self.sim = sim = Sim(seed)
        self.outage = outage
        self.batch_size = batch_size
        self.cache = RedisCache(sim, "cache")
        self.db = _RecordingDatabase(sim, outage)
        self.wb = construct(Answer, self.cache, self.db, batch_size=batch_size,
                            shown=f"cache, db, batch_size={batch_size}")
        self.latest: dict = {}      # key -> fields of the last acknowledged write
        self.acked: dict = {}       # key -> [(time, seq), ...] of every acknowledged write
        self.write_errors: list = []
        self.flush_raised = None    # (time, exception name) of the first flush() that raised: its thread died
        self.not_cached: list = []   # (time, key, what the cache held) right after an acknowledged write
        self.left_queued: list = []  # (time, players whose last save was not in the database) after a flush, db up
        self.writes = 0
        rng = sim.rng
        t, seq = 0.5, 0
        while t < 15.0:
            seq += 1
            # Many players save in each second (so a batch has rows to carry), each every few seconds
            # (so the outage holds several saves of one player, whose order matters).
            sim.at(t, self._write, rng.randint(1, PLAYERS), {"score": rng.randint(0, 10_000), "seq": seq})
            t += rng.expovariate(20.0)
        for i in range(1, 31):
            sim.at(float(i), self._flush)
        try:
            sim.run(until=31.0)
        except _Spinning:
            raise Fail(f"While the database was down (t={outage[0]:g} to {outage[1]:g} s), one flush() call tried "
                       "it more than 200 times in the same instant: a retry loop that never gives up. When a "
                       "write fails, keep the rows queued and return; the next flush() tries again.") from None
        finally:
            self.cache.flush()

    def _write(self, key, fields):
        self.writes += 1
        try:
            self.wb.write(key, **fields)
        except Exception as exc:  # noqa: BLE001 - by name: under the grader it crossed a pipe
            if _named(exc, "_Spinning"):
                raise _Spinning() from None
            if _named(exc, "DatabaseDown"):
                self.write_errors.append(self.sim.now)
                return
            raise
        self.latest[key] = fields
        self.acked.setdefault(key, []).append((self.sim.now, fields["seq"]))
        cached = self.cache.get(key)
        if not _holds_row(cached, key, fields):
            self.not_cached.append((self.sim.now, key, cached))

    def _flush(self):
        if self.flush_raised:
            return    # the background thread that calls flush() died with the exception it raised
        try:
            self.wb.flush()
        except Exception as exc:  # noqa: BLE001 - what escapes flush() ends the flusher thread
            if _named(exc, "_Spinning"):   # it crossed the grader's pipe as a plain error
                raise _Spinning() from None
            if _named(exc, "DatabaseDown"):
                self.flush_raised = (self.sim.now, "DatabaseDown")
                return
            raise
        if self.db.is_up:
            behind = sum(1 for key, fields in self.latest.items()
                         if (self.db.committed.get(key) or [None])[-1] != fields["seq"])
            if behind:
                self.left_queued.append((self.sim.now, behind))


def _holds_row(cached, key, fields) -> bool:
    """True if the cache holds the new row: its fields, with or without the id column db.read adds."""
    if not isinstance(cached, dict) or any(k not in cached or cached[k] != v for k, v in fields.items()):
        return False
    return all(k == "id" and str(v) == str(key) for k, v in cached.items() if k not in fields)


write_behind = register(Exercise(
    "02.4", "a write-behind flusher that loses nothing", answer="WriteBehindCache",
    hints=(
        "write(): self.cache.set(key, fields), then queue (key, fields). flush(): take up to batch_size queued rows "
        "and send them in one self.db.write_many(rows) call.",
        "If write_many raises lk.caching.DatabaseDown, nothing was written: leave the rows queued, in their place at the "
        "front, and return. Removing them first, or putting them back at the end of the queue behind newer "
        "writes of the same key, loses or reorders writes.",
        "Coalescing is allowed and saves round trips: keep one queued write per key, the newest (a dict keyed by "
        "key). Then a failed batch needs no putting back at all if you only remove rows after a success.",
    )))


@write_behind.scenario("write() acknowledges at once from the cache, even while the database is down")
def _acknowledges(Answer, ctx):
    run = _WriteBehindRun(Answer)
    if run.write_errors:
        raise Fail(f"{counted(len(run.write_errors), 'call')} to write() raised DatabaseDown while the database was down (the "
                   f"first at t={run.write_errors[0]:.2f} s). In write-behind, write() only updates the cache and "
                   "queues the row: the database's troubles must not reach the caller.")
    if run.not_cached:
        t, key, cached = run.not_cached[0]
        held = "nothing" if cached is None else repr(cached)
        raise Fail(f"Right after write({key}, ...) at t={t:.2f} s, the cache did not hold the new row (it held "
                   f"{held}): write() must store it in the cache, its fields (with the id or without), since that "
                   "is what readers see until it is flushed.")
    return f"{run.writes} writes acknowledged, each in the cache at once"


@write_behind.scenario("after an outage of 6 s, and one of 5 s, the database ends with every key's last write")
def _loses_nothing(Answer, ctx):
    _judge_loses_nothing(_WriteBehindRun(Answer, outage=ODD_OUTAGE))
    return _judge_loses_nothing(_WriteBehindRun(Answer))


def _lost_why(run, key, seq) -> str:
    """What the trace shows happened to write #seq of `key`, the last one acknowledged, which never committed."""
    acked_at = next(t for t, q in run.acked[key] if q == seq)
    sent = [(t, up) for t, up, rows in run.db.attempts if (key, seq) in rows]
    later = [(t, q) for t, up, rows in run.db.attempts if up and t >= acked_at for k, q in rows if k == key]
    if sent:
        t, _ = sent[-1]
        return (f"It was in a write_many at t={t:g} s that failed (the database was down) and was never sent "
                "again: when write_many raises DatabaseDown, keep the rows queued and try again at the next "
                "flush().")
    if later:
        t, q = later[0]
        return (f"It was never sent: at t={t:g} s, after it was acknowledged, a batch wrote write #{q}, an older "
                "write of the same player, instead. Coalescing must keep the newest write of a key, replacing "
                "the one queued.")
    succeeded = [t for t, up, _ in run.db.attempts if up and t >= acked_at]
    if succeeded:
        return (f"It was never sent to the database: after it was acknowledged at t={acked_at:.2f} s, a batch "
                f"went out at t={succeeded[0]:g} s without it, and it left the queue anyway. Remove from the "
                "queue only the rows a successful write_many carried.")
    return ("It was never sent to the database: every write must stay queued until a successful write_many "
            "has carried it.")


def _judge_loses_nothing(run):
    if run.flush_raised:
        t, name = run.flush_raised
        queued = sum(1 for key, fields in run.latest.items()
                     if (_peek(run.db, key) or {}).get("seq") != fields["seq"])
        raise Fail(f"The database was down from t={run.outage[0]:g} to {run.outage[1]:g} s. At t={t:g} s, flush() "
                   f"raised {name} instead of returning: the background thread that calls it stopped there, and "
                   f"the last scores of {counted(queued, 'player')} never reached the database. The prompt says what a "
                   "down database raises: catch lk.caching.DatabaseDown itself (it is not a ConnectionError or an "
                   "OSError), keep the rows queued, and return.")
    wrong = []
    for key, fields in sorted(run.latest.items()):
        row = _peek(run.db, key)
        if row is None or row.get("seq") != fields["seq"] or row.get("score") != fields["score"]:
            wrong.append((key, fields, row))
    if wrong:
        key, fields, row = wrong[0]
        history = run.db.committed.get(key, [])
        lost = sum(1 for k, f, r in wrong if r is None or (r.get("seq") or 0) < f["seq"])
        went_back = [k for k, seqs in run.db.committed.items() if any(b < a for a, b in zip(seqs, seqs[1:]))]
        outage = (f"The database was down from t={run.outage[0]:g} to {run.outage[1]:g} s, and flush() ran once a "
                  "second until t=30 s.")
        if went_back:
            k = went_back[0]
            seqs = run.db.committed[k]
            i = next(i for i, (a, b) in enumerate(zip(seqs, seqs[1:])) if b < a)
            raise Fail(f"{outage} Player {k}'s score went back in time: the database had write #{seqs[i]} and then "
                       f"write #{seqs[i + 1]}, an older one, was written over it. A batch that failed must keep its "
                       "place at the front of the queue (or be merged under newer writes of the same key), not "
                       "go to the back behind them.")
        if row is None or (row.get("seq") or 0) < fields["seq"]:
            raise Fail(f"{outage} At the end, {lost} of {len(run.latest)} players did not have their last "
                       f"score in the database: player {key} should hold write #{fields['seq']} but the database has "
                       f"{'nothing' if row is None else 'write #' + str(row.get('seq'))} (committed: "
                       f"{history[-5:] or 'none'}). " + _lost_why(run, key, fields["seq"]))
        raise Fail(f"{outage} Player {key} should hold {fields!r} but the database has {row!r}.")
    return f"all {len(run.latest)} players hold their last write"


@write_behind.scenario(f"batches: several rows per round trip, at most batch_size ({BATCH_SIZE}, then "
                       f"{SMALL_BATCH}), and each flush() sends all it can")
def _batches(Answer, ctx):
    notes = []
    for batch_size in (BATCH_SIZE, SMALL_BATCH):
        run = _WriteBehindRun(Answer, batch_size=batch_size)
        if run.db.batches and max(run.db.batches) > batch_size:
            raise Fail(f"One write_many call carried {max(run.db.batches)} rows; the class was built with "
                       f"batch_size={batch_size}. Send at most self.batch_size rows per call: after an outage the "
                       "backlog is large, and a huge batch holds locks and can time out.")
        trips = len(run.db.batches) + run.db.singles
        rows = sum(run.db.batches) + run.db.singles
        if trips * MIN_ROWS_PER_TRIP > rows:
            raise Fail(f"{run.writes} saves reached the database as {rows} rows in {trips} successful round trips"
                       + (f", {run.db.singles} of them one row each" if run.db.singles else "")
                       + f": {rows / max(trips, 1):.1f} rows per round trip, while each flush() had a dozen or more "
                       "rows queued. Write-behind is worth its risk because it batches: send the queued rows "
                       "together with self.db.write_many(rows), up to batch_size at a time.")
        if run.left_queued:
            # Saves missing after a flush with the database up may have been lost or overwritten, not left
            # queued: if the end state shows that, its diagnosis is the cause.
            _judge_loses_nothing(run)
            t, behind = run.left_queued[0]
            raise Fail(f"With batch_size={batch_size}, 20 saves a second and flush() once a second: at t={t:g} s, "
                       f"after a flush() with the database up, {counted(behind, 'player')} still had their last "
                       f"save only in the queue, and the batches sent were {_batches_at(run, t)}. flush() must "
                       "write every queued row, in as many write_many calls of at most batch_size rows as it "
                       "takes (a loop until the queue is empty), or the backlog grows faster than it drains.")
        notes.append(f"batch_size={batch_size}: {rows} rows in {trips} round trips")
    return "; ".join(notes)


def _batches_at(run, t) -> str:
    sizes = [len(rows) for at, up, rows in run.db.attempts if at == t and up]
    return " and ".join(map(str, sizes)) + " rows" if sizes else "none"


# --------------------------------------------------------------------------------------------
# 02.5 how far coalescing reaches

# Feedback on a wrong choice explains that choice's misconception; it never names or paraphrases
# the right one.
_CHOICES = {
    "a": (False, "No: about 1,500 is what plain cache-aside sends: every request that misses during the 0.3 s query "
                 "starts its own. Coalescing is there to stop exactly that. Which misses does it merge?"),
    "b": (True, "Right: request coalescing (singleflight) works inside one process, so each of the 12 servers sends "
                "one query. Leases in the shared cache (or a lock in Redis) bring that down to one; XFetch makes "
                "even that one happen before the expiry."),
    "c": (False, "No: that would take every server's misses waiting on one shared list. Where does your "
                 "StampedeSafeCache keep its list of waiting requests, and can another app server's process see it?"),
    "d": (False, "No: 5,000 is every request in a second, hits included; only those that miss while a query is "
                 "running matter, and coalescing is there to merge misses."),
}

scope = concept_question("02.5", "how far coalescing reaches", _CHOICES,
                           hints=("Where does the list of waiting requests live: in the cache, or in each app server's memory?",))

