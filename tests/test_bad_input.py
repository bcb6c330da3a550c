"""Bad input gets a clear error at the boundary, on every public callable of labkit.

Hypothesis draws examples with the deterministic "labkit" profile of tests/conftest.py.

Every callable a notebook reaches as `lk.X` (functions, classes, and the public methods
of those classes), plus the names any labkit module lists in `__all__` (how a lesson
package joins), is found by walking the package, not listed by hand. Each parameter
is tried with the bad values of its kind, the others kept valid:

- wrong kind (a string, None, a list or a bool for a number; a float for a count; a
  number for a string; ...): must raise TypeError naming the parameter;
- right kind, bad value (NaN, +-inf, an empty string, a negative number): must raise
  ValueError (and not TypeError) naming the parameter;
- zero and huge (1e12, 10**12): either ValueError naming the parameter, or the call
  finishes within a time and memory bound (stated maxima keep a run bounded).

After a call that scheduled events on the Sim it was given, that Sim runs for `RUN_S`
virtual seconds as part of the call: a value accepted only to break the run later
(`drive_traffic(rate_rps=inf)`) is caught where it went in. A call that runs longer than
`ALARM_S` of CPU is interrupted by a signal alarm and reported as a hang, naming the call;
one that needs more than `MEMORY_HEADROOM` of new address space gets MemoryError and is
reported as unbounded. Any other exception (AttributeError, ZeroDivisionError,
a message that does not name the parameter) is an unclear error.

Every module is held to this: there is no list of known failures.
"""
from __future__ import annotations

import functools
import importlib
import inspect
import math
import os
import pkgutil
import resource
import signal
import sys
import types

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

import labkit as lk

# What labkit imports lazily, imported now: an alarm that interrupts a call in the middle of its
# first import of matplotlib would leave half a matplotlib in sys.modules for every later test.
LAZY_IMPORTS = ("matplotlib.figure", "matplotlib.backends.backend_agg", "matplotlib.collections",
                "matplotlib.colors", "matplotlib.patches", "matplotlib.ticker", "PIL.Image", "IPython.display",
                "ipywidgets", "sqlite_utils", "fakeredis")
for _name in LAZY_IMPORTS:
    importlib.import_module(_name)

ALARM_S = float(os.environ.get("LABKIT_FUZZ_ALARM_S", "1"))
MEMORY_HEADROOM = 2 << 30  # bytes of address space a call may add
RUN_S = 10.0  # after a call that scheduled events, the shared Sim runs this many virtual seconds

# Not fuzzed, each with the reason.
SKIP = {
    "Event": "a trace record labkit builds (a NamedTuple), not an input boundary",
    "Op": "a workload record make_workload builds (a NamedTuple)",
    "LogEntry": "a change-log record the primary builds (a NamedTuple)",
    "Response": "what Service.call returns (a NamedTuple)",
    "Result": "built by lk.check", "Report": "built by lk.check",
    "Fail": "an exception class", "ReplicaDown": "an exception class", "DatabaseDown": "an exception class",
    "Chart": "wraps a matplotlib figure a plot function made",
    "Play": "a widget over run/show functions the notebook writes; the playgrounds it runs are fuzzed",
    "play": "as Play",
    "Run": "the base of every lesson's run, never built bare; its methods are fuzzed on each lesson's run",
}
# Classes whose constructor is not fuzzed (a simulation builds them) but whose methods are: see INSTANCES.

# Parameters whose every value is legitimate (a learner's answer, a row's field values, a user id).
ANY = {"answer", "user", "value", "token", "fields", "where", "args", "knobs", "params", "sql"}
# Numbers for which a negative value is meaningful.
NEGATIVE_OK = {"seed", "version", "priority", "time_s@rate_at", "time_s@active", "key"}


# --- valid arguments -----------------------------------------------------------------------------

class Ctx:
    """The objects one call's valid arguments share: one Sim, and what is built on it."""

    def __init__(self):
        self.sim = lk.Sim(0)

    @functools.cached_property
    def service(self):
        return lk.Service(self.sim)

    @functools.cached_property
    def primary(self):
        return lk.Database(self.sim, "primary")


@functools.lru_cache(maxsize=None)
def calls_run():
    return lk.simulate_calls(duration_s=5, outage_start_s=1, outage_s=2)


