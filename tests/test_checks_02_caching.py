"""The caching checks against the solution, the untouched lesson, plausible wrong answers and other
correct designs; and lk.caching: the slow database, the Play panel and the two Break it runs.

Each wrong answer is a small mutation of the solution (or of another correct design), so it
stays plausible as the solution evolves, and each must fail with the message written for it.
"""
import math
import random

import fakeredis
import pytest

import labkit as lk
from labkit.lessons.caching import model as caching_model
from labkit.widgets import Play
from support import assert_every_check, cell_defining, mutate, run_cells
from test_cache_conformance import redis_url  # noqa: F401 - the session's real Redis server, or a skip saying why

LESSON = "02_caching"
TWO_LEVEL = cell_defining("solutions", LESSON, "TwoLevelCache")
CONSISTENT = cell_defining("solutions", LESSON, "ConsistentCache")
STAMPEDE = cell_defining("solutions", LESSON, "StampedeSafeCache")
WRITE_BEHIND = cell_defining("solutions", LESSON, "WriteBehindCache")
EXERCISES = [("02.1", "TwoLevelCache"), ("02.2", "ConsistentCache"), ("02.3", "StampedeSafeCache"),
             ("02.4", "WriteBehindCache"), ("02.5", "ANSWER")]


def messages(report):
    return "\n".join(r.message for r in report.results if not r.passed)


def check(exercise_id, name, *sources):
    return lk.check(exercise_id, run_cells(*sources)[name])


def assert_fails_with(report, expected):
    assert report.status == "failed", report.text()
    assert expected in messages(report), report.text()


# --- the solution and the untouched lesson --------------------------------------------------------

def test_solution_passes_every_check():
    ns = run_cells(TWO_LEVEL, CONSISTENT, STAMPEDE, WRITE_BEHIND, cell_defining("solutions", LESSON, "ANSWER"))
    assert_every_check(ns, EXERCISES, "passed")


def test_untouched_lesson_is_not_attempted():
    ns = run_cells(*(cell_defining("lessons", LESSON, name) for _, name in EXERCISES))
    assert_every_check(ns, EXERCISES, "not attempted")


@pytest.mark.parametrize("exercise_id", ["02.2", "02.3"])
def test_labkit_cache_aside_is_not_accepted_as_an_answer(exercise_id):
    report = lk.check(exercise_id, lk.caching.CacheAside)
    assert report.score == 0
    assert "labkit's own CacheAside" in messages(report)


# --- 02.1 two levels with back-fill -----------------------------------------------------------------

FILL_BOTH = """                self.l2.set(key, value)
            self.l1.set(key, value)        # back-fill: this server's next read stays in-process"""

WRONG_TWO_LEVEL = {
    "an L2 hit is not copied into the L1 (no back-fill)": (
        FILL_BOTH, "                self.l2.set(key, value)\n                self.l1.set(key, value)",
        "an L2 hit was not copied into server 2's own L1 (back-fill)"),
    "the database's row never reaches the L2": (
        "                self.l2.set(key, value)\n", "",
        "the row never reached the shared L2"),
    "nothing is cached": (
        FILL_BOTH, "",
        "nothing was cached"),
    "the L1 keeps rows far longer than its TTL": (
        "            self.l1.set(key, value)        #", "            self.l1.set(key, value, ttl_s=300)  #",
        "past the L1's 5 s TTL"),
    "`if not value` treats the empty marker as a miss": (
        "        value = self.l1.get(key)\n        if value is None:\n            value = self.l2.get(key)\n"
        "            if value is None:",
        "        value = self.l1.get(key)\n        if not value:\n            value = self.l2.get(key)\n"
        "            if not value:",
        "Your code treats the marker as a miss"),
    "None is stored for a missing row": (
        "                value = {} if row is None else row", "                value = row",
        "Your code tried to store None in a cache"),
    "a missing row is not cached (no negative caching)": (
        "                value = {} if row is None else row",
        "                if row is None:\n                    return None\n                value = row",
        "Cache the 'not found' too (negative caching)"),
    "the marker is returned instead of None": (
        "        return None if value == {} else value", "        return value",
        "return None for a row that does not exist"),
    "set() does not invalidate": (
        "        self.db.write(key, **fields)\n        self.invalidate(key)", "        self.db.write(key, **fields)",
        "set() must clear (or update) the key in this server's L1 and in L2"),
    "invalidate() forgets the L2": (
        "        self.l2.delete(key)    # the shared level first, so this L1 cannot be refilled with the old row\n", "",
        "the shared L2 still held the old row"),
    "set() never writes the database": (
        "        self.db.write(key, **fields)\n        self.invalidate(key)", "        self.invalidate(key)",
        "set(2, plan='pro') did not change the database"),
}


@pytest.mark.parametrize("mistake", list(WRONG_TWO_LEVEL))
def test_wrong_two_level_cache_fails_with_its_message(mistake):
    old, new, expected = WRONG_TWO_LEVEL[mistake]
    assert_fails_with(check("02.1", "TwoLevelCache", mutate(TWO_LEVEL, old, new)), expected)


def test_marker_compared_with_is_fails_on_the_copy_from_redis():
    """`value is MISSING` works for the L1 (it keeps objects) but not for the copy Redis returns."""
    source = mutate(mutate(TWO_LEVEL, "                value = {} if row is None else row",
                           "                value = MISSING if row is None else row"),
                    "        return None if value == {} else value",
                    "        return None if value is MISSING else value")
    report = check("02.1", "TwoLevelCache", "MISSING = {}", source)
    assert_fails_with(report, "server 2 asked and got {}")


def test_write_through_set_also_passes_exercise_1():
    """Updating both levels on set() is fresh without concurrency; exercise 2 shows its race."""
    source = mutate(TWO_LEVEL, "        self.db.write(key, **fields)\n        self.invalidate(key)",
                    "        self.db.write(key, **fields)\n        row = self.db.read(key)\n"
                    "        self.l2.set(key, row)\n        self.l1.set(key, row)")
    report = check("02.1", "TwoLevelCache", source)
    assert report.status == "passed", report.text()


def test_two_level_cache_with_a_sentinel_object_and_its_own_structure_also_passes():
    source = '''
class TwoLevelCache:
    def __init__(self, l1, l2, db):
        self.levels, self.db = [l1, l2], db

    def get(self, key):
        missed = []
        for level in self.levels:
            value = level.get(key)
            if value is not None:
                break
            missed.append(level)
        else:
            row = self.db.read(key)
            value = {"missing": True} if row is None else row
        for level in missed:
            level.set(key, value)
        return None if value == {"missing": True} else value

    def set(self, key, **fields):
        self.db.write(key, **fields)
        self.invalidate(key)

    def invalidate(self, key):
        for level in reversed(self.levels):
            level.delete(key)
'''
    report = check("02.1", "TwoLevelCache", source)
    assert report.status == "passed", report.text()


def test_wrong_constructor_is_named():
    report = check("02.1", "TwoLevelCache", mutate(TWO_LEVEL, "def __init__(self, l1, l2, db):",
                                                    "def __init__(self, caches, db):"))
    assert_fails_with(report, "Could not create your class as TwoLevelCache(l1, l2, db)")


# --- 02.2 the stale-set race ------------------------------------------------------------------------

def consistent(source=CONSISTENT):
    return run_cells(source)["ConsistentCache"]


LEASED = '''
class ConsistentCache:
    def __init__(self, cache, db, clock, ttl_s=60.0):
        self.cache, self.db, self.clock, self.ttl_s = cache, db, clock, ttl_s

    def get(self, key, reply):
        row, token = self.cache.get_or_lease(key)
        if row is not None:
            reply(row)
        elif token is None:                       # someone else is filling it: ask again shortly
            self.clock.after(0.05, self.get, key, reply)
        else:
            def arrived(row):
                self.cache.set_with_lease(key, row, token, ttl_s=self.ttl_s)
                reply(row)
            self.db.load(key, arrived)

    def update(self, key, **fields):
        self.db.write(key, **fields)
        self.cache.delete(key)
'''

