"""The backend contract: generate a batch of resolved requests, results in order."""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections.abc import Callable, Hashable, Sequence
from concurrent.futures import Executor

from cope.samples import BackendRequest, Completion

OnComplete = Callable[[int, Completion], None]


def failed_completion(reason: str) -> Completion:
    """A request that could not produce output (retries exhausted, a context too long): the
    run records it as a failed sample, which abstains, and goes on."""
    return Completion(text="", prompt_tokens=0, completion_tokens=0, finish_reason=f"error: {reason}")


class Backend(ABC):
    """Serves one or more models. Subclasses translate SamplingParams once, here."""

    name: str = "backend"

    @abstractmethod
    def add_model(self, alias: str, model_cfg) -> str:
        """Make a model alias servable and return its identity (part of every cache key).
        Called before the first generation, so a missing model fails early."""

    def replay_identity(self, alias: str, model_cfg) -> str | None:
        """The identity `add_model` gives, found without loading the model or calling
        anything (a replay from the cache, cache.mode=readonly, then needs no weights); None
        when it cannot be found so, and the model is set up as for a run."""
        return None

    @abstractmethod
    async def generate(
        self, requests: Sequence[BackendRequest], on_complete: OnComplete | None = None
    ) -> list[Completion]:
        """Completions in request order. `on_complete(i, completion)` is called as each one
        finishes, so a caller can store it before the rest of the batch is done."""

    def joint_batches(self, requests: Sequence[BackendRequest]) -> list[list[int]]:
        """Positions of the requests that `generate(requests)` decodes together, where each
        output depends in its last bits on the others (llama.cpp's and transformers'
        batches); their cache keys name their batch. [] when every request is decoded on
        its own terms."""
        return []

    def server_facts(self, identity: str) -> dict | None:
        """What the server of a model said about itself (engine, version, determinism), for
        the run's records; None for a backend without a server of its own."""
        return None

    async def aclose(self) -> None:
        """Release what belongs to the event loop (HTTP sessions), inside that loop."""

    def close(self) -> None:
        """Release models, sessions or servers."""


async def generate_in_chunks(
    requests: Sequence[BackendRequest], group_key: Callable[[BackendRequest], Hashable],
    chunk_size: int, complete_chunk: Callable[[list[BackendRequest]], list[Completion]],
    on_complete: OnComplete | None = None, executor: Executor | None = None,
) -> list[Completion]:
    """For in-process backends: group requests that can share a batch, cut groups into chunks
    of `chunk_size`, complete each chunk in a worker thread (`executor`'s, else the loop's
    default pool), and report completions as each chunk finishes. Results come back in
    request order."""
    loop = asyncio.get_running_loop()
    results: list[Completion | None] = [None] * len(requests)
    for chunk in chunk_positions(requests, group_key, chunk_size):
        completions = await loop.run_in_executor(executor, complete_chunk,
                                                 [requests[i] for i in chunk])
        for i, completion in zip(chunk, completions):
            results[i] = completion
            if on_complete is not None:
                on_complete(i, completion)
    return results  # type: ignore[return-value]


def chunk_positions(requests: Sequence[BackendRequest],
                    group_key: Callable[[BackendRequest], Hashable], chunk_size: int
                    ) -> list[list[int]]:
    """The chunks generate_in_chunks decodes, as positions: groups in order of first
    appearance, each cut into chunks of `chunk_size`. A sub-list made of whole chunks is cut
    into the same chunks again."""
    groups: dict[Hashable, list[int]] = {}
    for i, request in enumerate(requests):
        groups.setdefault(group_key(request), []).append(i)
    return [positions[k:k + chunk_size] for positions in groups.values()
            for k in range(0, len(positions), chunk_size)]
