"""The backend contract: generate a batch of resolved requests, results in order."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence

from cope.generation import BackendRequest, Completion

OnComplete = Callable[[int, Completion], None]


class Backend(ABC):
    """Serves one or more models. Subclasses translate SamplingParams once, here."""

    name: str = "backend"

    @abstractmethod
    def add_model(self, alias: str, model_cfg) -> str:
        """Make a model alias servable and return its identity (part of every cache key).
        Called before the first generation, so a missing model fails early."""

    @abstractmethod
    async def generate(
        self, requests: Sequence[BackendRequest], on_complete: OnComplete | None = None
    ) -> list[Completion]:
        """Completions in request order. `on_complete(i, completion)` is called as each one
        finishes, so a caller can store it before the rest of the batch is done."""

    async def aclose(self) -> None:
        """Release what belongs to the event loop (HTTP sessions), inside that loop."""

    def close(self) -> None:
        """Release models, sessions or servers."""