DELETE_TWICE = '''
class ConsistentCache:
    def __init__(self, cache, db, clock, ttl_s=60.0):
        self.cache, self.db, self.clock, self.ttl_s = cache, db, clock, ttl_s

    def get(self, key, reply):
        row = self.cache.get(key)
        if row is not None:
            reply(row)
            return
        def arrived(row):
            self.cache.set(key, row, ttl_s=self.ttl_s)
            reply(row)
        self.db.load(key, arrived)

    def update(self, key, **fields):
        self.db.write(key, **fields)
        self.cache.delete(key)
        self.clock.after(DELAY, self.cache.delete, key)   # once any query in flight has returned
'''

PLAIN_FILL = ("            self.cache.set_if_newer(key, row, version, ttl_s=self.ttl_s)",
              "            self.cache.set(key, row, ttl_s=self.ttl_s)")
UPDATE = """        position = self.db.write(key, **fields)
        self.cache.delete(key, version=position)   # a tombstone that refuses fills read before this commit"""

WRONG_CONSISTENT = {
    "plain cache-aside (the Break it)": (
        mutate(CONSISTENT, *PLAIN_FILL),
        "A read that started before her save queried the database"),
    "write-through: update sets the cache": (
        mutate(mutate(CONSISTENT, *PLAIN_FILL), UPDATE,
               "        self.db.write(key, **fields)\n"
               "        self.cache.set(key, self.db.read(key), ttl_s=self.ttl_s)"),
        "Your update() stored the new row in the cache, but the slow fill landed after it"),
    "versioned fills, but the update deletes without a version": (
        mutate(CONSISTENT, UPDATE, "        self.db.write(key, **fields)\n        self.cache.delete(key)"),
        "The delete must carry the update's version too, a tombstone"),
    "the version is read when the fill lands": (
        mutate(mutate(CONSISTENT, "        version = self.db.position          # the query sees every commit up to this "
                                  "log position\n", ""),
               "        def arrived(row):\n", "        def arrived(row):\n            version = self.db.position\n"),
        "take a fill's version from self.db.position just before its query"),
    "the second delete comes before the slow fill": (
        DELETE_TWICE.replace("DELAY", "0.05"),
        "a second delete must wait at least as long as a query can take"),
    "a lease holder's rivals fill without a lease": (
        LEASED.replace("""        elif token is None:                       # someone else is filling it: ask again shortly
            self.clock.after(0.05, self.get, key, reply)""", """        elif token is None:
            def plain(row):
                self.cache.set(key, row, ttl_s=self.ttl_s)
                reply(row)
            self.db.load(key, plain)"""),
        "Two reads in flight"),
    "update never invalidates": (
        mutate(CONSISTENT, UPDATE, "        self.db.write(key, **fields)"),
        "Your update() wrote the database but never touched the cache"),
    "update never writes the database": (
        mutate(CONSISTENT, UPDATE, "        self.cache.delete(key, version=10**6)"),
        "the database still had"),
    "tombstones refuse every later fill": (
        mutate(CONSISTENT, "        self.cache.delete(key, version=position)",
               "        self.cache.delete(key, version=position + 1000)"),
        "the row never got back into the cache"),
    "a miss never replies": (
        mutate(CONSISTENT, "            self.cache.set_if_newer(key, row, version, ttl_s=self.ttl_s)\n"
                           "            reply(row)",
               "            self.cache.set_if_newer(key, row, version, ttl_s=self.ttl_s)"),
        "never got an answer"),
}


@pytest.mark.parametrize("mistake", list(WRONG_CONSISTENT))
def test_wrong_consistent_cache_fails_with_its_message(mistake):
    source, expected = WRONG_CONSISTENT[mistake]
    assert_fails_with(lk.check("02.2", consistent(source)), expected)


@pytest.mark.parametrize("design", ["leases", "delete twice, after the slowest query"])
def test_other_fixes_of_the_race_also_pass(design):
    source = LEASED if design == "leases" else DELETE_TWICE.replace("DELAY", "0.5")
    report = lk.check("02.2", consistent(source))
    assert report.status == "passed", report.text()


def test_the_fixes_close_the_window_in_the_break_it_timeline():
    for source in (CONSISTENT, LEASED):
        run = lk.caching.stale_set_race(consistent(source))
        assert run.stale_answers() == [] and run.summary()["unanswered"] == 0
    run = lk.caching.stale_set_race(consistent(DELETE_TWICE.replace("DELAY", "0.5")))
    assert all(t < 2.0 for t, _ in run.stale_answers())


# --- 02.3 stampede protection -----------------------------------------------------------------------

def stampede_safe(source=STAMPEDE, base=CONSISTENT):
    return run_cells(base, source)["StampedeSafeCache"]


XFETCH = '''
import math
import random

class StampedeSafeCache:
    rng = random.Random(7)   # one stream for all the servers: the same seed in each would make them refresh together

    def __init__(self, cache, db, clock, ttl_s=60.0, beta=1.0):
        self.cache, self.db, self.clock, self.ttl_s, self.beta = cache, db, clock, ttl_s, beta

    def get(self, key, reply):
        entry = self.cache.get(key)
        if entry is not None and not self.early(entry):
            reply(entry["row"])
            return
        started = self.clock.now
        def arrived(row):
            now = self.clock.now
            entry = {"row": row, "delta": now - started, "expiry": now + self.ttl_s}
            self.cache.set(key, entry, ttl_s=self.ttl_s)
            reply(row)
        self.db.load(key, arrived)

    def early(self, entry):
        return self.clock.now - entry["delta"] * self.beta * math.log(self.rng.random()) >= entry["expiry"]

    def update(self, key, **fields):
        self.db.write(key, **fields)
        self.cache.delete(key)
        self.clock.after(self.db.query_s, self.cache.delete, key)   # exercise 2's fix: once no query is in flight
'''

COALESCE_BODY = """        if key in self.waiting:          # a query for this key is running already: wait for its row
            self.waiting[key].append(reply)
            return
        self.waiting[key] = [reply]

        def answer_everyone(row):
            for waiter in self.waiting.pop(key):   # pop: the next miss starts a fresh query
                waiter(row)

        super().fill(key, answer_everyone)"""

WRONG_STAMPEDE = {
    "no protection at all": (
        stampede_safe(mutate(STAMPEDE, COALESCE_BODY, "        super().fill(key, reply)")),
        "a stampede"),
    "coalescing that never releases its waiters": (
        stampede_safe(mutate(STAMPEDE, "            for waiter in self.waiting.pop(key):",
                             "            for waiter in self.waiting[key]:")),
        "requests for the hot key never got an answer"),
    "coalescing that answers only the first waiter": (
        stampede_safe(mutate(STAMPEDE, "            for waiter in self.waiting.pop(key):   # pop: the next miss starts a "
                                       "fresh query\n                waiter(row)",
                             "            self.waiting.pop(key)[0](row)")),
        "requests for the hot key never got an answer"),
    "coalescing that never stores the row": (
        stampede_safe(mutate(STAMPEDE, "        super().fill(key, answer_everyone)",
                             "        self.db.load(key, answer_everyone)")),
        "no read ever found it in the cache"),
    "XFetch with the tutorial's formula": (
        run_cells(XFETCH.replace(
            'return self.clock.now - entry["delta"] * self.beta * math.log(self.rng.random()) >= entry["expiry"]',
            'left = max(entry["expiry"] - self.clock.now, 1e-9)\n'
            '        return self.rng.random() < 1 - math.exp(-entry["delta"] / left)'))["StampedeSafeCache"],
        "Your reads recompute early far too often"),
    "XFetch timed with the wall clock": (
        run_cells(XFETCH.replace("self.clock.now", "__import__('time').time()"))["StampedeSafeCache"],
        "one that measures time must read self.clock.now"),
    "no protection at all, counted": (
        stampede_safe(mutate(STAMPEDE, COALESCE_BODY, "        super().fill(key, reply)")),
        "most of them in bursts when the entry expired"),
    "TTL jitter alone": (
        stampede_safe(mutate(STAMPEDE, COALESCE_BODY,
                             "        import random\n        self.ttl_s = 4.0 * random.Random(3).uniform(0.9, 1.1)\n"
                             "        super().fill(key, reply)")),
        "a stampede"),
}


