"""The start-here check against the solution, the untouched lesson and plausible wrong answers."""
import math

import pytest

import labkit as lk
from support import cell_defining, run_cells

LESSON = "00_start_here"


def test_solution_passes():
    report = lk.check("00.1", run_cells(cell_defining("solutions", LESSON, "in_flight"))["in_flight"])
    assert report.status == "passed", report.text()


def test_untouched_lesson_is_not_attempted():
    report = lk.check("00.1", run_cells(cell_defining("lessons", LESSON, "in_flight"))["in_flight"])
    assert report.status == "not attempted", report.text()


@pytest.mark.parametrize("answer, expected", [
    (lambda rate, latency: rate / latency, "It looks like you divided"),
    (lambda rate, latency: rate * latency * 1000, "latency_s is in seconds, not milliseconds"),
    (lambda rate, latency: rate + latency, "How many arrive per second"),
    (lambda rate, latency: f"{rate * latency}", "it should return a number"),
    (lambda rate, latency: math.ceil(rate * latency), "An average need not be a whole number"),
    (lambda rate, latency: int(rate * latency), "An average need not be a whole number"),
    (lambda rate, latency: round(rate * latency), "An average need not be a whole number"),
    (lambda rate, latency: round(rate * latency, 1), "without rounding it (up, down or to a tenth)"),
    (lambda rate, latency: max(1, rate * latency), "An average can be below one"),
])
def test_wrong_answers_fail_with_their_message(answer, expected):
    report = lk.check("00.1", answer)
    assert report.status == "failed"
    assert expected in report.results[0].message, report.text()


@pytest.mark.parametrize("answer", [
    lambda rate, latency: round(rate * latency, 3),   # to a thousandth: within 1 % at every point
    lambda rate, latency: latency / (1 / rate),       # requests per second times seconds, written another way
])
def test_other_correct_answers_pass(answer):
    """The check asks for the average: any way of computing it is right."""
    report = lk.check("00.1", answer)
    assert report.status == "passed", report.text()