@functools.lru_cache(maxsize=None)
def replicas_run():
    return lk.replicas.simulate(duration_s=2, read_rate_rps=50)


@functools.lru_cache(maxsize=None)
def caching_run():
    return lk.caching.simulate(duration_s=4, rate_rps=20)


@functools.lru_cache(maxsize=None)
def hot_key_run():
    return lk.caching.simulate_hot_key(duration_s=3, rate_rps=20)


@functools.lru_cache(maxsize=None)
def bulkhead_run():
    return lk.bulkhead.simulate(duration_s=4.0, incident=(1.0, 3.0))


def race_run():
    return lk.caching.stale_set_race()


def _noop(*args, **kwargs):
    return None


# A valid value for each parameter without a default, by name (`name@callable` wins).
# A new required parameter needs an entry here: the test says which.
VALID = {
    "sim": lambda c: c.sim, "clock": lambda c: c.sim, "service": lambda c: c.service,
    "rng": lambda c: c.sim.rng, "rate": lambda c: lk.Steady(10.0), "primary": lambda c: c.primary,
    "replica_set": lambda c: lk.ReplicaSet(c.sim, replicas=1), "cache": lambda c: lk.LRUCache(c.sim),
    "db": lambda c: lk.caching.SlowDatabase(c.sim), "start_s": lambda c: 0.0, "end_s": lambda c: 10.0,
    "duration_s": lambda c: 1.0, "rate_rps": lambda c: 10.0, "until_s": lambda c: 5.0,
    "ops": lambda c: [], "handler": lambda c: _noop, "callback": lambda c: _noop, "reply": lambda c: _noop,
    "predicate": lambda c: _noop, "time_s": lambda c: 1.0, "delay_s": lambda c: 1.0,
    "component": lambda c: "c", "event": lambda c: "e", "field": lambda c: "x",
    "mean_rps": lambda c: 10.0, "on_rps": lambda c: 10.0, "mean_s": lambda c: 0.1, "low_s": lambda c: 0.0,
    "high_s": lambda c: 0.1, "extra_s": lambda c: 0.1, "workers": lambda c: 2, "now": lambda c: 0.0,
    "service_s": lambda c: 0.1, "key": lambda c: 1, "value": lambda c: "v", "version": lambda c: 1,
    "token": lambda c: 1, "position": lambda c: 0, "sql": lambda c: "SELECT 1", "events": lambda c: [],
    "values": lambda c: [1.0], "latencies_s": lambda c: [0.1], "q": lambda c: 50.0,
    "name@Replica": lambda c: "replica1", "node": lambda c: "primary", "exercise_id": lambda c: "03.1",
    "answer": lambda c: None, "fields": lambda c: {}, "top": lambda c: 1, "rows@Table": lambda c: {"a": 1},
    "rows@write_many": lambda c: [(1, {"x": 1})],
    "runs@lk.queueing.summarize": lambda c: calls_run(), "runs@lk.queueing.plot": lambda c: calls_run(),
    "runs@lk.breaker.summarize": lambda c: {"a": calls_run()}, "runs@lk.breaker.plot": lambda c: {"a": calls_run()},
    "runs@lk.replicas.summarize": lambda c: {"a": replicas_run()}, "runs@lk.replicas.plot": lambda c: replicas_run(),
    "runs@lk.caching.summarize": lambda c: {"a": caching_run()}, "runs@lk.caching.plot": lambda c: caching_run(),
    "runs@lk.caching.summarize_hot_key": lambda c: {"a": hot_key_run()},
    "runs@lk.caching.plot_hot_key": lambda c: hot_key_run(), "bin_s": lambda c: 1.0,
    "runs@lk.bulkhead.summarize": lambda c: {"a": bulkhead_run()}, "runs@lk.bulkhead.plot": lambda c: bulkhead_run(),
    "kind@BulkheadRun": lambda c: "checkout", "tasks": lambda c: [(0.0, 1.0)], "core": lambda c: 1, "max_threads": lambda c: 2, "queue_capacity": lambda c: 1,
}