ONE_FLAG_FOR_EVERY_KEY = """        if getattr(self, "busy", False):   # a query is running already: wait for its row
            self.queue.append(reply)
            return
        self.busy, self.queue = True, [reply]

        def answer_everyone(row):
            self.busy = False
            for waiter in self.queue:
                waiter(row)

        super().fill(key, answer_everyone)"""


def xfetch_with(generator):
    """The XFetch design with the shared class attribute replaced by `self.rng = <generator>` in __init__."""
    return run_cells(XFETCH.replace("    rng = random.Random(7)   # one stream", "    # one stream").replace(
        "self.cache, self.db, self.clock, self.ttl_s, self.beta = cache, db, clock, ttl_s, beta",
        "self.cache, self.db, self.clock, self.ttl_s, self.beta = cache, db, clock, ttl_s, beta\n"
        f"        self.rng = {generator}"))["StampedeSafeCache"]


WRONG_STAMPEDE.update({
    "one busy flag and one waiting list for every key": (
        stampede_safe(mutate(STAMPEDE, COALESCE_BODY, ONE_FLAG_FOR_EVERY_KEY)),
        "a request for key 2 at t=1.025 s was answered with key 1's row"),
    "one busy flag for every key; only the waiters of the key that arrived are answered": (
        stampede_safe(mutate(STAMPEDE, COALESCE_BODY, ONE_FLAG_FOR_EVERY_KEY.replace(
            "self.queue.append(reply)", "self.queue.append((key, reply))").replace(
            "[reply]", "[(key, reply)]").replace(
            "            for waiter in self.queue:\n                waiter(row)",
            "            for waiter in [r for k, r in self.queue if k == key]:\n                waiter(row)"))),
        "a request for key 2 at t=1.025 s never got an answer, sent while a query for key 1 was running"),
    "one lock for every key; a miss that finds it taken asks again later": (
        stampede_safe(mutate(STAMPEDE, COALESCE_BODY, """        if getattr(self, "busy", False):   # a query is running: ask again shortly
            self.clock.after(0.05, self.get, key, reply)
            return
        self.busy = True

        def done(row):
            self.busy = False
            reply(row)

        super().fill(key, done)""")),
        "key 2 first missed at t=1.025 s, but its query started only at t=1.225 s, after key 1's query"),
    "XFetch with a generator per server, all with the same seed": (
        xfetch_with("random.Random(42)"),
        "Every time one of them refreshed the entry early, all 4 did, in the same instant"),
})


@pytest.mark.parametrize("mistake", list(WRONG_STAMPEDE))
def test_wrong_stampede_protection_fails_with_its_message(mistake):
    answer, expected = WRONG_STAMPEDE[mistake]
    assert_fails_with(lk.check("02.3", answer), expected)


@pytest.mark.parametrize("design", ["XFetch", "leases"])
def test_other_stampede_protections_also_pass(design):
    answer = run_cells(XFETCH)["StampedeSafeCache"] if design == "XFetch" else \
        run_cells(LEASED.replace("class ConsistentCache", "class StampedeSafeCache"))["StampedeSafeCache"]
    report = lk.check("02.3", answer)
    assert report.status == "passed", report.text()


@pytest.mark.parametrize("generator", [
    "random.Random(StampedeSafeCache.servers); StampedeSafeCache.servers += 1",
    "random",
], ids=["a generator per server, each seeded differently", "the random module's own generator"])
def test_xfetch_with_servers_drawing_different_numbers_also_passes(generator):
    random.seed(11)   # the random module's generator too: the same draws on every run of the test
    answer = xfetch_with(generator)
    answer.servers = 100
    report = lk.check("02.3", answer)
    assert report.status == "passed", report.text()


def test_coalescing_with_a_set_of_keys_in_flight_also_passes():
    """Per-key coalescing written another way: the keys being queried, and a defaultdict of waiters."""
    source = mutate(STAMPEDE, COALESCE_BODY, """        in_flight = self.__dict__.setdefault("in_flight", set())
        waiters = self.__dict__.setdefault("waiters", __import__("collections").defaultdict(list))
        waiters[key].append(reply)
        if key in in_flight:
            return
        in_flight.add(key)

        def arrived(row):
            in_flight.discard(key)
            for waiter in waiters.pop(key):
                waiter(row)

        super().fill(key, arrived)""")
    report = lk.check("02.3", stampede_safe(source))
    assert report.status == "passed", report.text()


def test_xfetch_passes_whatever_its_seed():
    """XFetch draws random numbers: a correct one must pass with any seed, not just a lucky one."""
    for seed in range(12):
        answer = run_cells(XFETCH.replace("random.Random(7)", f"random.Random({seed})"))["StampedeSafeCache"]
        report = lk.check("02.3", answer)
        assert report.status == "passed", (seed, report.text())


def test_coalescing_keeps_one_query_per_server_at_each_expiry():
    run = lk.caching.simulate_hot_key(stampede_safe())
    s = run.summary()
    assert s["peak_in_flight"] == 4 and s["answered"] == s["requests"]


# --- 02.4 write-behind ------------------------------------------------------------------------------

def write_behind(source=WRITE_BEHIND):
    return run_cells(source)["WriteBehindCache"]


FIFO = '''
class WriteBehindCache:
    """A queue of every write, in order; a failed batch goes back to the front."""

    def __init__(self, cache, db, batch_size=20):
        self.cache, self.db, self.batch_size = cache, db, batch_size
        self.queue = []

    def write(self, key, **fields):
        self.cache.set(key, fields)
        self.queue.append((key, fields))

    def flush(self):
        while self.queue:
            batch = self.queue[:self.batch_size]
            del self.queue[:self.batch_size]
            try:
                self.db.write_many(batch)
            except lk.caching.DatabaseDown:
                self.queue[:0] = batch
                return
'''

COALESCED_FLUSH = """        while self.pending:
            batch = list(self.pending.items())[:self.batch_size]
            try:
                self.db.write_many(batch)
            except lk.caching.DatabaseDown:
                return                 # nothing was written: everything stays queued, in order
            for key, _ in batch:
                del self.pending[key]"""

