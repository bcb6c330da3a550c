"""Caches whose TTLs follow the virtual clock: Redis through redis-py, and an in-process LRU (lesson 02).

Redis (real or fakeredis) expires keys by the wall clock, which knows nothing of a
simulation, so `RedisCache` never relies on it: each entry is stored together with its
*virtual* expiry time, and a read past that time counts as a miss and deletes the entry. A generous real TTL (`gc_ttl_s`, wall seconds) only garbage-collects
keys that a finished run left behind on a shared server.
"""
from __future__ import annotations

import json
import math
import os
import re
import uuid
from collections import OrderedDict

from labkit import validate
from labkit.clock import Sim

_TOMBSTONE = object()  # the "value" a versioned delete writes: a miss that still carries a version


class _CacheStats:
    """Hit/miss counting and tracing, shared by both caches."""

    def __init__(self, sim: Sim, name: str):
        validate.instance("sim", sim, Sim, "a labkit Sim")
        self.sim, self.name = sim, validate.text("name", name)
        self.hits = 0
        self.misses = 0

    @property
    def hit_ratio(self) -> float:
        """hits / (hits + misses); NaN before the first get."""
        n = self.hits + self.misses
        return self.hits / n if n else math.nan

    def _hit(self, key) -> None:
        self.hits += 1
        self.sim.record(self.name, "hit", key=key)

    def _miss(self, key, expired: bool = False) -> None:
        self.misses += 1
        self.sim.record(self.name, "miss", key=key, expired=expired)

    def _ttl(self, ttl_s, default, name="ttl_s"):
        ttl_s = default if ttl_s is None else ttl_s
        return None if ttl_s is None else validate.number(name, ttl_s, lo=0, lo_open=True)

    @staticmethod
    def _check_key(key):
        # Keys are ints or strings: Redis stores str(key), so 1 and "1" are one key there, and
        # None, a float or a tuple would be silently turned into some string.
        if not (type(key) is int or (type(key) is str and key)):
            validate.key("key", key)
        return key

    @staticmethod
    def _check_value(value) -> None:
        # get() answers None for a miss, so None cannot also be a cached value.
        if value is None:
            raise ValueError("value must not be None (None means a miss); use delete() to remove a key")

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r}, hits={self.hits}, misses={self.misses})"


def _load(raw) -> dict:
    # json.loads takes str or bytes, so any client works, decode_responses or not.
    return {} if raw is None else json.loads(raw)


