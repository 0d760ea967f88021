"""When in-process decoding must stop, checked between tokens: a call's wall-clock budget,
or the backend closing (a run that ends on Ctrl-C or SIGTERM must not wait for a long
generation nobody will record)."""

from __future__ import annotations

import math
import threading
import time


class Deadline:
    """A call's wall-clock budget (None: unlimited) and the backend's stop signal."""

    def __init__(self, budget_s: float | None, stop: threading.Event | None = None) -> None:
        self.budget_s = budget_s
        self.end = math.inf if budget_s is None else time.perf_counter() + budget_s
        self.stop = stop
        self.expired = False
        self.stopped = False

    @classmethod
    def after(cls, budget_s: float | None, stop: threading.Event | None = None
              ) -> "Deadline | None":
        return None if budget_s is None and stop is None else cls(budget_s, stop)

    def check(self) -> bool:
        """True once the budget is spent or the backend stops (and from then on)."""
        if not self.expired:
            if self.stop is not None and self.stop.is_set():
                self.expired = self.stopped = True
            elif time.perf_counter() >= self.end:
                self.expired = True
        return self.expired

    def reason(self) -> str:
        if self.stopped:
            return "error: stopped, the backend was closed during decoding"
        return f"error: timeout after {self.budget_s:g} s (backend.timeout_s)"