WRONG_WRITE_BEHIND = {
    "a failed batch is dropped": (
        mutate(WRITE_BEHIND, COALESCED_FLUSH, """        while self.pending:
            batch = list(self.pending.items())[:self.batch_size]
            for key, _ in batch:
                del self.pending[key]
            try:
                self.db.write_many(batch)
            except lk.caching.DatabaseDown:
                return"""),
        "that failed (the database was down) and was never sent again"),
    "a failed batch is re-queued at the back": (
        FIFO.replace("self.queue[:0] = batch", "self.queue.extend(batch)"),
        "went back in time"),
    # Put back one row at a time at the front: the batch comes back reversed, and after an even number of
    # failed flushes in the right order again, by luck.
    "a failed batch is put back reversed": (
        FIFO.replace("self.queue[:0] = batch", "for row in batch:\n                    self.queue.insert(0, row)"),
        "went back in time"),
    "one row per round trip": (
        mutate(WRITE_BEHIND, "                self.db.write_many(batch)",
               "                for key, fields in batch:\n                    self.db.write(key, **fields)"),
        "of them one row each"),
    "write-through: write() waits for the database": (
        mutate(WRITE_BEHIND, "        self.cache.set(key, fields)\n",
               "        self.cache.set(key, fields)\n        self.db.write(key, **fields)\n"),
        "write() raised DatabaseDown"),
    "write() forgets the cache": (
        mutate(WRITE_BEHIND, "        self.cache.set(key, fields)\n", ""),
        "the cache did not hold the new row"),
    "one batch of everything queued": (
        FIFO.replace("batch = self.queue[:self.batch_size]\n            del self.queue[:self.batch_size]",
                     "batch = self.queue[:]\n            del self.queue[:]"),
        "carried"),
    "a flush that retries in a loop while the database is down": (
        mutate(WRITE_BEHIND, "                return                 # nothing was written",
               "                continue  #"),
        "a retry loop that never gives up"),
}


@pytest.mark.parametrize("mistake", list(WRONG_WRITE_BEHIND))
def test_wrong_write_behind_fails_with_its_message(mistake):
    source, expected = WRONG_WRITE_BEHIND[mistake]
    assert_fails_with(lk.check("02.4", write_behind(source)), expected)


def test_an_in_order_queue_without_coalescing_also_passes():
    report = lk.check("02.4", write_behind(FIFO))
    assert report.status == "passed", report.text()


# --- 02.5 the scope of coalescing ----------------------------------------------------------------------

@pytest.mark.parametrize("answer, expected", [
    ("a", "plain cache-aside sends"), ("c", "can another app server's process see it"),
    ("d", "only those that miss while a query is running matter"), ("e", "ANSWER should be one of"),
])
def test_each_wrong_scope_answer_gets_its_own_feedback(answer, expected):
    assert_fails_with(lk.check("02.5", answer), expected)


def test_scope_answer_in_capitals_with_parentheses_passes():
    assert lk.check("02.5", " (B) ").status == "passed"


# --- labkit.caching: the slow database -------------------------------------------------------------------

def test_raw_sql_is_refused_during_an_outage_too():
    sim = lk.Sim(0)
    db = lk.caching.SlowDatabase(sim, outages=[(0.0, 1.0)])
    with pytest.raises(lk.caching.DatabaseDown):
        db.query("SELECT 1")
    with pytest.raises(lk.caching.DatabaseDown):
        db.execute("CREATE TABLE t (x)")


def test_a_query_answers_later_with_the_row_as_it_was_when_it_started():
    sim = lk.Sim(0)
    db = lk.caching.SlowDatabase(sim, query_s=0.2)
    db.write(1, name="a")
    got = []
    db.load(1, lambda row: got.append((sim.now, row)))
    db.write(1, name="b")
    sim.advance(0.1)
    assert got == []
    sim.advance(0.1)
    assert got == [(0.2, {"id": 1, "name": "a"})]
    assert db.read(1) == {"id": 1, "name": "b"}
    assert (db.queries, db.round_trips) == (2, 4)


def test_an_outage_refuses_every_call_and_changes_nothing():
    sim = lk.Sim(0)
    db = lk.caching.SlowDatabase(sim, outages=[(1.0, 2.0)])
    db.write(1, n=1)
    sim.advance(1.0)
    assert not db.is_up
    for call in (lambda: db.read(1), lambda: db.load(1, print), lambda: db.write(1, n=2),
                 lambda: db.write_many([(1, {"n": 3})])):
        with pytest.raises(lk.caching.DatabaseDown, match="is down"):
            call()
    assert db.position == 1 and sim.trace.count("db", "refused") == 4
    sim.advance(1.0)
    assert db.is_up and db.write_many([(1, {"n": 4}), (2, {"n": 5})]) == 3
    assert db.read(1)["n"] == 4 and db.round_trips == 7
    assert sim.trace.values("rows", "db", "batch") == [2]


# --- lk.caching: the Play panel --------------------------------------------------------------------------

def panel_run(**knobs):
    """The run lesson 02's Play panel shows at these knob values."""
    return lk.caching.PANEL.runs(**knobs)["this run"]


def test_panel_is_deterministic_and_the_ops_cache_changes_nothing():
    first = panel_run(write_ratio=0.2, l1_ttl_s=5.0)
    caching_model._caching_ops.cache_clear()
    again = panel_run(write_ratio=0.2, l1_ttl_s=5.0)
    assert first.trace.to_rows() == again.trace.to_rows()
    assert first.summary() == again.summary()
    # The panel has no seed knob (it runs seed 1); the same setting with another seed differs.
    knobs = lk.caching.PANEL.knobs.check(dict(write_ratio=0.2, l1_ttl_s=5.0))
    other = lk.caching.PANEL.run(seed=2, **knobs)
    assert other.trace.to_rows() != first.trace.to_rows()


def test_the_in_process_l2_gives_the_same_run_as_redis():
    """The Play panel's stand-in L2 must not change a single number: compare with a RedisCache."""
    kwargs = dict(duration_s=20.0, ttl_s=5.0, write_ratio=0.1, l1_items=20)
    model = lk.caching.simulate(**kwargs)
    redis = lk.caching.simulate(l2_backend="redis", **kwargs)
    app = lambda run: [e for e in run.trace.to_rows() if e["component"] == "app"]  # noqa: E731
    assert app(model) == app(redis)
    assert model.summary() == redis.summary()


def test_summary_tells_the_story_of_the_lesson():
    none = lk.caching.simulate(l1_items=0, l2=False).summary()
    l2 = lk.caching.simulate(l1_items=0).summary()
    both = lk.caching.simulate().summary()
    assert none["db_share"] == 1 and math.isnan(none["l1_hit_ratio"]) and math.isnan(none["l2_hit_ratio"])
    assert none["db_qps"] == pytest.approx(none["uncached_qps"])
    assert l2["db_qps"] < none["db_qps"] / 2 and l2["stale_share"] == 0
    # An L1 takes load off the L2 and latency off reads, not load off the database; and it serves stale reads.
    assert both["db_qps"] == pytest.approx(l2["db_qps"], rel=0.05)
    assert both["l2_ops_per_s"] < l2["l2_ops_per_s"] and both["mean_latency_ms"] < l2["mean_latency_ms"]
    assert both["stale_share"] > 0
    assert lk.caching.simulate(servers=1).summary()["stale_share"] == 0   # one server invalidates its own L1
    skewed = lk.caching.simulate(zipf_s=1.4).summary()
    flat = lk.caching.simulate(zipf_s=0.0).summary()
    assert skewed["db_share"] < both["db_share"] < flat["db_share"]
    assert both["ideal_l1_hit_ratio"] == pytest.approx(0.601, abs=0.001)


def test_show_caching_gives_a_table_and_a_chart_that_states_the_finding():
    table, chart = lk.caching.PANEL.show(panel_run())
    assert isinstance(table, lk.Table) and isinstance(chart, lk.Chart)
    assert "reads served by L1 / L2 / database" in repr(table)
    assert repr(chart).startswith("<Chart: Reads served by L1") and "queries/s instead of" in repr(chart)
    assert chart._repr_png_().startswith(b"\x89PNG")
    lk.caching.plot(panel_run(l1_items=0, write_ratio=0.0))   # no L1, nothing stale


def test_play_panel_renders_without_a_browser():
    panel = lk.caching.PANEL
    play = Play(panel.runs, panel.show, **{k.name: k.widget() for k in panel.knobs})   # as panel.play() builds it
    table, png = play.render()
    assert "database load (mean)" in repr(table) and png.startswith(b"\x89PNG")