# Smaller runs for the simulations, passed unless that parameter is the one being tried:
# an accepted value then costs a short run, not the lesson's full one.
SMALL = {
    "small@simulate_calls": {"duration_s": 10.0, "outage_start_s": 2.0, "outage_s": 3.0},
    "small@lk.breaker.simulate": {"duration_s": 10.0, "outage_start_s": 2.0, "outage_s": 3.0},
    "small@lk.replicas.simulate": {"duration_s": 2.0, "read_rate_rps": 50.0},
    "small@lk.caching.simulate": {"duration_s": 4.0, "rate_rps": 20.0},
    "small@lk.caching.simulate_hot_key": {"duration_s": 3.0, "rate_rps": 20.0},
}

# Instances whose methods are fuzzed, for classes that are not built from VALID arguments.
INSTANCES = {
    "CallsRun": lambda c: calls_run(), "ReplicasRun": lambda c: replicas_run(),
    "CachingRun": lambda c: caching_run(), "BulkheadRun": lambda c: bulkhead_run(), "HotKeyRun": lambda c: hot_key_run(), "RaceRun": lambda c: race_run(),
    "Replica": lambda c: lk.Replica(c.sim, "replica1", c.primary),
}

# The kind of a parameter when its default or example does not tell (None defaults, objects).
KIND = {
    "sim": "object", "clock": "clock", "service": "object", "rng": "object", "rate": "object",
    "primary": "object", "replica_set": "object", "cache": "object", "db": "object", "run": "object",
    "runs": "object", "breaker": "callable", "app": "callable", "router": "callable", "handler": "callable",
    "callback": "callable", "reply": "callable", "predicate": "callable", "reduce": "callable",
    "client": "object", "client@drive_traffic": "str", "pool": "object", "on_done": "callable", "tasks": "list", "caller_threads": "object", "faults": "list", "spikes": "list", "outages": "list", "ops": "list", "events": "list",
    "rows": "object", "labels": "list", "values": "numbers", "latencies_s": "numbers", "reads": "numbers",
    "probes": "numbers", "other_writes": "numbers", "reread_after_s": "numbers", "lag": "number_or_object",
    "lag_s": "number_or_object", "rate@make_workload": "number_or_object",
    "key": "key", "version": "number", "columns": "list", "title": "text", "path": "str", "namespace": "str",
    "window": "list", "q": "number", "replica": "str", "table": "str", "name": "str", "node": "str", "exercise_id": "str",
}
NONE_OK = {"pool", "caller_threads", "title", "path", "namespace", "replica", "table", "labels", "columns", "client", "breaker", "app",
           "router", "clock@ReplicaRouter", "faults@simulate_calls", "version", "key@execute", "key@query",
           "table@execute", "table@query", "component@select", "event@select", "component@count",
           "event@count", "component@values", "event@values", "max_lag_s", "read_your_writes",
           "failure_rate_threshold", "timeout_s", "until", "ttl_s", "default_ttl_s", "gc_ttl_s",
           "read_after_write_s", "bin_s@series"}


# --- what to try -------------------------------------------------------------------------------

NAN, INF = math.nan, math.inf


class Thing:
    """An object of no kind labkit takes, with a repr that is the same on every run."""

    def __repr__(self):
        return "Thing()"


THING = Thing()
TYPE, VALUE, NEGATIVE, ZERO, HUGE = "wrong kind", "bad value", "negative", "zero", "huge"


def bad_values(kind: str, none_ok: bool):
    """(category, value) pairs to try on a parameter of `kind`."""
    none = [] if none_ok else [(TYPE, None)]
    if kind in ("number", "int"):
        out = [(TYPE, "1"), (TYPE, True), (TYPE, []), *none, (NEGATIVE, -1), (ZERO, 0)]
        if kind == "int":
            return out + [(TYPE, 1.5), (TYPE, NAN), (TYPE, INF), (HUGE, 10**12)]
        return out + [(VALUE, NAN), (VALUE, INF), (VALUE, -INF), (NEGATIVE, -0.5), (HUGE, 1e12)]
    if kind == "str":
        return [(TYPE, 1), (TYPE, []), *none, (VALUE, "")]
    if kind == "text":  # a string that may be empty (a title)
        return [(TYPE, 1), (TYPE, []), *none]
    if kind == "bool":
        return [(TYPE, "no"), *none]
    if kind in ("object", "clock"):
        return [(TYPE, "x"), (TYPE, 1), *none]
    if kind == "callable":
        return [(TYPE, "x"), (TYPE, 1), *none]
    if kind == "list":
        return [(TYPE, "x"), (TYPE, 1), *none, (TYPE, [THING])]
    if kind == "numbers":
        return [(TYPE, "x"), *none, (TYPE, ["a"]), (VALUE, [NAN]), (VALUE, [INF])]
    if kind == "number_or_object":
        return [(TYPE, "x"), *none, (VALUE, NAN), (NEGATIVE, -1), (HUGE, 1e12)]
    if kind == "key":
        return [*none, (TYPE, []), (TYPE, 1.5), (TYPE, True)]
    raise AssertionError(kind)


