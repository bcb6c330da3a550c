"""The course's performance budgets, measured: `python -m benchmarks [widget engine course grading memory]`.

Each benchmark module has NAME, TITLE and `run(ctx) -> Outcome`. Timing lives here and
nowhere else: the tests check behaviour, these check that the behaviour is fast enough.
"""

# The order is the run order: memory reuses the course run's kernels when both are selected.
ORDER = ("widget", "engine", "course", "grading", "memory")