# --- lk.caching: Break it ------------------------------------------------------------------------------

def test_a_hot_key_expiry_stampedes_through_plain_cache_aside():
    run = lk.caching.simulate_hot_key()
    s = run.summary()
    assert s["answered"] == s["requests"] and s["answered_twice"] == 0
    assert s["expiries"] == 2 and 35 <= s["peak_in_flight"] <= 50   # about 200 requests/s x 0.2 s
    assert run.summary() == lk.caching.simulate_hot_key().summary()
    table = lk.caching.summarize_hot_key({"plain": run})
    assert "most queries in flight at once" in repr(table)
    chart = lk.caching.plot_hot_key({"plain cache-aside": run})
    assert "plain cache-aside: 73 queries for one row, up to 41 at once" in repr(chart)


def test_the_stale_set_race_leaves_the_old_row_until_the_ttl():
    run = lk.caching.stale_set_race()
    assert [t for t, _ in run.stale_answers()] == [2.0, 10.0, 30.0, 61.0]
    assert run.summary() == {"reads": 6, "stale": 4, "last_stale_s": 61.0, "unanswered": 0}
    text = repr(run.timeline())
    assert "saves 'new bio'" in text and "'old bio' (stale)" in text and "cache miss (expired)" in text


def test_the_lesson_gives_the_same_numbers_on_a_real_redis_server(redis_url, monkeypatch):
    """The notebook runs on fakeredis unless LABKIT_REDIS_URL names a server; a real one must not change a number."""
    def runs():
        race = lk.caching.stale_set_race()
        hot = lk.caching.simulate_hot_key(duration_s=7.0)
        checks = [lk.check(exercise_id, run_cells(source)[name]).text() for exercise_id, name, source in
                  (("02.1", "TwoLevelCache", TWO_LEVEL), ("02.2", "ConsistentCache", CONSISTENT))]
        return repr(race.timeline()), hot.summary(), checks

    fake = runs()
    monkeypatch.setenv("LABKIT_REDIS_URL", redis_url)
    assert not isinstance(lk.RedisCache(lk.Sim(0)).client, fakeredis.FakeRedis)
    assert runs() == fake


def test_a_fill_read_at_the_tombstone_s_own_position_is_stored():
    """labkit.cache fix: a tombstone refuses older fills only; a fill that already saw the write is fresh."""
    sim = lk.Sim(0)
    cache = lk.RedisCache(sim)
    assert cache.delete("k", version=5)
    assert not cache.set_if_newer("k", "old", version=4)
    assert cache.set_if_newer("k", "new", version=5) and cache.get("k") == "new"
    assert not cache.set_if_newer("k", "same version", version=5)   # values: strictly newer only
    cache.flush()


# --- validation ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("call, words", [
    (lambda: panel_run(ttl_s=0), ("ttl_s must be", "[1, 120]", "got 0")),
    (lambda: panel_run(l1_items=-1), ("l1_items must be", "[0, 500]", "got -1")),
    (lambda: panel_run(l1_items=2.5), ("l1_items must be an int", "[0, 500]", "got 2.5")),
    (lambda: panel_run(l1_ttl_s=0), ("l1_ttl_s must be", "[0.5, 30]", "got 0")),
    (lambda: panel_run(zipf_s=3), ("zipf_s must be", "[0, 1.6]", "got 3")),
    (lambda: panel_run(write_ratio=0.8), ("write_ratio must be", "[0, 0.5]", "got 0.8")),
    (lambda: panel_run(servers=0), ("servers must be", "[1, 16]", "got 0")),
    (lambda: panel_run(seed=2), ("seed is not a knob", "ttl_s")),
    (lambda: lk.caching.simulate(servers=0), ("servers must be", "[1, 16]", "got 0")),
    (lambda: lk.caching.simulate(l2_backend="memcached"), ("l2_backend must be one of 'model', 'redis'",)),
    (lambda: lk.caching.simulate(rate_rps=0), ("rate_rps must be", "[1, 2000]", "got 0")),
    (lambda: lk.caching.simulate_hot_key(servers=0), ("servers must be", "[1, 64]", "got 0")),
    (lambda: lk.caching.simulate_hot_key("CacheAside"), ("app must be a class (or factory)",)),
    (lambda: lk.caching.stale_set_race(query_s=0), ("query_s must be", "(0, 10]", "got 0")),
    (lambda: lk.caching.SlowDatabase(lk.Sim(0), query_s=-1), ("query_s must be >= 0", "got -1")),
    (lambda: lk.caching.SlowDatabase(lk.Sim(0), outages=[(5, 2)]), ("outage end_s must be > 5", "got 2")),
    (lambda: lk.caching.SlowDatabase(lk.Sim(0), outages=[3]), ("outages must be (start_s, end_s) pairs",)),
    (lambda: lk.caching.SlowDatabase(lk.Sim(0)).load(1, "print"), ("callback must be a function",)),
    (lambda: lk.caching.SlowDatabase(lk.Sim(0)).write_many([(1, 2)]), ("rows must be (key, fields_dict) pairs",)),
    (lambda: lk.caching.CacheAside(None, None, None, ttl_s=0), ("ttl_s must be > 0", "got 0")),
    (lambda: lk.caching.summarize({}), ("runs must be a non-empty dict",)),
    (lambda: lk.caching.summarize({"x": 1}), ("runs must map labels to what lk.caching.simulate returns",)),
    (lambda: lk.caching.plot("run"), ("runs must be a non-empty dict", "'run'")),
    (lambda: lk.caching.plot({"a": panel_run(), "b": panel_run(servers=1)}),
     ("runs must hold one run for this figure", "got 2")),
    (lambda: lk.caching.summarize_hot_key({}), ("runs must be a non-empty dict",)),
    (lambda: lk.caching.summarize_hot_key({"x": panel_run}),
     ("runs must map labels to what lk.caching.simulate_hot_key returns",)),
    (lambda: lk.caching.SlowDatabase(lk.Sim(0)).write_many([(1, {"a] TEXT, [b": 1})]),
     ("field names must be Python identifiers",)),
    (lambda: lk.caching.plot_hot_key(["run"]), ("runs must be a non-empty dict",)),
    (lambda: lk.caching.plot_hot_key({"x": "run"}),
     ("runs must map labels to what lk.caching.simulate_hot_key returns",)),
])
def test_bad_arguments_name_the_parameter_and_range(call, words):
    with pytest.raises(ValueError) as err:
        call()
    for word in words:
        assert word in str(err.value)


# --- wrong answers written from the prompts alone, and more correct designs -----------------------------
#
# Each wrong answer is judged on what the prompt asks and must fail with the message naming its real cause.

L1_THEN_L2 = "        value = self.l1.get(key)\n        if value is None:\n            value = self.l2.get(key)\n"
SET_BODY = "        self.db.write(key, **fields)\n        self.invalidate(key)"

