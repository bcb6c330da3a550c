"""Every lesson of the course, found by discovery: one package per lesson in this folder (course tooling).

A lesson package is named for its topic (`breaker`, `replicas`, ...) and says which lesson
it is (`NUMBER = "03"`, `NOTEBOOK = "03_circuit_breaker"`, `TITLE`). It speaks the verbs
every lesson speaks: `simulate(**knobs) -> Run`, `summarize(runs)`, `plot(runs)`, its Play
panel `PANEL` and `play(**start)`; its graded exercises live in its `exercises` module.
Nothing here lists the lessons: adding one is adding its package.
"""
from __future__ import annotations

import functools
import importlib
import pkgutil
from types import ModuleType

VERBS = ("simulate", "summarize", "plot", "play", "PANEL")


@functools.lru_cache(maxsize=1)
def topics() -> tuple[str, ...]:
    """The topic names of every lesson package here, e.g. ('breaker', 'caching', ...)."""
    return tuple(sorted(m.name for m in pkgutil.iter_modules(__path__) if m.ispkg))


def lesson(topic: str) -> ModuleType:
    """The lesson package for `topic` (imported on first use)."""
    if topic not in topics():
        raise ValueError(f"topic must be one of {', '.join(topics())}; got {topic!r}")
    return importlib.import_module(f"{__name__}.{topic}")


def discover() -> list[ModuleType]:
    """Every lesson package, in the course's reading order (by NUMBER)."""
    return sorted((lesson(t) for t in topics()), key=lambda m: m.NUMBER)


def by_notebook(stem: str) -> ModuleType | None:
    """The lesson whose notebook is `stem` (e.g. '03_circuit_breaker'), or None."""
    return next((m for m in discover() if m.NOTEBOOK == stem), None)


def exercises_of(module: ModuleType) -> ModuleType | None:
    """The lesson's `exercises` module (importing it registers its exercises), or None if it has none."""
    try:
        return importlib.import_module(f"{module.__name__}.exercises")
    except ModuleNotFoundError as exc:
        if exc.name != f"{module.__name__}.exercises":
            raise
        return None
