"""The read-replica checks against the solution, the untouched lesson, plausible wrong answers and
other correct designs; and lk.replicas, the lesson's router, simulation and Play panel.

Each wrong answer is a small mutation of the solution, so it stays plausible as the
solution evolves, and each must fail with the message written for that mistake.
"""
import math

import pytest

import labkit as lk
from labkit.lessons.replicas import model as replicas_model
from support import assert_every_check, cell_defining, mutate, run_cells

LESSON = "01_read_replicas"
ROUTER = cell_defining("solutions", LESSON, "Router")
LAG = cell_defining("solutions", LESSON, "LagAwareRouter")
RYW = cell_defining("solutions", LESSON, "ReadYourWritesRouter")
EXERCISES = [("01.1", "Router"), ("01.2", "LagAwareRouter"), ("01.3", "ReadYourWritesRouter"),
             ("01.4", "REPLICAS")]


def router(source=ROUTER):
    return run_cells(source)["Router"]


def lag_aware(source=LAG, base=ROUTER):
    return run_cells(base, source)["LagAwareRouter"]


def session_router(source=RYW):
    return run_cells(ROUTER, LAG, source)["ReadYourWritesRouter"]


def messages(report):
    return "\n".join(r.message for r in report.results if not r.passed)


# --- the solution and the untouched lesson --------------------------------------------------------

def test_solution_passes_every_check():
    ns = run_cells(ROUTER, LAG, RYW, cell_defining("solutions", LESSON, "REPLICAS"))
    assert_every_check(ns, EXERCISES, "passed")


def test_untouched_lesson_is_not_attempted():
    ns = run_cells(*(cell_defining("lessons", LESSON, name) for _, name in EXERCISES))
    assert_every_check(ns, EXERCISES, "not attempted")


def test_labkit_router_is_not_accepted_as_an_answer():
    report = lk.check("01.1", lk.replicas.ReplicaRouter)
    assert report.score == 0
    assert "labkit's own router" in messages(report)


# --- 01.1 the read/write splitter ------------------------------------------------------------------

ROTATE = """        for _ in range(len(self.replicas)):
            replica = self.replicas[self.turn % len(self.replicas)]
            self.turn += 1
            if replica.is_up:              # a down one's turn passes to the next replica
                return replica.read(key)
        return self.primary.read(key)      # every replica is down: the last resort"""

ROUTER_CATCHING = mutate(ROUTER, ROTATE, """        for _ in range(len(self.replicas)):
            replica = self.replicas[self.turn % len(self.replicas)]
            self.turn += 1
            try:
                return replica.read(key)
            except lk.ReplicaDown:
                continue
        return self.primary.read(key)""")