MORE_WRONG_TWO_LEVEL = {
    "an L2 hit is stored in the L2 again, restarting its TTL": (
        FILL_BOTH, "            self.l2.set(key, value)\n            self.l1.set(key, value)",
        "Your get() stored an L2 hit in the L2 again (at t=20, 40, 55 s): each set restarts the entry's TTL"),
    "the L2 keeps rows far longer than its TTL": (
        "                self.l2.set(key, value)\n", "                self.l2.set(key, value, ttl_s=3600)\n",
        "which your code had stored for 3600 s"),
    "set() caches only the fields it was given": (
        SET_BODY, "        self.db.write(key, **fields)\n        self.l2.set(key, fields)\n        self.l1.set(key, fields)",
        "only the fields set() was given, not the row the database has"),
    "an L1 miss goes straight to the database": (
        L1_THEN_L2, "        value = self.l1.get(key)\n        if value is None:\n            value = None\n",
        "went straight to the database, without asking the shared L2"),
    "the L2 is asked before the L1": (
        L1_THEN_L2, "        value = self.l2.get(key)\n        if value is None:\n            value = self.l1.get(key)\n",
        "asked the shared L2 before its own L1"),
    "invalidate stores the 'not found' marker in the L2": (
        "        self.l2.delete(key)    #", "        self.l2.set(key, {})    #",
        "that reads as 'no such row' (your 'not found' marker?)"),
    "invalidate forgets this server's L1": (
        "        self.l1.delete(key)\n", "",
        "from its own L1: set() must clear (or update) the key in this server's L1"),
    "write-through to the L2 only": (
        SET_BODY, "        self.db.write(key, **fields)\n        self.l2.set(key, self.db.read(key))",
        "from its own L1: set() must clear (or update) the key in this server's L1"),
}


@pytest.mark.parametrize("mistake", list(MORE_WRONG_TWO_LEVEL))
def test_more_wrong_two_level_caches_fail_naming_their_cause(mistake):
    old, new, expected = MORE_WRONG_TWO_LEVEL[mistake]
    assert_fails_with(check("02.1", "TwoLevelCache", mutate(TWO_LEVEL, old, new)), expected)


@pytest.mark.parametrize("old, new", [
    ("value = {} if row is None else row", 'value = "<no such row>" if row is None else row'),
    (SET_BODY, "        self.l1.delete(key)\n        self.db.write(key, **fields)\n        self.l2.delete(key)"),
], ids=["a string marker for 'no such row'", "set() clears the L1, writes, then clears the L2"])
def test_more_two_level_designs_pass(old, new):
    source = mutate(TWO_LEVEL, old, new)
    if "no such row" in new:
        source = mutate(source, "return None if value == {} else value", 'return None if value == "<no such row>" else value')
    report = check("02.1", "TwoLevelCache", source)
    assert report.status == "passed", report.text()


FILL_SET = "self.cache.set_if_newer(key, row, version, ttl_s=self.ttl_s)"

MORE_WRONG_CONSISTENT = {
    "a fill is refused whenever any profile was saved during its query": (
        mutate(CONSISTENT, "            " + FILL_SET,
               "            if self.db.position == version:\n                self.cache.set(key, row, ttl_s=self.ttl_s)"),
        "Your fills refuse to store when any profile was saved during their query"),
    "set_if_newer without a ttl_s": (
        mutate(CONSISTENT, FILL_SET, "self.cache.set_if_newer(key, row, version)"),
        "your fill stored the row with no TTL"),
    "the TTL hard-coded to 60 s": (
        mutate(CONSISTENT, FILL_SET, "self.cache.set_if_newer(key, row, version, ttl_s=60)"),
        "your fill stored the row for 60 s, not the ttl_s=10 your class was given"),
    "the tombstone one below the update's commit": (
        mutate(CONSISTENT, "self.cache.delete(key, version=position)", "self.cache.delete(key, version=position - 1)"),
        "Your update() left a tombstone with version 4, but its own commit is at log position 5"),
    "the tombstone takes the position from before the write": (
        mutate(CONSISTENT, UPDATE, "        self.cache.delete(key, version=self.db.position)\n"
                                   "        self.db.write(key, **fields)"),
        "Give the tombstone the position db.write returns"),
    "a fill's version one ahead of its query": (
        mutate(CONSISTENT, "        version = self.db.position ", "        version = self.db.position + 1 "),
        "take a fill's version from self.db.position just before its query"),
    "the second delete after 0.1 s": (
        DELETE_TWICE.replace("DELAY", "0.1"),
        "a second delete must wait at least as long as a query can take"),
    "leases, but update never deletes": (
        LEASED.replace("        self.db.write(key, **fields)\n        self.cache.delete(key)", "        self.db.write(key, **fields)"),
        "Your update() wrote the database but never touched the cache"),
    "a miss replies with a wrapper around the row": (
        mutate(CONSISTENT, "            reply(row)\n\n        self.db.load", "            reply({'row': row})\n\n        self.db.load"),
        "reply with the row itself"),
}


@pytest.mark.parametrize("mistake", list(MORE_WRONG_CONSISTENT))
def test_more_wrong_consistent_caches_fail_naming_their_cause(mistake):
    source, expected = MORE_WRONG_CONSISTENT[mistake]
    assert_fails_with(lk.check("02.2", consistent(source)), expected)


@pytest.mark.parametrize("source", [
    DELETE_TWICE.replace("DELAY", "self.db.query_s"),
    mutate(CONSISTENT, "        self.cache.delete(key, version=position)",
           "        self.cache.set_if_newer(key, self.db.read(key), position, ttl_s=self.ttl_s)"),
], ids=["delete twice, exactly one query time later", "versioned write-through"])
def test_more_fixes_of_the_race_pass(source):
    report = lk.check("02.2", consistent(source))
    assert report.status == "passed", report.text()


def test_an_unsolved_exercise_2_is_named_by_every_check_of_exercise_3():
    """StampedeSafeCache inherits get() and the query from ConsistentCache: with exercise 2 untouched it never answers."""
    answer = stampede_safe(base=cell_defining("lessons", LESSON, "ConsistentCache"))
    report = lk.check("02.3", answer)
    assert report.score == 0 and report.status == "failed", report.text()
    for result in report.results:
        assert "get(1, reply) on an empty cache did nothing" in result.message
        assert "If exercise 2 is still the starter's ..., solve it first" in result.message


XFETCH_VERSIONED = XFETCH.replace("class StampedeSafeCache:", "class StampedeSafeCache(ConsistentCache):").replace(
    "        started = self.clock.now\n", "        started = self.clock.now\n        version = self.db.position\n").replace(
    "self.cache.set(key, entry, ttl_s=self.ttl_s)", "self.cache.set_if_newer(key, entry, version, ttl_s=self.ttl_s)").replace(
    "    def update(self, key, **fields):\n        self.db.write(key, **fields)\n        self.cache.delete(key)\n"
    "        self.clock.after(self.db.query_s, self.cache.delete, key)   # exercise 2's fix: once no query is in flight\n",
    "")

MORE_WRONG_STAMPEDE = {
    "a fill of its own with a plain set drops exercise 2's fix": (
        stampede_safe(mutate(STAMPEDE, "        super().fill(key, answer_everyone)",
                             "        def arrived(row):\n            self.cache.set(key, row, ttl_s=self.ttl_s)\n"
                             "            answer_everyone(row)\n        self.db.load(key, arrived)")),
        "stored the old row with a plain cache.set, which ignores the tombstone your update() left"),
    "XFetch refreshes with set_if_newer at the entry's own version": (
        run_cells(CONSISTENT, XFETCH_VERSIONED)["StampedeSafeCache"],
        "a refresh reads the same version as the entry it would replace"),
    "coalescing over fills stored without a TTL": (
        stampede_safe(base=mutate(CONSISTENT, FILL_SET, "self.cache.set_if_newer(key, row, version)")),
        "your fills stored it with no TTL"),
    "coalescing that leaves the first request off its waiting list": (
        stampede_safe(mutate(STAMPEDE, "        self.waiting[key] = [reply]", "        self.waiting[key] = []")),
        "requests for the hot key never got an answer"),
    "XFetch with delta set to the TTL": (
        run_cells(XFETCH.replace('"delta": now - started', '"delta": self.ttl_s'))["StampedeSafeCache"],
        "Your reads recompute early far too often"),
    "XFetch with its comparison the wrong way round": (
        run_cells(XFETCH.replace('>= entry["expiry"]', '<= entry["expiry"]'))["StampedeSafeCache"],
        "Your reads recompute early far too often"),
    "XFetch with a plain set and a single delete": (
        run_cells(XFETCH.replace("        self.clock.after(self.db.query_s, self.cache.delete, key)", ""))["StampedeSafeCache"],
        "Break it 2's race, through your StampedeSafeCache"),
}


