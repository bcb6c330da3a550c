"""The exercises of every lesson, found by discovery, and `check`, the call in every check cell (lesson 00)."""
from __future__ import annotations

from labkit import validate
from labkit.checking.exercise import Exercise
from labkit.checking.verdicts import Report
from labkit.mode import grading_child

_REGISTRY: dict[str, Exercise] = {}


def register(exercise: Exercise) -> Exercise:
    """Add an exercise to the registry that `check` looks ids up in."""
    _REGISTRY[exercise.id] = exercise
    return exercise


def _load(exercise_id: str | None = None) -> None:
    """Import the exercises of the lesson this id belongs to (of every lesson for None): that registers them."""
    from labkit import lessons

    number = exercise_id.split(".")[0] if isinstance(exercise_id, str) else None
    for lesson in lessons.discover():
        if number is None or lesson.NUMBER == number:
            lessons.exercises_of(lesson)


def concept_question(exercise_id: str, title: str, choices: dict, *, hints: tuple = (),
                     answer: str = "ANSWER") -> Exercise:
    """Register a multiple-choice exercise: `answer` names a letter, judged against {letter: (right, feedback)}."""
    from labkit.checking.helpers import judge_choice

    exercise = register(Exercise(exercise_id, title, answer=answer, hints=hints))
    exercise.scenario("your answer")(lambda given, ctx: judge_choice(given, choices))
    return exercise


def get(exercise_id: str) -> Exercise:
    """The registered exercise with this id (its lesson's exercises are imported on first use)."""
    validate.instance("exercise_id", exercise_id, str, "a string such as '03.1'")
    if exercise_id not in _REGISTRY:
        _load(exercise_id)
        if exercise_id not in _REGISTRY:
            _load()   # the full list, for the error message
    try:
        return _REGISTRY[exercise_id]
    except KeyError:
        known = ", ".join(sorted(_REGISTRY))
        raise ValueError(f"exercise_id must be one of {known}; got {exercise_id!r}") from None


def all_exercises() -> list[Exercise]:
    """Every registered exercise, in id order."""
    _load()
    return [_REGISTRY[k] for k in sorted(_REGISTRY)]


def check(exercise_id: str, answer) -> Report | None:
    """Check a learner's answer in fresh seeded scenarios and return the verdict (lesson 00)."""
    if grading_child():
        return None  # the grader judges in its own process; running the checks here would only cost time
    return get(exercise_id).run(answer)