WRONG_ROUTERS = {
    "strong reads go to replicas": (
        "        if strong:\n            return self.primary.read(key)\n", "",
        "reads with strong=True were served by replicas"),
    "replica chosen by key": (
        "            replica = self.replicas[self.turn % len(self.replicas)]",
        "            replica = self.replicas[hash(key) % len(self.replicas)]",
        "choosing the replica from the key puts every read of a popular profile on the same replica"),
    "one replica per router (like a pooled DNS endpoint)": (
        "            self.turn += 1\n", "",
        "Pick a replica per read, not once per router"),
    "one replica down sends its share to the primary": (
        ROTATE,
        """        replica = self.replicas[self.turn % len(self.replicas)]
        self.turn += 1
        if replica.is_up:
            return replica.read(key)
        return self.primary.read(key)""",
        "a dead replica's turn to the next replica; the primary is the last resort"),
    "a down replica's turn passes on once, then to the primary": (
        "        for _ in range(len(self.replicas)):",
        "        for _ in range(min(2, len(self.replicas))):",
        "however many are down in a row"),
    "down replicas are not skipped": (
        "            if replica.is_up:              # a down one's turn passes to the next replica\n"
        "                return replica.read(key)",
        "            return replica.read(key)",
        "A read raised ReplicaDown out of your router"),
    "every replica down raises instead of using the primary": (
        "        return self.primary.read(key)      # every replica is down: the last resort",
        "        raise lk.ReplicaDown('no replica is up')",
        "With every replica down, a read raised ReplicaDown"),
    "a replica that went down is dropped for good": (
        ROTATE,
        """        for replica in list(self.replicas):
            if not replica.is_up:
                self.replicas.remove(replica)
        for _ in range(len(self.replicas)):
            replica = self.replicas[self.turn % len(self.replicas)]
            self.turn += 1
            return replica.read(key)
        return self.primary.read(key)""",
        "Skip a replica while it is down, not forever"),
    "write forgets to return the position": (
        "        return self.primary.write(key, **fields)", "        self.primary.write(key, **fields)",
        "write() returned None"),
    "writes go to a replica": (
        "        return self.primary.write(key, **fields)", "        return self.replicas[0].write(key, **fields)",
        "Your router sent a write to a replica"),
    # From the fresh-eyes review: a turn per key is even over 600 reads of ten keys, not over first reads.
    "one turn per profile": (
        ROTATE,
        """        turns = self.__dict__.setdefault("turns", {})
        for _ in range(len(self.replicas)):
            replica = self.replicas[turns.get(key, 0) % len(self.replicas)]
            turns[key] = turns.get(key, 0) + 1
            if replica.is_up:
                return replica.read(key)
        return self.primary.read(key)""",
        "Is the turn kept per profile?"),
    # Replicas refuse writes, but a router that swallowed the error carried on unnoticed.
    "writes also sent to the replicas, their refusal swallowed": (
        "        return self.primary.write(key, **fields)",
        """        position = self.primary.write(key, **fields)
        for r in self.replicas:
            try:
                r.write(key, **fields)
            except Exception:
                pass
        return position""",
        "which refused it (replicas are read-only)"),
    "turn modulo 3, not the number of replicas": (
        "            replica = self.replicas[self.turn % len(self.replicas)]",
        "            replica = self.replicas[self.turn % 3]",
        "With 4 replicas, 600 ordinary reads went: primary 0, replica1 200, replica2 200, replica3 200, replica4 0"),
    "turn moved on by 2": (
        "            self.turn += 1\n", "            self.turn += 2\n",
        "replica2 and replica4 served none: your rotation skips some replicas"),
    "turn modulo one less than the number of replicas": (
        "            replica = self.replicas[self.turn % len(self.replicas)]",
        "            replica = self.replicas[self.turn % (len(self.replicas) - 1)]",
        "replica3 served none: your rotation skips some replicas"),
    "turn moved on only past replicas that are up": (
        "            self.turn += 1\n            if replica.is_up:              # a down one's turn passes to the next replica\n",
        "            if replica.is_up:\n                self.turn += 1\n",
        "the turn stayed on replica2 while it was down"),
    # From the fourth fresh-eyes round: a turn moved on by one per read, whoever served it.
    "a down replica's turns all go to the replica after it": (
        ROTATE,
        """        start, self.turn = self.turn, self.turn + 1
        for i in range(len(self.replicas)):
            replica = self.replicas[(start + i) % len(self.replicas)]
            if replica.is_up:
                return replica.read(key)
        return self.primary.read(key)""",
        "turns all went to the replica after it"),
    "read forgets to return the row": (
        "                return replica.read(key)", "                replica.read(key)\n                return",
        "Return the row the node gives you"),
}


@pytest.mark.parametrize("mistake", list(WRONG_ROUTERS))
def test_wrong_router_fails_with_its_message(mistake):
    old, new, expected = WRONG_ROUTERS[mistake]
    report = lk.check("01.1", router(mutate(ROUTER, old, new)))
    assert report.status == "failed", report.text()
    assert expected in messages(report), report.text()


def test_primary_taking_its_turn_fails():
    """The primary in the rotation (the primary has no is_up, so this is the try/except design)."""
    source = mutate(ROUTER_CATCHING, "        self.replicas = replica_set.replicas\n",
                    "        self.replicas = [replica_set.primary, *replica_set.replicas]\n")
    report = lk.check("01.1", router(source))
    assert report.status == "failed"
    assert "The primary served 150 of 600 ordinary reads" in messages(report)
    assert "Keep it for writes and strong reads" in messages(report)


def test_wrong_constructor_is_named():
    report = lk.check("01.1", router(mutate(ROUTER, "def __init__(self, replica_set):",
                                            "def __init__(self, primary, replicas):")))
    assert report.status == "failed"
    assert "Could not create your" in messages(report) and "as Router(replica_set)" in messages(report)
    assert "Keep the parameter names of the starter cell" in messages(report)


def test_router_catching_replica_down_also_passes():
    """Another correct design: try each replica and catch lk.ReplicaDown instead of asking is_up."""
    report = lk.check("01.1", router(ROUTER_CATCHING))
    assert report.status == "passed", report.text()


RANDOM_ROUTER = '''
import random

class Router:
    def __init__(self, replica_set):
        self.replica_set = replica_set
        self.rng = random.Random(7)

    def write(self, key, **fields):
        return self.replica_set.primary.write(key, **fields)

    def read(self, key, strong=False):
        up = [r for r in self.replica_set.replicas if r.is_up]
        node = self.replica_set.primary if strong or not up else self.rng.choice(up)
        return node.read(key)
'''


@pytest.mark.parametrize("seed", [7, 1, 2, 3])
def test_router_choosing_replicas_at_random_fails(seed):
    """The prompt asks for turns: a random pick is even over 600 reads, but not over 6 in a row."""
    report = lk.check("01.1", run_cells(RANDOM_ROUTER.replace("random.Random(7)", f"random.Random({seed})"))["Router"])
    assert report.status == "failed", report.text()
    assert "6 reads in a row" in messages(report) and "A random pick is even only on average" in messages(report)
    assert "taking turns means every replica serves one read in every 3 in a row" in messages(report)