class Case:
    """One public callable: how to call it with valid arguments and one parameter replaced."""

    def __init__(self, public: str, owner: str, fn, params, make_self=None, ctor_of: str | None = None):
        self.public, self.owner, self.fn, self.params, self.make_self = public, owner, fn, params, make_self
        self.short = public.rsplit(".", 1)[-1]
        self.ctor_of = ctor_of

    def __repr__(self):
        return self.public

    def lookup(self, table, name, default=None):
        for k in (f"{name}@{self.public}", f"{name}@{self.short}", f"{name}@{self.ctor_of}", name):
            if k in table:
                return table[k]
        return default

    def kind(self, p: inspect.Parameter) -> str | None:
        name = p.name
        if name in ANY or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            return None
        kind = self.lookup(KIND, name)
        if kind:
            return kind
        example = p.default if p.default is not p.empty else None
        if isinstance(example, bool):
            return "bool"
        if isinstance(example, int):
            return "int"
        if isinstance(example, float):
            return "number"
        if isinstance(example, str):
            return "str"
        if isinstance(example, (tuple, list)):
            return "list"
        annotation = str(p.annotation)
        if "int" in annotation and "float" not in annotation:
            return "int"
        if "float" in annotation:
            return "number"
        if "str" in annotation:
            return "str"
        return "unknown"

    def none_ok(self, p) -> bool:
        return bool(self.lookup({k: True for k in NONE_OK}, p.name, False)) or (
            p.default is None and self.lookup(KIND, p.name) not in ("object", "numbers"))

    def valid(self, ctx, p):
        if p.default is not p.empty:
            return p.default
        make = self.lookup(VALID, p.name)
        assert make is not None, f"add a valid example for parameter {p.name!r} of {self.public} to VALID"
        return make(ctx)

    def call(self, name, value):
        """(target, args, kwargs, the call as text): `name=value` and valid arguments for the rest."""
        ctx = Ctx()
        args, kwargs, shown = self.arguments(ctx, name, value)
        fn = self.fn if self.make_self is None else getattr(self.make_self(ctx), self.fn.__name__)

        def target(*args, **kwargs):
            fn(*args, **kwargs)
            # What was accepted must also run: a bad rate that only hangs once the sim runs is a hang.
            if ctx.sim.pending:
                ctx.sim.run(until=ctx.sim.now + RUN_S)

        return target, args, kwargs, f"{self.public}({', '.join(shown)})"

    def arguments(self, ctx, name, value):
        args, kwargs, shown = [], {}, []
        for p in self.params:
            if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
                continue
            if p.name == name:
                v = value
                text = f"{name}={value!r}"
            elif p.name in self.lookup(SMALL, "small", {}) and self.make_self is None:
                v = self.lookup(SMALL, "small")[p.name]
                text = f"{p.name}={v!r}"
            elif p.default is not p.empty:
                continue
            else:
                v = self.valid(ctx, p)
                text = f"{p.name}=<{type(v).__name__}>" if not isinstance(v, (int, float, str)) else f"{p.name}={v!r}"
            if p.kind == p.POSITIONAL_ONLY:
                args.append(v)
            else:
                kwargs[p.name] = v
            shown.append(text)
        return args, kwargs, shown


def _own_module(obj) -> str:
    return getattr(obj, "__module__", "") or ""


# Packages whose __all__ is not a lesson's surface.
NOT_LESSONS = {"labkit.grading": "the classroom grader's API, driven by its command line (labkit grade)",
               "labkit.checking": "the API lesson authors write exercises with; notebooks reach it as lk.check"}


