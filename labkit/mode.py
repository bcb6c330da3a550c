"""Which mode labkit runs in: a learner's notebook, or the batch grader's sandboxed child (course tooling)."""
from __future__ import annotations

import os


def grading_child() -> bool:
    """True inside the batch grader's sandboxed child, where checks, plots and widgets are skipped."""
    return os.environ.get("LABKIT_GRADING_CHILD") == "1"