def test_router_without_wrap_around_fails():
    """Looks only at the replicas after the turn: fine while replica2 is down, not when the last one is."""
    source = mutate(ROUTER, ROTATE, """        for i in range(self.turn, len(self.replicas)):
            replica = self.replicas[i]
            if replica.is_up:
                self.turn = (i + 1) % len(self.replicas)
                return replica.read(key)
        return self.primary.read(key)""")
    report = lk.check("01.1", router(source))
    assert report.status == "failed", report.text()
    assert "While replica3, the last replica in the list, was down, the primary served" in messages(report)
    assert "After the last replica comes the first again" in messages(report)


@pytest.mark.parametrize("source", [
    '''
import itertools

class Router:
    """Round robin with itertools.cycle; a down replica is passed over, the primary only when all are down."""

    def __init__(self, replica_set):
        self.primary, self.replicas = replica_set.primary, list(replica_set.replicas)
        self.order = itertools.cycle(self.replicas)

    def write(self, key, **fields):
        return self.primary.write(key, **fields)

    def read(self, key, strong=False):
        if not strong:
            for _ in self.replicas:
                replica = next(self.order)
                if replica.is_up:
                    return replica.read(key)
        return self.primary.read(key)
''',
    mutate(ROUTER, ROTATE, """        up = [r for r in self.replicas if r.is_up]
        if not up:
            return self.primary.read(key)
        replica = up[self.turn % len(up)]
        self.turn += 1
        return replica.read(key)"""),
    '''
import random

class Router:
    """Every replica once per round, in an order shuffled for each round; down ones are passed over."""

    def __init__(self, replica_set):
        self.primary, self.replicas = replica_set.primary, replica_set.replicas
        self.rng, self.round = random.Random(3), []

    def write(self, key, **fields):
        return self.primary.write(key, **fields)

    def read(self, key, strong=False):
        if not strong:
            for _ in range(2 * len(self.replicas)):
                if not self.round:
                    self.round = list(self.replicas)
                    self.rng.shuffle(self.round)
                replica = self.round.pop()
                if replica.is_up:
                    return replica.read(key)
        return self.primary.read(key)
''',
], ids=["itertools.cycle", "turns over the list of replicas that are up", "a shuffled order each round"])
def test_other_round_robin_routers_also_pass(source):
    """Other ways to take turns evenly over the replicas that are up."""
    report = lk.check("01.1", run_cells(source)["Router"])
    assert report.status == "passed", report.text()


# --- 01.2 lag-aware routing -------------------------------------------------------------------------

CHOOSE = """        fresh = [r for r in self.replicas if r.is_up and r.lag_s <= self.max_lag_s]
        if not fresh:
            self.degraded_reads += 1
            return self.primary.read(key)
        replica = fresh[self.turn % len(fresh)]
        self.turn += 1
        return replica.read(key)"""

