"""labkit.cache conformance: the same behaviour on fakeredis, a real Redis server and (where it applies) the LRU (lesson 02).

The real-server backend uses $LABKIT_REDIS_URL if set, else starts `redis-server` on a
free loopback port for the session; with neither, its cases are skipped with a reason
(`pytest -rs` prints it). Nothing here sleeps: time is the simulation's.
"""
import os
import select
import shutil
import socket
import subprocess
import tempfile
import threading
from collections import OrderedDict

import fakeredis
import pytest
import redis
from hypothesis import HealthCheck, given, settings, strategies as st

from labkit.cache import LRUCache, RedisCache
from labkit.clock import Sim
from labkit.db import Database

SKIP_REASON = "real Redis not available: install redis-server or set LABKIT_REDIS_URL"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_until_ready(proc, timeout_s=10.0) -> None:
    # Read the server's log until it says it is ready; select() bounds the wait without sleeping.
    fd, out = proc.stdout.fileno(), b""
    while b"Ready to accept connections" not in out:
        ready, _, _ = select.select([fd], [], [], timeout_s)
        chunk = os.read(fd, 4096) if ready else b""
        if not chunk:
            raise RuntimeError(f"redis-server did not start:\n{out.decode(errors='replace')}")
        out += chunk


@pytest.fixture(scope="session")
def redis_url():
    """A real Redis server's URL for the whole session, or a skip saying how to get one."""
    url = os.environ.get("LABKIT_REDIS_URL")
    if url:
        try:
            redis.Redis.from_url(url).ping()
        except redis.RedisError as e:
            pytest.fail(f"LABKIT_REDIS_URL={url} is set but the server does not answer PING: {e}")
        yield url
        return
    exe = shutil.which("redis-server")
    if exe is None:
        if os.environ.get("CI") == "true":
            pytest.fail("CI must test against a real Redis: .ci/run installs redis-server; it is missing")
        pytest.skip(SKIP_REASON)
    with tempfile.TemporaryDirectory() as tmp:
        port = _free_port()
        proc = subprocess.Popen([exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                                 "--appendonly", "no", "--dir", tmp],
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        try:
            _wait_until_ready(proc)
            # Keep draining the log so the server never blocks on a full pipe.
            threading.Thread(target=proc.stdout.read, daemon=True).start()
            assert redis.Redis(port=port).ping()
            yield f"redis://127.0.0.1:{port}/0"
        finally:
            proc.terminate()
            proc.wait(timeout=10)


class _Factory:
    """Builds caches of one backend and flushes what they stored afterwards."""

    def __init__(self, backend, url=None):
        self.backend, self.url, self.made = backend, url, []

    def client(self):
        if self.backend == "redis-server":
            return redis.Redis.from_url(self.url, decode_responses=True)
        return fakeredis.FakeRedis(decode_responses=True)

    def __call__(self, sim, name="cache", ttl_s=None, **kwargs):
        if self.backend == "lru":
            cache = LRUCache(sim, max_items=10_000, ttl_s=ttl_s, name=name)
        else:
            kwargs.setdefault("client", self.client())
            cache = RedisCache(sim, name, default_ttl_s=ttl_s, **kwargs)
        self.made.append(cache)
        return cache

    def cleanup(self):
        for cache in self.made:
            cache.flush()


def _factory(request, backend):
    url = request.getfixturevalue("redis_url") if backend == "redis-server" else None
    factory = _Factory(backend, url)
    request.addfinalizer(factory.cleanup)
    return factory


@pytest.fixture(params=["lru", "fakeredis", "redis-server"])
def make_cache(request):
    """Any cache: the behaviour every level shares."""
    return _factory(request, request.param)


@pytest.fixture(params=["fakeredis", "redis-server"])
def make_redis(request):
    """A RedisCache on each Redis backend."""
    return _factory(request, request.param)


# -- what every cache does -------------------------------------------------------

def test_get_set_hit_miss_counts_and_trace(make_cache):
    sim = Sim(0)
    c = make_cache(sim, "l2")
    assert c.get("a") is None
    c.set("a", {"name": "ann", "n": 1})
    assert c.get("a") == {"name": "ann", "n": 1}
    assert c.get("a") == {"name": "ann", "n": 1}
    assert (c.hits, c.misses, c.hit_ratio) == (2, 1, 2 / 3)
    assert [(e.component, e.event, e.key) for e in sim.trace] == [
        ("l2", "miss", "a"), ("l2", "set", "a"), ("l2", "hit", "a"), ("l2", "hit", "a")]


def test_hit_ratio_is_nan_before_any_get(make_cache):
    ratio = make_cache(Sim(0)).hit_ratio
    assert ratio != ratio


def test_ttl_follows_the_virtual_clock(make_cache):
    sim = Sim(0)
    c = make_cache(sim)
    c.set("k", "v", ttl_s=10)
    sim.advance(9.999)
    assert c.get("k") == "v"
    sim.advance(0.001)      # exactly at set time + ttl_s the entry is gone
    assert c.get("k") is None
    assert c.get("k") is None
    assert sim.trace.values("expired", event="miss") == [True, False]  # expiry deleted it


def test_default_ttl_and_per_call_override(make_cache):
    sim = Sim(0)
    c = make_cache(sim, ttl_s=5)
    c.set("short", 1)
    c.set("long", 2, ttl_s=50)
    sim.advance(5)
    assert c.get("short") is None and c.get("long") == 2


def test_no_ttl_means_no_expiry(make_cache):
    sim = Sim(0)
    c = make_cache(sim)
    c.set("k", [1, 2])
    sim.advance(1e9)
    assert c.get("k") == [1, 2]


def test_set_again_restarts_the_ttl(make_cache):
    sim = Sim(0)
    c = make_cache(sim, ttl_s=10)
    c.set("k", "old")
    sim.advance(8)
    c.set("k", "new")
    sim.advance(8)
    assert c.get("k") == "new"


def test_delete(make_cache):
    sim = Sim(0)
    c = make_cache(sim)
    c.set("k", 1)
    c.delete("k")
    c.delete("never-there")
    assert c.get("k") is None
    assert sim.trace.count(event="delete") == 2


def test_flush_empties_the_cache(make_cache):
    sim = Sim(0)
    c = make_cache(sim)
    for i in range(1200):  # more than one SCAN batch
        c.set(f"k{i}", i)
    c.flush()
    assert all(c.get(f"k{i}") is None for i in range(0, 1200, 97))


@pytest.mark.parametrize("call, message", [
    (lambda c: c.set("k", None), "value must not be None"),
    (lambda c: c.set("k", 1, ttl_s=0), "ttl_s must be > 0, got 0"),
    (lambda c: c.set("k", 1, ttl_s=-3), "ttl_s must be > 0, got -3"),
])
def test_bad_arguments(make_cache, call, message):
    with pytest.raises(ValueError, match=message):
        call(make_cache(Sim(0)))


def test_same_seed_same_trace(make_cache):
    def run():
        sim = Sim(11)
        c = make_cache(sim, ttl_s=2)
        for i in range(200):
            key = sim.rng.randrange(20)
            sim.advance(sim.rng.expovariate(10))
            if c.get(key) is None:
                c.set(key, i)
        return sim.trace.to_rows(), c.hits, c.misses

    assert run() == run()


# -- what only the Redis-backed cache does ----------------------------------------------

def test_expiry_does_not_rely_on_redis_ttl(make_redis):
    sim = Sim(0)
    c = make_redis(sim, gc_ttl_s=3600)
    c.set("k", "v", ttl_s=0.001)
    key = next(iter(c.client.scan_iter(match=c._prefix + "*")))
    assert 3000 < c.client.ttl(key) <= 3600  # the real TTL is garbage collection only
    assert c.get("k") == "v"                 # no virtual time has passed, however long the wall clock took
    sim.advance(0.001)
    assert c.get("k") is None


def test_namespaces_isolate_caches_on_one_server(make_redis):
    sim = Sim(0)
    a = make_redis(sim, "a")
    b = make_redis(sim, "b", client=a.client)
    a.client.set("someone-else", "keep")
    a.set("k", "from a")
    assert b.get("k") is None
    b.set("k", "from b")
    a.flush()
    assert a.get("k") is None and b.get("k") == "from b"
    assert a.client.get("someone-else") == "keep"
    a.client.delete("someone-else")


def test_a_namespace_that_prefixes_another_is_still_isolated(make_redis):
    sim = Sim(0)
    a = make_redis(sim, namespace="labkit-test:ns")
    ab = make_redis(sim, namespace="labkit-test:ns:b", client=a.client)
    ab.set("k", 1)
    a.flush()
    assert ab.get("k") == 1


def test_caches_sharing_a_namespace_share_data_but_count_separately(make_redis):
    sim = Sim(0)
    app1 = make_redis(sim, "app1", namespace="labkit-test:shared")
    app2 = make_redis(sim, "app2", namespace="labkit-test:shared", client=app1.client)
    app1.set("k", 1)
    assert app2.get("k") == 1
    assert (app1.hits, app2.hits) == (0, 1)


def test_constructor_arguments_are_validated(make_redis):
    with pytest.raises(ValueError, match="namespace must be letters, digits"):
        make_redis(Sim(0), namespace="a*b")
    with pytest.raises(ValueError, match="default_ttl_s must be > 0, got -1"):
        make_redis(Sim(0), ttl_s=-1)
    with pytest.raises(ValueError, match="lease_ttl_s must be > 0, got 0"):
        make_redis(Sim(0), lease_ttl_s=0)


def test_values_come_back_as_json_copies(make_redis):
    c = make_redis(Sim(0))
    value = {"tags": ["a", "b"], "n": 1.5, "ok": True}
    c.set("k", value)
    got = c.get("k")
    assert got == value and got is not value
    assert c.get("k") is not got


def test_set_if_newer_keeps_the_newest_version(make_redis):
    sim = Sim(0)
    c = make_redis(sim)
    assert c.set_if_newer("u", "v5", version=5)
    assert not c.set_if_newer("u", "v3", version=3)
    assert not c.set_if_newer("u", "v5 again", version=5)  # strictly newer only
    assert c.get("u") == "v5"
    assert c.set_if_newer("u", "v6", version=6) and c.get("u") == "v6"
    assert sim.trace.values("accepted", event="set") == [True, False, False, True]


def test_expired_entries_do_not_block_a_versioned_fill(make_redis):
    sim = Sim(0)
    c = make_redis(sim)
    c.set_if_newer("u", "v9", version=9, ttl_s=1)
    sim.advance(1)
    assert c.set_if_newer("u", "v2", version=2)
    assert c.get("u") == "v2"


def test_versioned_delete_leaves_a_tombstone(make_redis):
    sim = Sim(0)
    c = make_redis(sim)
    c.set_if_newer("u", "v1", version=1)
    assert c.delete("u", version=2)
    assert c.get("u") is None                           # a tombstone is a miss...
    assert not c.set_if_newer("u", "v1", version=1)     # ...that rejects older fills
    assert not c.delete("u", version=1)
    assert c.set_if_newer("u", "v3", version=3) and c.get("u") == "v3"


def test_tombstones_expire(make_redis):
    sim = Sim(0)
    c = make_redis(sim)
    c.delete("u", version=5, ttl_s=30)
    sim.advance(30)
    assert c.set_if_newer("u", "old", version=1)


def _stale_set_race(cache, db, fill):
    """Reader R misses and reads the DB; writer W updates the DB and invalidates; then R fills."""
    db.write(1, name="v1")
    fill_state = fill("start", cache, db)     # R: miss, read the DB (v1)
    db.write(1, name="v2")                    # W: update the DB...
    fill("invalidate", cache, db)             # ...and invalidate the cache
    fill("finish", cache, db, fill_state)     # R: fill with what it read
    cached = cache.get(1)
    return None if cached is None else cached["name"]


def naive(step, cache, db, state=None):
    if step == "start":
        assert cache.get(1) is None
        return db.read(1)
    if step == "invalidate":
        cache.delete(1)
    else:
        cache.set(1, state)


def versioned(step, cache, db, state=None):
    if step == "start":
        assert cache.get(1) is None
        return db.read(1), db.position       # the version is the log position read at
    if step == "invalidate":
        cache.delete(1, version=db.position)
    else:
        cache.set_if_newer(1, state[0], version=state[1])


def leased(step, cache, db, state=None):
    if step == "start":
        value, token = cache.get_or_lease(1)
        assert value is None and token is not None
        return db.read(1), token
    if step == "invalidate":
        cache.delete(1)                      # a delete invalidates outstanding leases
    else:
        cache.set_with_lease(1, state[0], state[1])


@pytest.mark.parametrize("fill, expected", [(naive, "v1"), (versioned, None), (leased, None)])
def test_stale_set_race(make_redis, fill, expected):
    sim = Sim(0)
    assert _stale_set_race(make_redis(sim), Database(sim), fill) == expected


def test_one_lease_per_key_at_a_time(make_redis):
    sim = Sim(0)
    c = make_redis(sim, lease_ttl_s=10)
    v, t1 = c.get_or_lease("hot")
    assert v is None and t1 is not None
    assert c.get_or_lease("hot") == (None, None)       # a hot miss: wait and retry
    _, other = c.get_or_lease("other-key")
    assert other is not None and other != t1
    assert not c.set_with_lease("hot", "x", t1 + 1000)  # a forged token
    assert not c.set_with_lease("hot", "x", None)       # the hot-miss answer is not a token
    assert not c.set_with_lease("no-lease-here", "x", None)
    assert c.set_with_lease("hot", "filled", t1, ttl_s=60)
    assert c.get_or_lease("hot") == ("filled", None)
    assert not c.set_with_lease("hot", "again", t1)     # a token is good for one fill
    assert sim.trace.values("granted", event="lease") == [True, False, True]


def test_a_lease_expires_so_a_dead_filler_does_not_block_the_key(make_redis):
    sim = Sim(0)
    c = make_redis(sim, lease_ttl_s=10)
    _, t1 = c.get_or_lease("k")
    sim.advance(9.9)
    assert c.get_or_lease("k") == (None, None)
    sim.advance(0.1)
    _, t2 = c.get_or_lease("k")
    assert t2 is not None and t2 != t1
    assert not c.set_with_lease("k", "late", t1)
    assert c.set_with_lease("k", "fresh", t2)


def test_a_lease_survives_the_expiry_of_the_value(make_redis):
    sim = Sim(0)
    c = make_redis(sim, lease_ttl_s=10)
    c.set("k", "v", ttl_s=1)
    sim.advance(1)
    _, token = c.get_or_lease("k")
    assert c.get("k") is None                           # a get that sees nothing to expire...
    assert c.set_with_lease("k", "v2", token)           # ...leaves the lease alone
    assert c.get("k") == "v2"


def test_works_with_a_bytes_client():
    sim = Sim(0)
    c = RedisCache(sim, client=fakeredis.FakeRedis())  # decode_responses=False
    c.set("k", {"a": 1}, ttl_s=5)
    assert c.get("k") == {"a": 1}
    assert c.set_if_newer("v", 1, version=2) and not c.set_if_newer("v", 0, version=1)
    _, token = c.get_or_lease("l")
    assert c.set_with_lease("l", "x", token)
    sim.advance(5)
    assert c.get("k") is None
    c.flush()


def test_labkit_redis_url_selects_the_real_server(request, monkeypatch):
    url = request.getfixturevalue("redis_url")
    monkeypatch.setenv("LABKIT_REDIS_URL", url)
    c = RedisCache(Sim(0))
    try:
        assert isinstance(c.client, redis.Redis) and not isinstance(c.client, fakeredis.FakeRedis)
        c.set("k", 1)
        assert redis.Redis.from_url(url).exists(next(iter(c.client.scan_iter(match=c._prefix + "*"))))
    finally:
        c.flush()


def test_fakeredis_is_the_default(monkeypatch):
    monkeypatch.delenv("LABKIT_REDIS_URL", raising=False)
    assert isinstance(RedisCache(Sim(0)).client, fakeredis.FakeRedis)


# -- the LRU -----------------------------------------------------------------------

def test_lru_evicts_the_least_recently_used():
    sim = Sim(0)
    c = LRUCache(sim, max_items=3)
    for k in "abc":
        c.set(k, k.upper())
    c.get("a")           # a is now the most recently used
    c.set("d", "D")      # evicts b
    c.set("c", "C2")     # an update refreshes c
    c.set("e", "E")      # evicts a
    assert c.keys() == ["d", "c", "e"] and len(c) == 3
    assert sim.trace.values("key", "l1", "evict") == ["b", "a"]
    assert c.get("b") is None


def test_lru_expired_entries_hold_a_slot_until_read():
    sim = Sim(0)
    c = LRUCache(sim, max_items=2, ttl_s=1)
    c.set("a", 1)
    sim.advance(2)
    assert len(c) == 1
    assert c.get("a") is None and len(c) == 0


def test_lru_validates():
    with pytest.raises(ValueError, match=r"max_items must be in \[1, 10000000\], got 0"):
        LRUCache(Sim(0), max_items=0)
    with pytest.raises(ValueError, match="sim must be a labkit Sim"):
        LRUCache(object())


cache_ops = st.lists(st.one_of(
    st.tuples(st.just("set"), st.integers(0, 8), st.none() | st.floats(0.1, 5)),
    st.tuples(st.just("get"), st.integers(0, 8)),
    st.tuples(st.just("delete"), st.integers(0, 8)),
    st.tuples(st.just("advance"), st.floats(0, 3)),
), max_size=60)


@settings(max_examples=150, deadline=None)
@given(ops=cache_ops, max_items=st.integers(1, 6))
def test_lru_matches_a_simple_model(ops, max_items):
    sim = Sim(0)
    c = LRUCache(sim, max_items=max_items)
    model = OrderedDict()  # key -> (value, expires_at), least recent first
    hits = misses = 0
    for i, op in enumerate(ops):
        if op[0] == "set":
            model.pop(op[1], None)
            model[op[1]] = (i, sim.now + op[2] if op[2] else float("inf"))
            if len(model) > max_items:
                model.popitem(last=False)
            c.set(op[1], i, ttl_s=op[2])
        elif op[0] == "get":
            item = model.get(op[1])
            if item and sim.now < item[1]:
                model.move_to_end(op[1])
                hits += 1
                assert c.get(op[1]) == item[0]
            else:
                model.pop(op[1], None)
                misses += 1
                assert c.get(op[1]) is None
        elif op[0] == "delete":
            model.pop(op[1], None)
            c.delete(op[1])
        else:
            sim.advance(op[1])
        assert len(c) <= max_items
        assert c.keys() == list(model)
    assert (c.hits, c.misses) == (hits, misses)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=cache_ops)
def test_redis_cache_agrees_with_an_unbounded_lru(make_redis, ops):
    sim = Sim(0)
    redis_cache, lru = make_redis(sim), LRUCache(sim, max_items=1000)
    for i, op in enumerate(ops):
        if op[0] == "set":
            redis_cache.set(op[1], i, ttl_s=op[2])
            lru.set(op[1], i, ttl_s=op[2])
        elif op[0] == "get":
            assert redis_cache.get(op[1]) == lru.get(op[1])
        elif op[0] == "delete":
            redis_cache.delete(op[1])
            lru.delete(op[1])
        else:
            sim.advance(op[1])
    assert (redis_cache.hits, redis_cache.misses) == (lru.hits, lru.misses)
    redis_cache.flush()
