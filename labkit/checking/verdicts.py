"""Verdicts: what a check says about an answer, per scenario and per exercise (lesson 00)."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

PASSED, FAILED, NOT_ATTEMPTED, ERROR = "passed", "failed", "not attempted", "error"


class Fail(Exception):
    """Raised by a scenario: the answer did something observably wrong; the text says what."""


@dataclass(frozen=True)
class Result:
    """The verdict of one scenario group: what the grader stores and the learner reads."""

    exercise: str
    scenario: str
    status: str
    points: float
    max_points: float
    message: str = ""
    hidden: bool = False

    @property
    def passed(self) -> bool:
        return self.status == PASSED


@dataclass
class Report:
    """Every scenario result of one exercise; prints as the verdict a learner sees."""

    exercise: str
    title: str
    results: list[Result] = field(default_factory=list)

    @property
    def score(self) -> float:
        return sum(r.points for r in self.results)

    @property
    def max_score(self) -> float:
        return sum(r.max_points for r in self.results)

    @property
    def status(self) -> str:
        statuses = {r.status for r in self.results}
        if statuses == {PASSED}:
            return PASSED
        if statuses == {NOT_ATTEMPTED}:
            return NOT_ATTEMPTED
        return ERROR if ERROR in statuses else FAILED

    def to_dict(self) -> dict:
        """Plain data for JSON: the report and each result."""
        return {"exercise": self.exercise, "title": self.title, "status": self.status,
                "score": self.score, "max_score": self.max_score,
                "results": [asdict(r) for r in self.results]}

    def text(self) -> str:
        """The verdict as plain text, one line per scenario group."""
        head = f"Exercise {self.exercise}: {self.title}"
        if self.status == NOT_ATTEMPTED:
            return f"{head}\n  - not attempted yet: {self.results[0].message}"
        # "in flight?: 0/1" reads as a typo: a title that ends a sentence is not followed by a colon.
        lines = [f"{head}{' ' if self.title[-1:] in '?!.' else ': '}{self.score:g}/{self.max_score:g} points"]
        mark = {PASSED: "✔", FAILED: "✘", ERROR: "!", NOT_ATTEMPTED: "-"}
        for r in self.results:
            lines.append(f"  {mark[r.status]} {r.scenario}" + (" (hidden)" if r.hidden else ""))
            if r.message and r.status != PASSED:
                lines.extend("      " + line for line in r.message.splitlines())
        if self.status == PASSED:
            lines.append("  All checks passed, hidden ones included." if any(r.hidden for r in self.results)
                         else "  All checks passed. Hidden checks, if any, run when your work is graded.")
        return "\n".join(lines)

    def __repr__(self) -> str:
        return self.text()

    def _repr_html_(self) -> str:
        import html
        colour = {PASSED: "#1b7837", FAILED: "#b2182b", ERROR: "#b2182b", NOT_ATTEMPTED: "#555"}[self.status]
        # The notebook's own font and width, wrapped between words (JupyterLab breaks a <pre> in
        # an output anywhere, mid-word); each line of text() is a block indented by its leading
        # spaces, so a wrapped message keeps its indent.
        lines = "".join(f'<div style="padding-left: {len(line) - len(line.lstrip())}ch">'
                        f"{html.escape(line.strip())}</div>" for line in self.text().splitlines())
        return (f'<div class="labkit-report" style="border-left: 4px solid {colour}; padding-left: 8px; '
                f'white-space: pre-wrap; word-break: normal; overflow-wrap: anywhere; line-height: 1.5">'
                f"{lines}</div>")