WRONG_LAG_AWARE = {
    # From the fourth fresh-eyes round: Vitess's choice, where this exercise asks for the primary.
    "no replica qualifies: the least-behind one, counted": (
        "            self.degraded_reads += 1\n            return self.primary.read(key)",
        """            self.degraded_reads += 1
            up = [r for r in self.replicas if r.is_up]
            if not up:
                return self.primary.read(key)
            return min(up, key=lambda r: r.lag_s).read(key)""",
        "served it from the least-behind replica anyway"),
    "falls back to the primary silently": (
        "            self.degraded_reads += 1\n", "",
        "degraded_reads stayed at 0"),
    "always the first replica that qualifies (the classic lag check)": (
        "        replica = fresh[self.turn % len(fresh)]", "        replica = fresh[0]",
        "Always taking the first good one"),
    "a skipped replica's turn goes to its neighbour": (
        CHOOSE,
        """        start = self.turn
        self.turn += 1
        for i in range(len(self.replicas)):
            replica = self.replicas[(start + i) % len(self.replicas)]
            if replica.is_up and replica.lag_s <= self.max_lag_s:
                return replica.read(key)
        self.degraded_reads += 1
        return self.primary.read(key)""",
        "While replica2 was too far behind"),
    "never looks at lag": (
        " and r.lag_s <= self.max_lag_s]", "]",
        "reads while more than max_lag_s=1 s behind"),
    "compares log positions with seconds": (
        "r.lag_s <= self.max_lag_s", "r.lag_positions <= self.max_lag_s",
        "exactly when that replica was at most 1 log position behind: lag_positions counts log entries, not seconds"),
    "keeps serving the least-behind replica (Vitess) in this exercise": (
        "            return self.primary.read(key)\n        replica = fresh",
        "            # the least-behind replica that is up; the primary only when every replica is down\n"
        "            fresh = [min((r for r in self.replicas if r.is_up), key=lambda r: r.lag_s, default=self.primary)]\n"
        "        replica = fresh",
        "In this exercise those reads go to the primary"),
    "counts every read": (
        "        if strong:\n            return self.primary.read(key)\n        fresh",
        "        self.degraded_reads += 1\n        if strong:\n            return self.primary.read(key)\n        fresh",
        "degraded_reads went up by"),
    "every replica down falls back through Router.read, uncounted": (
        "        fresh = [r for r in self.replicas if r.is_up and r.lag_s <= self.max_lag_s]\n",
        "        if not any(r.is_up for r in self.replicas):\n            return super().read(key)\n"
        "        fresh = [r for r in self.replicas if r.is_up and r.lag_s <= self.max_lag_s]\n",
        "reads to the primary, but degraded_reads did not move"),
    "skips a lagging replica by moving the turn on, then lets Router.read pick": (
        "        replica = fresh[self.turn % len(fresh)]\n        self.turn += 1\n        return replica.read(key)",
        "        if self.replicas[self.turn % len(self.replicas)] not in fresh:\n            self.turn += 1\n"
        "        return super().read(key)",
        "It happened only while replica2 and replica3 lagged at the same time"),
    "shuns a lagging replica for good": (
        "        fresh = [r for r in self.replicas if r.is_up and r.lag_s <= self.max_lag_s]",
        "        self.shunned = getattr(self, 'shunned', set()) | "
        "{r.name for r in self.replicas if r.lag_s > self.max_lag_s}\n"
        "        fresh = [r for r in self.replicas if r.is_up and r.name not in self.shunned]",
        "Skip a replica while it is behind, not forever"),
    "a limit of 1 s written into read(), whatever max_lag_s": (
        "r.lag_s <= self.max_lag_s", "r.lag_s <= 1.0",
        "Your router was built with max_lag_s=0.3, but it behaved as if the limit were 1 s (the default in the "
        "starter code)"),
    "__init__ ignores its max_lag_s": (
        "        self.max_lag_s = max_lag_s", "        self.max_lag_s = 1.0",
        "it skipped replicas at the same lag every time"),
    "a limit of 0.5 s of its own": (
        "r.lag_s <= self.max_lag_s", "r.lag_s <= 0.5",
        "behaved as if the limit were about 0.5 s"),
    "a limit of 2 s of its own": (
        "r.lag_s <= self.max_lag_s", "r.lag_s <= 2",
        "behaved as if the limit were about 2.0 s"),
    "a lagging replica's turn goes to the primary": (
        CHOOSE,
        """        replica = self.replicas[self.turn % len(self.replicas)]
        self.turn += 1
        if replica.is_up and replica.lag_s <= self.max_lag_s:
            return replica.read(key)
        self.degraded_reads += 1
        return self.primary.read(key)""",
        "the read whose turn it was went to the primary"),
    "one lagging replica sends every read to the primary": (
        "        fresh = [r for r in self.replicas if r.is_up and r.lag_s <= self.max_lag_s]",
        "        up = [r for r in self.replicas if r.is_up]\n"
        "        fresh = up if up and max(r.lag_s for r in up) <= self.max_lag_s else []",
        "your router sent all those reads to the primary. Skip only the replicas that are too far behind"),
    "the replicas' mean lag against max_lag_s": (
        "        fresh = [r for r in self.replicas if r.is_up and r.lag_s <= self.max_lag_s]",
        "        up = [r for r in self.replicas if r.is_up]\n"
        "        fresh = up if up and sum(r.lag_s for r in up) / len(up) <= self.max_lag_s else []",
        "reads while more than max_lag_s=1 s behind"),
    "max_lag_s read as milliseconds": (
        "r.lag_s <= self.max_lag_s", "r.lag_s * 1000 <= self.max_lag_s",
        "every replica was within the bound (the furthest 0.05 s behind). Compare lag_s, which is in seconds"),
}


@pytest.mark.parametrize("mistake", list(WRONG_LAG_AWARE))
def test_wrong_lag_aware_router_fails_with_its_message(mistake):
    old, new, expected = WRONG_LAG_AWARE[mistake]
    report = lk.check("01.2", lag_aware(mutate(LAG, old, new)))
    assert report.status == "failed", report.text()
    assert expected in messages(report), report.text()


def test_missing_counter_is_named():
    source = mutate(mutate(LAG, "        self.degraded_reads = 0", "        pass"),
                    "            self.degraded_reads += 1\n", "")
    report = lk.check("01.2", lag_aware(source))
    assert report.status == "failed"
    assert "Your router has no degraded_reads number" in messages(report)