def _lesson_modules() -> list[types.ModuleType]:
    """Every labkit module that lists its public names in __all__ (how a lesson package joins).

    All of them are imported first, so what is found does not depend on what other tests imported."""
    for info in pkgutil.walk_packages(lk.__path__, "labkit."):
        if not any(info.name == n or info.name.startswith(n + ".") for n in NOT_LESSONS):
            importlib.import_module(info.name)
    return [m for name, m in sorted(sys.modules.items())
            if name.startswith("labkit.") and hasattr(m, "__all__")
            and not any(name == n or name.startswith(n + ".") for n in NOT_LESSONS)]


def discover() -> list[Case]:
    """Every public callable: lk.X, the public methods of lk's classes, and names in labkit modules' __all__."""
    roots = [(n, getattr(lk, n)) for n in (getattr(lk, "__all__", None) or dir(lk)) if not n.startswith("_")]
    roots = [(f"lk.{n}", obj) for n, obj in roots]
    for module in _lesson_modules():
        parts = module.__name__.split(".")
        # A lesson's names as a notebook spells them (lk.breaker.plot); other modules' by their path.
        prefix = f"lk.{parts[2]}." if parts[1] == "lessons" and len(parts) > 2 else f"{module.__name__}."
        roots += [(prefix + n, getattr(module, n)) for n in module.__all__]
    cases, seen = [], set()
    for public, obj in roots:
        name = public.rsplit(".", 1)[-1]
        if isinstance(obj, types.ModuleType) or not callable(obj) or name in SKIP or id(obj) in seen:
            continue
        if not _own_module(obj).startswith("labkit"):
            continue
        seen.add(id(obj))
        if inspect.isclass(obj):
            if name not in INSTANCES or name == "Replica":
                params = list(inspect.signature(obj).parameters.values())
                cases.append(Case(public, _own_module(obj), obj, params, ctor_of=name))
            for mname, fn in inspect.getmembers(obj, inspect.isfunction):
                if mname.startswith("_") or not _own_module(fn).startswith("labkit"):
                    continue
                params = list(inspect.signature(fn).parameters.values())[1:]
                if not params:
                    continue
                make = INSTANCES.get(name) or functools.partial(_instance, obj, name)
                cases.append(Case(f"{public}.{mname}", _own_module(fn), fn, params, make, ctor_of=name))
        else:
            params = list(inspect.signature(obj).parameters.values())
            if params:
                cases.append(Case(public, _own_module(obj), obj, params))
    return cases


def _instance(cls, name, ctx):
    case = Case(f"lk.{name}", "", cls, list(inspect.signature(cls).parameters.values()), ctor_of=name)
    args, kwargs, _ = case.arguments(ctx, None, None)
    return cls(*args, **kwargs)


CASES = discover()


# --- running one call, bounded ----------------------------------------------------------------

class Hung(BaseException):
    """Raised by the alarm inside a call that ran too long (a BaseException: nothing catches it)."""


def _alarm(signum, frame):
    raise Hung()


def _vm_bytes() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmSize:"):
                return int(line.split()[1]) * 1024
    return 0