@pytest.mark.parametrize("mistake", list(MORE_WRONG_STAMPEDE))
def test_more_wrong_stampede_protections_fail_naming_their_cause(mistake):
    answer, expected = MORE_WRONG_STAMPEDE[mistake]
    assert_fails_with(lk.check("02.3", answer), expected)


@pytest.mark.parametrize("answer", [
    lambda: run_cells(CONSISTENT, XFETCH_VERSIONED.replace(
        "        version = self.db.position\n",
        "        version = self.db.position + started / (started + 1)   # refreshes of one version order by time\n"))[
        "StampedeSafeCache"],
    lambda: stampede_safe(mutate(STAMPEDE, COALESCE_BODY, """        if key in self.waiting:          # a query is running: look again shortly
            self.clock.after(0.05, self.get, key, reply)
            return
        self.waiting[key] = True

        def done(row):
            del self.waiting[key]
            reply(row)

        super().fill(key, done)""")),
    lambda: stampede_safe(base=DELETE_TWICE.replace("DELAY", "0.5").replace(
        "            return\n        def arrived", "            return\n        self.fill(key, reply)\n\n"
                                                  "    def fill(self, key, reply):\n        def arrived")),
], ids=["versioned XFetch, refreshes ordered by time", "per-key coalescing by polling",
        "coalescing over a delete-twice ConsistentCache"])
def test_more_stampede_protections_pass(answer):
    report = lk.check("02.3", answer())
    assert report.status == "passed", report.text()


MORE_WRONG_WRITE_BEHIND = {
    "except ConnectionError lets DatabaseDown escape flush()": (
        WRITE_BEHIND.replace("except lk.caching.DatabaseDown:", "except ConnectionError:"),
        "flush() raised DatabaseDown instead of returning"),
    "except (ConnectionError, OSError)": (
        WRITE_BEHIND.replace("except lk.caching.DatabaseDown:", "except (ConnectionError, OSError):"),
        "it is not a ConnectionError or an OSError"),
    "coalescing keeps the first write of a key": (
        mutate(WRITE_BEHIND, "        self.pending.pop(key, None)    # coalesce: one queued write per key, the newest\n"
                             "        self.pending[key] = fields", "        self.pending.setdefault(key, fields)"),
        "an older write of the same player, instead. Coalescing must keep the newest write"),
    "coalescing empties the whole queue after one batch": (
        mutate(WRITE_BEHIND, "            for key, _ in batch:\n                del self.pending[key]",
               "            self.pending.clear()"),
        "Remove from the queue only the rows a successful write_many carried"),
    "except Exception empties the queue": (
        mutate(WRITE_BEHIND, "            except lk.caching.DatabaseDown:\n                return ",
               "            except Exception:\n                self.pending.clear()\n                return "),
        "that failed (the database was down) and was never sent again"),
    "batches one row too big": (
        WRITE_BEHIND.replace("[:self.batch_size]", "[:self.batch_size + 1]"),
        "One write_many call carried 21 rows"),
    "writes go straight to the database while it is up": (
        mutate(WRITE_BEHIND, "        self.cache.set(key, fields)\n        self.pending.pop(key, None)",
               "        self.cache.set(key, fields)\n        if not self.pending:\n            try:\n"
               "                self.db.write(key, **fields)\n                return\n"
               "            except lk.caching.DatabaseDown:\n                pass\n        self.pending.pop(key, None)"),
        "of them one row each"),
    "coalescing with a retry list sent after newer rows": ('''
class WriteBehindCache:
    def __init__(self, cache, db, batch_size=20):
        self.cache, self.db, self.batch_size = cache, db, batch_size
        self.pending, self.failed = {}, []

    def write(self, key, **fields):
        self.cache.set(key, fields)
        self.pending[key] = fields

    def flush(self):
        while self.pending or self.failed:
            if self.pending:
                batch = list(self.pending.items())[:self.batch_size]
                for k, _ in batch:
                    del self.pending[k]
            else:
                batch, self.failed = self.failed[:self.batch_size], self.failed[self.batch_size:]
            try:
                self.db.write_many(batch)
            except lk.caching.DatabaseDown:
                self.failed.extend(batch)
                return
''', "went back in time"),
}


@pytest.mark.parametrize("mistake", list(MORE_WRONG_WRITE_BEHIND))
def test_more_wrong_write_behind_fail_naming_their_cause(mistake):
    source, expected = MORE_WRONG_WRITE_BEHIND[mistake]
    assert_fails_with(lk.check("02.4", write_behind(source)), expected)


@pytest.mark.parametrize("source", [
    # The keys to write, and their rows read from the cache at flush time (Hazelcast's coalescing).
    mutate(mutate(WRITE_BEHIND, "        self.pending.pop(key, None)    # coalesce: one queued write per key, the newest\n"
                                "        self.pending[key] = fields", "        self.pending[key] = True"),
           "            batch = list(self.pending.items())[:self.batch_size]",
           "            batch = [(key, self.cache.get(key)) for key in list(self.pending)[:self.batch_size]]"),
    # Take the batch off the queue, and put it back under any newer writes if it fails.
    mutate(WRITE_BEHIND, COALESCED_FLUSH, """        while self.pending:
            batch = list(self.pending.items())[:self.batch_size]
            for key, _ in batch:
                del self.pending[key]
            try:
                self.db.write_many(batch)
            except lk.caching.DatabaseDown:
                self.pending = {**dict(batch), **self.pending}
                return"""),
    # A list in order, removed from the front only after a success.
    FIFO.replace("            del self.queue[:self.batch_size]\n", "").replace(
        "                self.queue[:0] = batch\n                return", "                return\n"
                                                                      "            del self.queue[:len(batch)]"),
], ids=["dirty keys, rows read from the cache", "coalescing, a failed batch merged back under newer writes",
        "a list, rows removed after a success"])
def test_more_write_behind_designs_pass(source):
    report = lk.check("02.4", write_behind(source))
    assert report.status == "passed", report.text()


def test_the_timeline_left_aligns_its_text_columns():
    html = lk.caching.stale_set_race().timeline()._repr_html_()
    assert "text-align:right" not in html
    assert "text-align:right" in lk.caching.summarize({"a": panel_run()})._repr_html_()   # numbers stay right


def test_the_panel_s_cache_sliders_say_L1_and_L2():
    labels = {k.name: k.widget().description for k in lk.caching.PANEL.knobs}
    assert labels["l1_items"].startswith("L1") and labels["l1_ttl_s"].startswith("L1")
    assert labels["ttl_s"].startswith("L2")


# --- from a fresh-eyes review (lesson 02) ------------------------------------------------------------

@pytest.mark.parametrize("store", [
    '        self.cache.set(key, {"id": key, **fields})',
    '        row = dict(self.cache.get(key) or {"id": key})\n        row.update(fields)\n        self.cache.set(key, row)',
], ids=["the row with its id", "the fields merged into the cached row"])
def test_write_behind_caching_the_row_with_its_id_passes(store):
    """A row in this lesson is what db.read returns: its id and its fields; both are the new row."""
    report = lk.check("02.4", write_behind(mutate(WRITE_BEHIND, "        self.cache.set(key, fields)", store)))
    assert report.status == "passed", report.text()