def test_lag_aware_router_written_from_scratch_also_passes():
    """A fresh class that never inherits from Router, and skips by trying replicas in turn."""
    source = '''
class LagAwareRouter:
    def __init__(self, replica_set, max_lag_s=1.0):
        self.rs, self.limit, self.n, self.degraded_reads = replica_set, max_lag_s, 0, 0

    def write(self, key, **fields):
        return self.rs.primary.write(key, **fields)

    def read(self, key, strong=False):
        if not strong:
            good = [r for r in self.rs.replicas if r.is_up and r.lag_s <= self.limit]
            if good:
                self.n += 1
                return good[self.n % len(good)].read(key)
            self.degraded_reads += 1
        return self.rs.primary.read(key)
'''
    report = lk.check("01.2", run_cells(source)["LagAwareRouter"])
    assert report.status == "passed", report.text()


@pytest.mark.parametrize("source", [
    mutate(LAG, "r.lag_s <= self.max_lag_s", "not r.lag_s > self.max_lag_s"),
    mutate(LAG, "        self.max_lag_s = max_lag_s", "        self.limit = max_lag_s").replace(
        "r.lag_s <= self.max_lag_s", "r.lag_s <= self.limit"),
], ids=["not over the bound", "the limit kept under another name"])
def test_other_lag_aware_routers_also_pass(source):
    report = lk.check("01.2", lag_aware(source))
    assert report.status == "passed", report.text()


def test_lag_aware_router_taking_the_least_recently_used_replica_also_passes():
    """Another even spread: the qualifying replica that served a read longest ago."""
    source = mutate(LAG, CHOOSE, """        fresh = [r for r in self.replicas if r.is_up and r.lag_s <= self.max_lag_s]
        if not fresh:
            self.degraded_reads += 1
            return self.primary.read(key)
        self.used = getattr(self, "used", {})
        self.turn += 1
        replica = min(fresh, key=lambda r: self.used.get(r.name, -1))
        self.used[replica.name] = self.turn
        return replica.read(key)""")
    report = lk.check("01.2", lag_aware(source))
    assert report.status == "passed", report.text()


# --- 01.3 read-your-writes ------------------------------------------------------------------------

def sticky(window_s, base="LagAwareRouter", init="super().__init__(replica_set, max_lag_s)", clock="self.clock.now"):
    """The other design: a user's reads go to the primary for window_s after their write (Rails)."""
    return f'''
class ReadYourWritesRouter({base}):
    def __init__(self, replica_set, clock, max_lag_s=1.0):
        {init}
        self.clock = clock
        self.wrote_at = {{}}

    def write(self, key, user, **fields):
        self.wrote_at[user] = {clock}
        return super().write(key, **fields)

    def read(self, key, user=None, strong=False):
        if user in self.wrote_at and {clock} - self.wrote_at[user] < {window_s}:
            return self.primary.read(key)
        return super().read(key, strong)
'''


