"""Exercise checks (course tooling): verdicts, exercises and their scenarios, the registry, and helpers.

A lesson's `exercises.py` builds `Exercise`s, registers them and writes scenarios with the
helpers here; notebooks call `lk.check(...)`; the grader and hidden tests use `get(...)`.
"""
from labkit.checking.exercise import Exercise, LocalContext, Scenario, is_stub
from labkit.checking.helpers import (SentArgsSim, clock_hint, construct, counted, judge_choice, number,
                                    percent_short_of, refuse_reference)
from labkit.checking.registry import all_exercises, check, concept_question, get, register
from labkit.checking.verdicts import ERROR, FAILED, NOT_ATTEMPTED, PASSED, Fail, Report, Result
from labkit.mode import grading_child

__all__ = ["ERROR", "FAILED", "NOT_ATTEMPTED", "PASSED", "Exercise", "Fail", "LocalContext", "Report", "Result",
           "Scenario", "SentArgsSim", "all_exercises", "check", "clock_hint", "concept_question", "construct", "counted", "get", "grading_child", "is_stub",
           "judge_choice", "number", "percent_short_of", "refuse_reference", "register"]