class RedisCache(_CacheStats):
    """A shared cache with Redis semantics and virtual-time TTLs, through a redis-py client (lesson 02).

    The client is fakeredis unless `client` is given or `LABKIT_REDIS_URL` is set (then a
    real server); behaviour is the same on both. Keys live under a namespace (random
    unless given), so runs sharing a server never collide and `flush()` removes only
    its own keys; two instances share data when they share a client and a namespace.
    Keys are strings in Redis (1 and "1" are one key); values must be JSON-serialisable
    and come back as fresh copies. An entry lives while now < set time + ttl_s.

    Fills that must not go back in time, for the stale-set race:
    - `set_if_newer(key, value, version)` stores only if no live value has a version
      >= `version` (nor a tombstone a version > it); `delete(key, version=v)` leaves a
      tombstone (a miss carrying v), so a slow fill of older data after the
      invalidation is rejected, and a fill read at v or later is not.
    - leases, as in "Scaling Memcache at Facebook": `get_or_lease` hands one filler a
      token per key at a time (others get None: wait and retry), `set_with_lease` stores
      only with a still-valid token, and any set or delete of the key invalidates it.
    Both are WATCH/MULTI transactions, so they are atomic on a real server and need no Lua.
    """

    def __init__(self, sim: Sim, name: str = "cache", *, client=None, namespace: str | None = None,
                 default_ttl_s: float | None = None, lease_ttl_s: float = 10.0, gc_ttl_s: int | None = 86_400):
        super().__init__(sim, name)
        if client is not None and not all(callable(getattr(client, m, None)) for m in ("get", "set", "transaction")):
            raise validate.ArgumentTypeError(f"client must be a redis-py client (redis.Redis or fakeredis), "
                                             f"got {client!r}")
        if client is None:
            url = os.environ.get("LABKIT_REDIS_URL")
            if url:
                import redis
                client = redis.Redis.from_url(url, decode_responses=True)
            else:
                import fakeredis  # imported here: slow to import, and only the caching lesson needs it
                client = fakeredis.FakeRedis(decode_responses=True)
        self.client = client
        if namespace is None:
            # Not from sim.rng: adding a cache must not change the numbers the rest of a run draws.
            namespace = f"labkit:{re.sub(r'[^A-Za-z0-9_.:-]', '_', name)}:{uuid.uuid4().hex[:12]}"
        if not re.fullmatch(r"[A-Za-z0-9_.:-]+", validate.text("namespace", namespace)):
            raise ValueError(f"namespace must be letters, digits and _ . : - only, got {namespace!r}")
        self.namespace = namespace
        # Braces cannot appear in a namespace, so "{a}:*" never matches "{a:b}:x"; they also
        # keep a namespace on one Redis Cluster slot.
        self._prefix = "{" + namespace + "}:"
        self.default_ttl_s = self._ttl(default_ttl_s, None, "default_ttl_s")
        self.lease_ttl_s = validate.number("lease_ttl_s", lease_ttl_s, lo=0, lo_open=True)
        self.gc_ttl_s = validate.number("gc_ttl_s", gc_ttl_s, lo=1, hi=10 * 365 * 86_400, integer=True,
                                        optional=True)

    # Each key holds one JSON object: {"v": value, "exp": virtual expiry, "ver": version,
    # "lease": token, "lease_exp": virtual time}, any of them absent. One object per key
    # makes a plain set a single atomic SET, and a fill replaces value, version and lease
    # together, which is what invalidates fills in flight.

    def _key(self, key) -> str:
        return f"{self._prefix}k:{self._check_key(key)}"

    def _fresh(self, entry: dict) -> bool:
        return "exp" not in entry or self.sim.now < entry["exp"]

    def _entry(self, value, ttl_s, version) -> dict:
        entry = {} if value is _TOMBSTONE else {"v": value}
        if ttl_s is not None:
            entry["exp"] = self.sim.now + ttl_s  # JSON keeps a float exactly (it uses repr)
        if version is not None:
            entry["ver"] = version
        return entry

    def _put(self, client, k: str, entry: dict) -> None:
        client.set(k, json.dumps(entry), ex=self.gc_ttl_s)

    def _transact(self, k: str, decide):
        """Atomically read the entry, let `decide(pipe, entry)` return (result, new entry or None), write it."""

        def attempt(pipe):
            result, new = decide(pipe, _load(pipe.get(k)))  # WATCHed: EXEC fails if k changes meanwhile
            if new is not None:
                pipe.multi()
                self._put(pipe, k, new)
            return result

        return self.client.transaction(attempt, k, value_from_callable=True)

    def get(self, key):
        """The cached value, or None on a miss (absent, deleted or past its virtual expiry)."""
        k = self._key(key)
        entry = _load(self.client.get(k))
        if "v" in entry and self._fresh(entry):
            self._hit(key)
            return entry["v"]
        expired = not self._fresh(entry)
        if expired:
            self._expire(k)
        self._miss(key, expired)
        return None

    def _expire(self, k: str) -> None:
        def attempt(pipe):
            entry = _load(pipe.get(k))
            if self._fresh(entry):
                return  # refilled (or deleted) meanwhile: nothing to expire
            lease = {f: entry[f] for f in ("lease", "lease_exp") if f in entry}
            pipe.multi()
            if lease:
                self._put(pipe, k, lease)  # a lease on the key outlives its value
            else:
                pipe.delete(k)

        self.client.transaction(attempt, k)

    def set(self, key, value, ttl_s: float | None = None) -> None:
        """Store `value` for `ttl_s` virtual seconds (default `default_ttl_s`; None: no expiry)."""
        self._check_value(value)
        ttl_s = self._ttl(ttl_s, self.default_ttl_s)
        self._put(self.client, self._key(key), self._entry(value, ttl_s, None))
        self.sim.record(self.name, "set", key=key, ttl_s=ttl_s, accepted=True)

    def set_if_newer(self, key, value, version, ttl_s: float | None = None) -> bool:
        """Store `value` tagged `version` unless a live value has version >= it (a tombstone: > it); True if stored."""
        self._check_value(value)
        validate.number("version", version)
        ttl_s = self._ttl(ttl_s, self.default_ttl_s)
        accepted = self._store_versioned(self._key(key), value, version, ttl_s)
        self.sim.record(self.name, "set", key=key, ttl_s=ttl_s, version=version, accepted=accepted)
        return accepted

    def _store_versioned(self, k, value, version, ttl_s) -> bool:
        def decide(pipe, entry):
            if "ver" in entry and self._fresh(entry):
                # A value at a version is as new as anything else at that version; a tombstone
                # only rejects what is older than the write it marks: a fill read at the
                # invalidation's own log position already contains that write.
                if entry["ver"] > version or (entry["ver"] == version and "v" in entry):
                    return False, None
            return True, self._entry(value, ttl_s, version)

        return self._transact(k, decide)

    def delete(self, key, *, version=None, ttl_s: float | None = None) -> bool | None:
        """Remove `key`; with `version`, leave a tombstone (for `ttl_s`) that rejects older fills and return True if written."""
        k = self._key(key)
        validate.number("version", version, optional=True)
        ttl_s = self._ttl(ttl_s, self.default_ttl_s)
        if version is None:
            self.client.delete(k)
            self.sim.record(self.name, "delete", key=key, version=None, accepted=True)
            return None
        accepted = self._store_versioned(k, _TOMBSTONE, version, ttl_s)
        self.sim.record(self.name, "delete", key=key, version=version, accepted=accepted)
        return accepted

    def get_or_lease(self, key):
        """(value, None) on a hit; on a miss (None, token) for the one caller who should fill, else (None, None)."""
        value = self.get(key)
        if value is not None:
            return value, None
        seq = self._prefix + "lease_seq"

        def decide(pipe, entry):
            if "lease" in entry and self.sim.now < entry["lease_exp"]:
                return None, None  # someone else is filling it: a "hot miss"
            token = pipe.incr(seq)  # a counter, so tokens are unique and runs repeatable
            if self.gc_ttl_s:
                pipe.expire(seq, self.gc_ttl_s)
            return token, {**entry, "lease": token, "lease_exp": self.sim.now + self.lease_ttl_s}

        token = self._transact(self._key(key), decide)
        self.sim.record(self.name, "lease", key=key, granted=token is not None)
        return None, token

    def set_with_lease(self, key, value, token, ttl_s: float | None = None) -> bool:
        """Store `value` only if `token` is still the key's valid lease (no set or delete since); True if stored."""
        self._check_value(value)
        ttl_s = self._ttl(ttl_s, self.default_ttl_s)

        def decide(pipe, entry):
            if token is None or entry.get("lease") != token or self.sim.now >= entry["lease_exp"]:
                return False, None
            return True, self._entry(value, ttl_s, None)

        accepted = self._transact(self._key(key), decide)
        self.sim.record(self.name, "set", key=key, ttl_s=ttl_s, accepted=accepted)
        return accepted

    def flush(self) -> None:
        """Delete every key of this cache's namespace (and nothing else on the server)."""
        batch = []
        for k in self.client.scan_iter(match=self._prefix + "*", count=500):
            batch.append(k)
            if len(batch) == 500:
                self.client.delete(*batch)
                batch = []
        if batch:
            self.client.delete(*batch)