WRONG_SESSIONS = {
    # From the fourth fresh-eyes round: everyone who reads a saved profile waits for the save.
    "token kept per profile, visitors held to it too": (
        mutate(mutate(mutate(RYW, "self.last_write[user] = position", "self.last_write[key] = position"),
                      "token = self.last_write.get(user, 0)", "token = self.last_write.get(key, 0)"),
               "r.is_up and r.position >= token", "r.is_up and r.position >= token and r.lag_s <= self.max_lag_s"),
        "a token kept per profile makes everyone who reads it wait for the save"),
    "only the user's first write is remembered": (
        mutate(RYW, "self.last_write[user] = position", "self.last_write.setdefault(user, position)"),
        "does your router keep the position of a user's first write?"),
    "every read on the primary": (
        mutate(RYW, "        token = self.last_write.get(user, 0)\n",
               "        token = self.last_write.get(user, 0)\n        return self.primary.read(key)\n"),
        "reads (100 %), including"),
    "token taken before the commit": (
        mutate(RYW, "        position = super().write(key, **fields)\n        self.last_write[user] = position",
               "        self.last_write[user] = self.primary.position\n        position = super().write(key, **fields)"),
        "one short of the save"),
    "one token for everybody": (
        mutate(RYW, "        token = self.last_write.get(user, 0)", "        token = max(self.last_write.values(), default=0)"),
        "visitors' reads. That is the load the replicas were added to take away"),
    "no token kept": (
        mutate(RYW, "        self.last_write[user] = position\n", ""),
        "they saw the old one"),
    "sticky window without a lag bound": (
        sticky("self.max_lag_s + 1", "Router", "super().__init__(replica_set)\n        self.max_lag_s = max_lag_s"),
        "A time-based sticky window expires whatever the lag"),
    "sticky window shorter than max_lag_s": (
        sticky("self.max_lag_s / 2"),
        "Your router kept users on the primary for about 0.5 s after a save"),
    "sticky window as long as max_lag_s": (
        sticky("self.max_lag_s"),
        "exactly max_lag_s=1 s after the save, replica1 was 1 s behind"),
    "sticky window of a fixed 2 s (Rails' default), whatever max_lag_s": (
        sticky(2.0),
        "kept users on the primary for about 2.0 s after a save, then sent their re-reads to the replicas, but it "
        "was built with max_lag_s=3"),
    "sticky window of a fixed 1.5 s, longer than the default max_lag_s only": (
        sticky(1.5),
        "about 1.5 s after a save"),
    "max_lag_s not passed on to LagAwareRouter": (
        sticky("2 * max_lag_s", init="super().__init__(replica_set)\n        max_lag_s = max_lag_s").replace(
            "    def read(self, key, user=None, strong=False):\n",
            "    def read(self, key, user=None, strong=False, max_lag_s=1.0):\n"),
        "as if your router had max_lag_s=1, the default, instead of the"),
    "sticky window on the wall clock": (
        sticky(2.0, clock="__import__('time').time()"),
        "Your code read the wall clock"),
    "no replica has the save yet: the lag-aware rules instead of the primary": (
        mutate(RYW, "            return self.primary.read(key)  # no replica has this user's write yet",
               "            return super().read(key)"),
        "neither had any other replica: at that moment only the primary had the save"),
    "token forgotten once the user reads": (
        mutate(RYW, "        token = self.last_write.get(user, 0)", "        token = self.last_write.pop(user, 0)"),
        "Your router forgets what it remembered about a user once they read"),
    "token kept per row, not per user": (
        mutate(mutate(RYW, "self.last_write[user] = position", "self.last_write[key] = position"),
               "token = self.last_write.get(user, 0)", "token = self.last_write.get(key, 0)"),
        "A token belongs to the user who wrote, not to the row"),
    "a replica must have caught up with the primary, not with the save": (
        mutate(RYW, "r.is_up and r.position >= token", "r.is_up and r.position >= self.primary.position"),
        "not once it has caught up with the primary"),
    "everyone sticks to the primary after anyone writes": (
        sticky(2.0).replace("self.wrote_at[user] = self.clock.now",
                            "self.wrote_at = {u: self.clock.now for u in range(1, 301)}"),
        "visitors' reads. That is the load the replicas were added to take away"),
}


@pytest.mark.parametrize("mistake", list(WRONG_SESSIONS))
def test_wrong_read_your_writes_fails_with_its_message(mistake):
    source, expected = WRONG_SESSIONS[mistake]
    report = lk.check("01.3", session_router(source))
    assert report.status == "failed", report.text()
    assert expected in messages(report), report.text()


@pytest.mark.parametrize("window_s", ["self.max_lag_s + 0.5", "2 * self.max_lag_s", "self.max_lag_s + 2"])
def test_sticky_window_longer_than_max_lag_s_also_passes(window_s):
    report = lk.check("01.3", session_router(sticky(window_s)))
    assert report.status == "passed", report.text()


def test_sticky_window_as_long_as_max_lag_s_with_its_end_included_also_passes():
    """Primary up to and including max_lag_s after the save: any later replica without it is too far behind."""
    report = lk.check("01.3", session_router(sticky("self.max_lag_s").replace("< self.max_lag_s", "<= self.max_lag_s")))
    assert report.status == "passed", report.text()


@pytest.mark.parametrize("window_s", [5.0, 5.5])
def test_fixed_sticky_window_longer_than_the_knobs_max_lag_s_fails(window_s):
    """A window of a fixed length, even one longer than the Play panel's largest max_lag_s (5 s), is not the rule."""
    report = lk.check("01.3", session_router(sticky(window_s)))
    assert report.status == "failed", report.text()
    assert "Built with max_lag_s=6" in report.text() and "whatever max_lag_s the router is given" in report.text()


def test_token_and_lag_bound_together_also_pass():
    """Stricter than needed: a replica serves the user only if it has the save and is within max_lag_s."""
    source = mutate(RYW, "r.is_up and r.position >= token", "r.is_up and r.position >= token and r.lag_s <= self.max_lag_s")
    report = lk.check("01.3", session_router(source))
    assert report.status == "passed", report.text()


def test_token_forgotten_once_every_replica_has_the_save_also_passes():
    """A session token kept only while some replica still lacks the save; then an ordinary reader again."""
    source = '''
class ReadYourWritesRouter(LagAwareRouter):
    def __init__(self, replica_set, clock, max_lag_s=1.0):
        super().__init__(replica_set, max_lag_s)
        self.clock = clock
        self.pending = {}     # user -> log position of a save that not every replica has yet

    def write(self, key, user, **fields):
        position = super().write(key, **fields)
        self.pending[user] = position
        return position

    def read(self, key, user=None, strong=False):
        position = self.pending.get(user)
        if position is not None and all(r.position >= position for r in self.replicas):
            del self.pending[user]
            position = None
        if strong or position is None:
            return super().read(key, strong)
        ready = [r for r in self.replicas if r.is_up and r.position >= position]
        if not ready:
            return self.primary.read(key)
        self.turn += 1
        return ready[self.turn % len(ready)].read(key)
'''
    report = lk.check("01.3", session_router(source))
    assert report.status == "passed", report.text()