@pytest.mark.parametrize("store, expected", [
    ('        self.cache.set(key, {"id": key, **fields, "seq": 0})', "the cache did not hold the new row"),
    ('        self.cache.set(key, {"id": key + 1, **fields})', "the cache did not hold the new row"),
    ('        self.cache.set(key, {"score": fields["score"]})', "the cache did not hold the new row"),
], ids=["a stale seq", "another key's id", "some of the fields"])
def test_write_behind_caching_another_row_fails(store, expected):
    report = lk.check("02.4", write_behind(mutate(WRITE_BEHIND, "        self.cache.set(key, fields)", store)))
    assert_fails_with(report, expected)


@pytest.mark.parametrize("old, new, expected", [
    ("        while self.pending:", "        if self.pending:", "flush() must write every queued row"),
    ("[:self.batch_size]", "[:20]", "the class was built with batch_size=7"),
], ids=["one batch per flush()", "batch size hard-coded 20"])
def test_write_behind_batches_are_judged_with_other_batch_sizes(old, new, expected):
    assert_fails_with(lk.check("02.4", write_behind(mutate(WRITE_BEHIND, old, new))), expected)


@pytest.mark.parametrize("old, new, expected", [
    # Only the L1 lookup is truthy: the database is asked once, but every read of a missing row asks Redis.
    ("        value = self.l1.get(key)\n        if value is None:", "        value = self.l1.get(key)\n        if not value:",
     "still asked the shared L2"),
    # A longer TTL only on the database's path: the server that read it first keeps it for 60 s.
    ("                self.l2.set(key, value)\n            self.l1.set(key, value)",
     "                self.l2.set(key, value, ttl_s=60)\n                self.l1.set(key, value, ttl_s=60)\n"
     "            else:\n                self.l1.set(key, value)",
     "past the L1's 5 s TTL (server 2 had filled it from the database)"),
], ids=["`if not value` on the L1 only", "ttl_s=60 on the database's path"])
def test_two_level_mistakes_seen_only_on_one_path_fail(old, new, expected):
    assert_fails_with(check("02.1", "TwoLevelCache", mutate(TWO_LEVEL, old, new)), expected)


def test_a_lease_holder_elsewhere_answered_with_none_is_named():
    source = LEASED.replace("            self.clock.after(0.05, self.get, key, reply)", "            reply(None)")
    assert_fails_with(lk.check("02.2", consistent(source)), "got None, though the database has the row")
    assert "what your cache stores around it" not in messages(lk.check("02.2", consistent(source)))


def test_none_then_the_row_is_two_answers_in_every_check():
    source = mutate(CONSISTENT, "        else:\n            self.fill(key, reply)",
                    "        else:\n            reply(None)\n            self.fill(key, reply)")
    report = lk.check("02.2", consistent(source))
    assert report.score == 0, report.text()
    assert all("answers" in r.message for r in report.results if not r.passed), report.text()


def test_coalescing_that_replaces_the_whole_waiting_dict_names_it():
    answer = stampede_safe(mutate(STAMPEDE, "        self.waiting[key] = [reply]", "        self.waiting = {key: [reply]}"))
    report = lk.check("02.3", answer)
    assert_fails_with(report, "replace the whole dict")
    assert "Your code raised KeyError" not in messages(report), report.text()


def test_xfetch_with_an_expiry_past_the_ttl_names_the_ttl():
    answer = run_cells(XFETCH.replace('"expiry": now + self.ttl_s}', '"expiry": now + 60.0}'))["StampedeSafeCache"]
    assert_fails_with(lk.check("02.3", answer), "the class was given ttl_s=4")


# --- from a second fresh-eyes review (lesson 02): each mistake is named by what happened -------------

FRESH_WRONG = {
    "02.1: set() invalidates before it writes the database": (
        "02.1", lambda: run_cells(mutate(TWO_LEVEL, SET_BODY, "        self.invalidate(key)\n        self.db.write(key, **fields)"))[
            "TwoLevelCache"],
        ["deleted user 2 from the shared L2 before it wrote the database", "Write the database first, then invalidate"],
        []),
    "02.2: the second delete after a constant 0.2 s": (
        "02.2", lambda: consistent(DELETE_TWICE.replace("DELAY", "0.2")),
        ["0.2 s after the update", "db.query_s, which is 0.35 s on this database"], []),
    "02.2: versioned fills, a plain delete": (
        "02.2", lambda: consistent(mutate(CONSISTENT, UPDATE, "        self.db.write(key, **fields)\n        self.cache.delete(key)")),
        ["update() deleted the key with a plain delete(key)", "The delete must carry the update's version too"],
        ["Make a fill that started before an update unable"]),
    "02.3: the waiting list is never removed": (
        "02.3", lambda: stampede_safe(mutate(STAMPEDE, "            for waiter in self.waiting.pop(key):",
                                             "            for waiter in self.waiting[key]:")),
        ["the key was still on your waiting list", "waited for a query that had already finished"],
        ["Keep a waiting list (and a 'query running' mark) per key"]),
    "02.3: only the first waiter is answered": (
        "02.3", lambda: stampede_safe(mutate(STAMPEDE, "            for waiter in self.waiting.pop(key):   # pop: the next "
                                             "miss starts a fresh query\n                waiter(row)",
                                             "            self.waiting.pop(key)[0](row)")),
        ["answer every reply on the key's waiting list, not only the first"],
        ["Keep a waiting list (and a 'query running' mark) per key"]),
    "02.3: XFetch with beta = 10": (
        "02.3", lambda: run_cells(XFETCH.replace("ttl_s=60.0, beta=1.0", "ttl_s=60.0, beta=10.0"))["StampedeSafeCache"],
        ["as if delta * beta were", "The formula is XFetch's; its scale is not", "beta is 1"],
        ["popular tutorial"]),
    "02.4: a failed batch goes to the back of the queue": (
        "02.4", lambda: write_behind(FIFO.replace("self.queue[:0] = batch", "self.queue.extend(batch)")),
        ["went back in time", "not go to the back behind them"], ["only in the queue"]),
    "02.4: an error is swallowed and the batch dropped": (
        "02.4", lambda: write_behind(mutate(WRITE_BEHIND, COALESCED_FLUSH, """        while self.pending:
            batch = list(self.pending.items())[:self.batch_size]
            try:
                self.db.write_many(batch)
            except Exception:
                pass
            for key, _ in batch:
                del self.pending[key]""")),
        ["that failed (the database was down) and was never sent again"], ["only in the queue"]),
    "02.4: coalescing keeps the first write of a key": (
        "02.4", lambda: write_behind(mutate(WRITE_BEHIND, "        self.pending.pop(key, None)    # coalesce: one queued write "
                                            "per key, the newest\n        self.pending[key] = fields",
                                            "        self.pending.setdefault(key, fields)")),
        ["an older write of the same player, instead"], ["only in the queue"]),
    "02.4: the batch leaves the queue before the write": (
        "02.4", lambda: write_behind(FIFO.replace("                self.queue[:0] = batch\n", "")),
        ["that failed (the database was down) and was never sent again"], ["only in the queue"]),
}


@pytest.mark.parametrize("mistake", list(FRESH_WRONG))
def test_fresh_eyes_wrong_answers_fail_naming_their_cause(mistake):
    exercise_id, answer, expected, misleading = FRESH_WRONG[mistake]
    report = lk.check(exercise_id, answer())
    assert report.status == "failed", report.text()
    for words in expected:
        assert words in messages(report), report.text()
    for words in misleading:
        assert words not in messages(report), report.text()


@pytest.mark.parametrize("source", [
    DELETE_TWICE.replace("DELAY", "self.db.query_s"),
    DELETE_TWICE.replace("DELAY", "self.db.query_s + 0.05"),
], ids=["delete twice after db.query_s", "delete twice after db.query_s and a margin"])
def test_a_second_delete_timed_by_the_database_passes_on_the_slower_one(source):
    report = lk.check("02.2", consistent(source))
    assert report.status == "passed", report.text()