def bounded(target, args, kwargs, alarm_s: float = ALARM_S):
    """Run the call under the alarms and a memory limit; returns the exception it raised, or None.

    The alarm counts the process's CPU time (ITIMER_PROF), so a busy machine does not make a
    slow call look hung; a wall-clock alarm at ten times that is the backstop.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    limit = _vm_bytes() + MEMORY_HEADROOM
    if hard != resource.RLIM_INFINITY:
        limit = min(limit, hard)
    previous = {sig: signal.signal(sig, _alarm) for sig in (signal.SIGPROF, signal.SIGALRM)}
    resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
    signal.setitimer(signal.ITIMER_PROF, alarm_s)
    signal.setitimer(signal.ITIMER_REAL, 10 * alarm_s)
    try:
        target(*args, **kwargs)
        return None
    except (Exception, Hung) as exc:  # noqa: BLE001 - every outcome is judged below
        return exc
    finally:
        signal.setitimer(signal.ITIMER_PROF, 0)
        signal.setitimer(signal.ITIMER_REAL, 0)
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def judge(case: Case, p: inspect.Parameter, category: str, value) -> str | None:
    """None if the call handled `value` well, else what went wrong (with the exact call)."""
    target, args, kwargs, shown = case.call(p.name, value)
    exc = bounded(target, args, kwargs)
    others = [q.name for q in case.params if q.name != p.name]
    if isinstance(exc, Hung):
        return f"{shown}: hung (still running after {ALARM_S:g} s of CPU)"
    if isinstance(exc, MemoryError):
        return f"{shown}: allocates without bound (MemoryError)"
    if exc is None:
        if category in (TYPE, VALUE) or (category == NEGATIVE and case.lookup({k: 1 for k in NEGATIVE_OK},
                                                                               p.name) is None):
            return f"{shown}: silently accepted"
        return None
    message = str(exc)
    named = p.name in message or (any(o in message for o in others) and validate_fmt(value) in message)
    if not isinstance(exc, (TypeError, ValueError)) or not named:
        return f"{shown}: unclear error {type(exc).__name__}: {message[:120]}"
    if category == TYPE and not isinstance(exc, TypeError):
        return f"{shown}: ValueError for a wrong kind of value (want TypeError): {message[:120]}"
    if category != TYPE and isinstance(exc, TypeError):
        return f"{shown}: TypeError for a bad value of the right kind (want ValueError): {message[:120]}"
    return None


def validate_fmt(value) -> str:
    """How validate prints a number in a message (3600, not 3600.0), else the repr."""
    from labkit.validate import _fmt
    return _fmt(value) if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) \
        else repr(value)


def trials(case: Case):
    for p in case.params:
        kind = case.kind(p)
        if kind is None:
            continue
        assert kind != "unknown", (f"{case.public}: say what kind of value parameter {p.name!r} takes "
                                   "(KIND in tests/test_bad_input.py)")
        for category, value in bad_values(kind, case.none_ok(p)):
            yield p, category, value


def warm(case: Case) -> None:
    """Call once with valid arguments only, so that first-use costs (an import, a cache) are not timed.

    Its outcome is not judged: some valid calls fail by design (a write sent to a replica). Its
    alarm is generous, so that nothing is interrupted halfway through a first use."""
    target, args, kwargs, _ = case.call(None, None)
    bounded(target, args, kwargs, alarm_s=30 * ALARM_S)


@pytest.mark.parametrize("case", CASES, ids=[c.public for c in CASES])
def test_every_bad_argument_gets_a_clear_error(case):
    warm(case)
    failures = [f for p, category, value in trials(case) if (f := judge(case, p, category, value))]
    assert not failures, "\n".join(failures)


def test_discovery_finds_the_public_surface():
    found = {c.public for c in CASES}
    for name in ("lk.Service", "lk.Service.call", "lk.Sim.run", "lk.drive_traffic", "lk.make_workload",
                 "lk.arrivals", "lk.simulate_calls", "lk.LRUCache.set", "lk.CallsRun.series"):
        assert name in found


# --- the property: any bad value of a kind, not just the canonical one ----------------------------

NUMBER_TRIALS = [(c, p, k) for c in CASES for p in c.params if (k := c.kind(p)) in ("number", "int")]


def _bad_numbers(kind, none_ok):
    finite = st.floats(allow_nan=False, allow_infinity=False)
    cats = [st.tuples(st.just(TYPE), st.one_of(st.text(max_size=3), st.booleans(), st.lists(st.integers(), max_size=2),
                                                *([] if none_ok else [st.none()])))]
    if kind == "int":
        cats.append(st.tuples(st.just(TYPE), st.floats().filter(lambda x: not float(x).is_integer())))
        cats.append(st.tuples(st.just(NEGATIVE), st.integers(max_value=-1)))
        cats.append(st.tuples(st.just(HUGE), st.integers(min_value=10**9, max_value=10**30)))
    else:
        cats.append(st.tuples(st.just(VALUE), st.sampled_from([NAN, INF, -INF])))
        cats.append(st.tuples(st.just(NEGATIVE), finite.filter(lambda x: x < 0)))
        cats.append(st.tuples(st.just(HUGE), st.floats(min_value=1e9, max_value=1e300)))
    return st.one_of(cats)


@settings(max_examples=60, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_any_bad_number_gets_the_clear_error_its_kind_gets(data):
    # Not only -1 and 1e12: any negative, any huge value, any string must be refused clearly.
    case, p, kind = data.draw(st.sampled_from(NUMBER_TRIALS), label="parameter")
    category, value = data.draw(_bad_numbers(kind, case.none_ok(p)), label="value")
    problem = judge(case, p, category, value)
    assert problem is None, problem
