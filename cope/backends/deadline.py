"""A call's wall-clock budget for in-process decoding, checked between tokens."""

from __future__ import annotations

import time


class Deadline:
    """A call's wall-clock budget, checked between tokens."""

    def __init__(self, budget_s: float) -> None:
        self.budget_s = budget_s
        self.end = time.perf_counter() + budget_s
        self.expired = False

    @classmethod
    def after(cls, budget_s: float | None) -> "Deadline | None":
        return None if budget_s is None else cls(budget_s)

    def check(self) -> bool:
        """True once the budget is spent (and from then on)."""
        if not self.expired and time.perf_counter() >= self.end:
            self.expired = True
        return self.expired

    def reason(self) -> str:
        return f"error: timeout after {self.budget_s:g} s (backend.timeout_s)"