# --- 01.4 capacity ----------------------------------------------------------------------------------

@pytest.mark.parametrize("answer, expected", [
    (6, "rounding down leaves every replica over the limit"),
    (5, "it leaves out the 25 % headroom"),
    (4, "Did you forget that every replica also replays every write?"),
    (3, "Every replica also replays all 1,600 writes/s"),
    (8, "Did you count the primary, or the writes as reads?"),
    (12, "safe, but fewer replicas would do"),
    (0, "the primary takes all 16,000 queries/s"),
    (6.7, "You can't run 6.7 replicas"),
    ("7", "REPLICAS should be a whole number of replicas"),
])
def test_each_wrong_capacity_answer_gets_its_own_feedback(answer, expected):
    report = lk.check("01.4", answer)
    assert report.status == "failed"
    assert expected in messages(report), report.text()


def test_capacity_answer_as_a_whole_float_passes():
    assert lk.check("01.4", 7.0).status == "passed"


# --- lk.replicas --------------------------------------------------------------------------------------

def test_reference_router_splits_reads_and_writes():
    sim = lk.Sim(0)
    rs = lk.ReplicaSet(sim, replicas=3, lag=0.1)
    r = lk.replicas.ReplicaRouter(rs)
    assert r.write(1, bio="a") == 1
    sim.advance(1)
    for _ in range(6):
        r.read(1)
    r.read(1, strong=True)
    rs.replicas[1].down()
    for _ in range(4):
        r.read(1)
    served = [e.component for e in sim.trace.select(event="read")]
    assert served[:6] == ["replica1", "replica2", "replica3"] * 2
    assert served[6] == "primary"
    assert sorted(served[7:]) == ["replica1", "replica1", "replica3", "replica3"]
    assert r.degraded_reads == 0


@pytest.mark.parametrize("policy, node", [("primary", "primary"), ("least_behind", "replica")])
def test_reference_router_counts_reads_when_every_replica_lags(policy, node):
    sim = lk.Sim(0)
    rs = lk.ReplicaSet(sim, replicas=3, lag=5.0)
    r = lk.replicas.ReplicaRouter(rs, max_lag_s=1.0, when_all_lagging=policy)
    r.write(1, bio="a")
    sim.advance(2)
    r.read(1)
    assert r.degraded_reads == 1
    assert sim.trace.select(event="read")[-1].component.startswith(node)
    assert sim.trace.count("router", "degraded") == 1


@pytest.mark.parametrize("mode", ["sticky", "token"])
def test_reference_router_reads_your_writes(mode):
    sim = lk.Sim(0)
    rs = lk.ReplicaSet(sim, replicas=2, lag=0.5)
    r = lk.replicas.ReplicaRouter(rs, read_your_writes=mode, sticky_s=1.0)
    r.write("ann", user="ann", bio="new")
    sim.advance(0.2)
    assert r.read("ann", user="ann")["bio"] == "new"   # from the primary
    assert r.read("ann", user="bob") is None           # bob is not promised anything
    sim.advance(1.0)
    assert r.read("ann", user="ann")["bio"] == "new"   # from a replica that caught up
    assert [e.component for e in sim.trace.select(event="read")] == ["primary", "replica1", "replica2"]


def panel_run(**knobs):
    """The run lesson 01's Play panel shows at these knob values."""
    return lk.replicas.PANEL.runs(**knobs)["this run"]


def test_panel_is_deterministic_and_the_ops_cache_changes_nothing():
    first = panel_run(lag_s=0.8, read_your_writes="sticky")
    replicas_model._workload.cache_clear()
    again = panel_run(lag_s=0.8, read_your_writes="sticky")
    assert first.trace.to_rows() == again.trace.to_rows()
    assert first.summary() == again.summary()
    # The panel has no seed knob (it runs seed 1); the same setting with another seed differs.
    knobs = lk.replicas.PANEL.knobs.check(dict(lag_s=0.8, read_your_writes="sticky"))
    assert lk.replicas.PANEL.run(seed=1, **knobs).trace.to_rows() == first.trace.to_rows()
    other = lk.replicas.PANEL.run(seed=2, **knobs)
    assert other.trace.to_rows() != first.trace.to_rows()


