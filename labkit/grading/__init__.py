"""Classroom tooling: `labkit check` and `labkit grade`, a grader that cheating and crashing notebooks cannot fool.

How a notebook is graded:

1. The grader reads it defensively (`notebook`): not UTF-8, not JSON, not a notebook, too
   big, a FIFO: each is a status, never a crash. Its lesson comes from its `lk.check("NN.`
   calls, its answer names, and its filename.
2. A fresh child process (`sandbox`) runs its code cells in order in an IPython shell,
   with `LABKIT_GRADING_CHILD=1` so `lk.check`, `lk.play` and `lk.hints` do nothing. The
   child is confined before any learner code runs: resource limits, its own unprivileged
   uid when the grader is root, a private network namespace, and Landlock. A cell that
   raises is recorded and the next one runs; a cell that hangs is interrupted; a cell that
   ends the process is skipped on a fresh run.
3. The grader asks the child for each exercise's answer (`protocol`, JSON over pipes).
   Plain data comes back as data. Classes and functions stay in the child, and the
   grader runs the exercise's scenarios in its own process against proxies (`runner`).
   The scenarios, the expected answers and the hidden tests never enter the child.
   Whatever the child says about its answers, the grader judges only the behaviour it
   observes through them.
4. Every request has a deadline. When one passes, the child and everything it started
   are killed, and the checks it cut short fail with a message naming the exercise.

`gradebook` runs many notebooks at once and writes the CSV, the JSON and a summary.
`expose` lists which attributes of the grader's own objects learner code may use.
"""
from labkit.checking.expose import expose
from labkit.grading.gradebook import grade_batch, hidden_tests
from labkit.grading.runner import Graded, grade_notebook
from labkit.grading.sandbox import Limits

__all__ = ["Graded", "Limits", "expose", "grade_batch", "grade_notebook", "hidden_tests"]