class LRUCache(_CacheStats):
    """An in-process cache (an L1) holding at most `max_items`, evicting the least recently used (lesson 02).

    Entries expire `ttl_s` virtual seconds after they were set (None: never); an expired
    entry is dropped when next read and until then still takes a slot, as in most
    real caches. Values are stored as they are, not copied.
    """

    MAX_ITEMS = 10_000_000  # an in-process cache bigger than this is not a lesson's L1

    def __init__(self, sim: Sim, max_items: int = 1000, ttl_s: float | None = None, *, name: str = "l1"):
        super().__init__(sim, name)
        self.max_items = validate.number("max_items", max_items, lo=1, hi=self.MAX_ITEMS, integer=True)
        self.ttl_s = self._ttl(ttl_s, None)  # the default for set()
        self._items: OrderedDict = OrderedDict()  # key -> (value, expires_at); oldest use first

    def get(self, key):
        """The cached value (now the most recently used), or None on a miss."""
        item = self._items.get(self._check_key(key))
        if item is None:
            self._miss(key)
            return None
        if self.sim.now >= item[1]:
            del self._items[key]
            self._miss(key, expired=True)
            return None
        self._items.move_to_end(key)
        self._hit(key)
        return item[0]

    def set(self, key, value, ttl_s: float | None = None) -> None:
        """Store `value` for `ttl_s` virtual seconds (default: the cache's ttl_s), evicting the LRU entry if full."""
        self._check_key(key)
        self._check_value(value)
        ttl_s = self._ttl(ttl_s, self.ttl_s)
        self._items[key] = (value, math.inf if ttl_s is None else self.sim.now + ttl_s)
        self._items.move_to_end(key)
        self.sim.record(self.name, "set", key=key, ttl_s=ttl_s, accepted=True)
        if len(self._items) > self.max_items:
            old, _ = self._items.popitem(last=False)
            self.sim.record(self.name, "evict", key=old)

    def delete(self, key) -> None:
        """Remove `key` (a no-op if it is not there)."""
        self._items.pop(self._check_key(key), None)
        self.sim.record(self.name, "delete", key=key, version=None, accepted=True)

    def flush(self) -> None:
        """Empty the cache."""
        self._items.clear()

    def keys(self) -> list:
        """The keys held, least recently used first (expired ones included until read)."""
        return list(self._items)

    def __len__(self) -> int:
        return len(self._items)