def test_summary_and_series_tell_the_story_of_the_lesson():
    alone = lk.replicas.simulate(replicas=0, seed=1).summary()
    three = lk.replicas.simulate(replicas=3, seed=1).summary()
    assert alone["primary_read_share"] == 1.0 and alone["primary_utilisation"] > 1.4
    assert three["primary_read_share"] == 0.0 and three["replica_utilisation"] < 0.8
    spiked = lk.replicas.simulate(seed=3, spikes=[lk.LagSpike(10, 15, extra_s=5)])
    s = spiked.summary()
    assert s["own_stale"] > 150 and s["max_lag_s"] > 5
    series = spiked.series(1.0)
    during = [v for t, v in zip(series["time_s"], series["own_stale_pct"]) if 11 <= t < 19]
    before = [v for t, v in zip(series["time_s"], series["own_stale_pct"]) if t < 10]
    assert min(during) == 100 and max(before) == 0
    token = lk.replicas.simulate(seed=3, spikes=[lk.LagSpike(10, 15, extra_s=5)], read_your_writes="token")
    assert token.summary()["own_stale"] == 0


def test_show_replicas_gives_a_table_and_a_chart_that_states_the_finding():
    table, chart = lk.replicas.PANEL.show(panel_run(replicas=0))
    assert isinstance(table, lk.Table) and isinstance(chart, lk.Chart)
    assert "reads served by the primary" in repr(table)
    assert "0 replicas: primary peaked at" in repr(chart)
    assert chart._repr_png_().startswith(b"\x89PNG")
    lk.replicas.plot(panel_run(replicas=6, max_lag_s=0.1, lag_s=1.0))   # many replicas, all skipped


def test_a_custom_router_can_drive_the_simulation():
    class PrimaryOnly:
        def __init__(self, rs):
            self.rs = rs

        def write(self, key, user=None, **fields):
            return self.rs.primary.write(key, **fields)

        def read(self, key, user=None):
            return self.rs.primary.read(key)

    s = lk.replicas.simulate(router=PrimaryOnly, duration_s=5).summary()
    assert s["primary_read_share"] == 1.0 and s["own_stale"] == 0 and math.isclose(s["stale_share"], 0)


@pytest.mark.parametrize("call, words", [
    (lambda: panel_run(replicas=7), ("replicas must be", "[0, 6]", "got 7")),
    (lambda: panel_run(lag_s=-1), ("lag_s must be", "[0, 3]", "got -1")),
    (lambda: panel_run(write_ratio=0.9), ("write_ratio must be", "[0, 0.3]", "got 0.9")),
    (lambda: panel_run(read_rate_rps=0), ("read_rate_rps must be", "[50, 400]", "got 0")),
    (lambda: panel_run(max_lag_s=0), ("max_lag_s must be", "[0.1, 5]", "got 0")),
    (lambda: panel_run(read_your_writes="always"), ("read_your_writes must be one of", "'sticky'", "'always'")),
    (lambda: panel_run(replicas=2.5), ("replicas must be an int", "[0, 6]", "got 2.5")),
    (lambda: panel_run(seed=2), ("seed is not a knob", "replicas")),
    (lambda: lk.replicas.simulate(replicas=7), ("replicas must be", "[0, 6]", "got 7")),
    (lambda: lk.replicas.simulate(duration_s=0.5), ("duration_s must be", "[1, 600]", "got 0.5")),
    (lambda: lk.replicas.simulate(reread_after_s=(-1,)), ("reread_after_s must be", "[0, 30]", "got -1")),
    (lambda: lk.replicas.simulate(node_capacity_qps=0), ("node_capacity_qps must be > 0", "got 0")),
    (lambda: lk.replicas.simulate(spikes=[(1, 2, 3)]), ("spikes must hold LagSpike windows",)),
    (lambda: lk.replicas.simulate(zipf_s=-1), ("zipf_s must be", "[0, 5]", "got -1")),
    (lambda: lk.replicas.simulate(router="mine"), ("router must be a factory called with the replica set",)),
    (lambda: lk.replicas.ReplicaRouter("db"), ("replica_set must be a labkit ReplicaSet",)),
    (lambda: lk.replicas.ReplicaRouter(lk.ReplicaSet(lk.Sim(0)), when_all_lagging="random"),
     ("when_all_lagging must be one of 'primary', 'least_behind'", "'random'")),
    (lambda: lk.replicas.ReplicaRouter(lk.ReplicaSet(lk.Sim(0)), max_lag_s=-1), ("max_lag_s must be > 0", "got -1")),
    (lambda: lk.replicas.summarize({}), ("runs must be a non-empty dict",)),
    (lambda: lk.replicas.summarize({"x": panel_run}), ("runs must map labels to what lk.replicas.simulate returns",)),
    (lambda: lk.replicas.plot("run"), ("runs must be a non-empty dict", "'run'")),
    (lambda: lk.replicas.plot(lk.replicas.PANEL.runs() | {"other": panel_run(replicas=0)}),
     ("runs must hold one run for this figure", "got 2")),
])
def test_bad_arguments_name_the_parameter_and_range(call, words):
    with pytest.raises(ValueError) as err:
        call()
    for word in words:
        assert word in str(err.value)

