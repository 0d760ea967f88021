"""The one path from the engine to a model: alias -> cache -> backend, recording every sample.

Every completion goes to the sample records the moment it exists, and to the cache's queue,
which a writer thread commits in batches (see GenerationCache.put_soon; the runner awaits
the commit before it writes a problem's record):
an interrupted run loses no finished generation and a rerun pays for none twice. The cache
is looked up once per call, for all its requests, in one query with the other calls made in
the same turn of the event loop.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from cope.backends.base import Backend
from cope.budget import Budget
from cope.cache import GenerationCache
from cope.errors import BackendUnavailable
from cope.samples import (
    BackendRequest,
    Completion,
    Generation,
    GenerationRequest,
    SampleTag,
)

OnSample = Callable[[SampleTag, Generation], None]
# what a survey (cache.mode=survey) answers for a generation the cache lacks
NOT_IN_CACHE = Completion(text="", prompt_tokens=0, completion_tokens=0,
                          finish_reason="error: not in the cache (survey)")


@dataclass(frozen=True)
class ModelBinding:
    alias: str
    identity: str
    backend: Backend
    settings: str = ""  # cope.identity.settings_digest of the model's config


class Generator:
    def __init__(self, bindings: dict[str, ModelBinding], cache: GenerationCache,
                 on_sample: OnSample | None = None, budget: Budget | None = None,
                 max_consecutive_failures: int | None = None) -> None:
        self.bindings = bindings
        self.cache = cache
        self.on_sample = on_sample
        self.budget = budget
        self.backend_calls = 0
        self.cache_hits = 0
        self.failed_calls = 0
        # cache.mode=survey: generations the cache lacks, per model alias; each is answered
        # as a failed sample (it abstains) and no backend is called
        self.missing: Counter[str] = Counter()
        self.max_consecutive_failures = max_consecutive_failures
        self._failures_in_a_row: dict[str, int] = {}  # per model alias
        self._last_failure: dict[str, str] = {}

    def resolve(self, request: GenerationRequest) -> BackendRequest:
        binding = self.bindings[request.model]
        return BackendRequest(
            model_identity=binding.identity,
            messages=request.messages,
            params=request.params,
            sample_index=request.sample_index,
            want_logprobs=request.want_logprobs,
            settings=binding.settings,
        )

    async def generate(self, requests: Sequence[GenerationRequest], tags: Sequence[SampleTag]
                       ) -> list[Generation]:
        """Generations in request order; cached ones come back without a backend call."""
        resolved = [self.resolve(r) for r in requests]
        batches = self._name_batches(requests, resolved)
        keys = [r.cache_key() for r in resolved]  # hashed once, for the lookup and the insert
        results: list[Generation | None] = [None] * len(requests)
        misses: dict[int, list[int]] = {}  # id(backend) -> positions
        backends: dict[int, Backend] = {}
        found = await self.cache.lookup(resolved, keys)
        for batch in batches:  # a batch with a miss is decoded whole, as it was the first time
            if any(found[i] is None for i in batch):
                for i in batch:
                    found[i] = None
            elif self.cache.reuse_former_keys:  # found whole, maybe under former keys
                for i in batch:
                    self.cache.put_soon(keys[i], resolved[i], found[i])
        for i, cached in enumerate(found):
            request = requests[i]
            if cached is not None:
                self.cache_hits += 1
                results[i] = self._finish(request, cached, True, tags[i])
            elif self.cache.mode == "survey":
                self.missing[request.model] += 1
                results[i] = self._finish(request, NOT_IN_CACHE, False, tags[i])
            else:
                backend = self.bindings[request.model].backend
                backends[id(backend)] = backend
                misses.setdefault(id(backend), []).append(i)

        # reserve the worst case of every call before any is sent: a batch that could take the
        # run over budget is not started
        reservations = {}
        try:
            if self.budget is not None:
                for positions in misses.values():
                    for i in positions:
                        reservations[i] = self.budget.reserve(requests[i], tags[i])
        except BaseException:
            for reservation in reservations.values():
                self.budget.release(reservation)
            raise

        async def run(backend: Backend, positions: list[int]) -> None:
            def on_complete(k: int, completion: Completion) -> None:
                i = positions[k]
                self.backend_calls += 1
                if i in reservations:
                    self.budget.settle(reservations.pop(i), requests[i], completion)
                alias = requests[i].model
                if completion.failed:
                    self.failed_calls += 1
                if completion.transient:
                    self._failures_in_a_row[alias] = self._failures_in_a_row.get(alias, 0) + 1
                    self._last_failure[alias] = completion.finish_reason
                else:  # an output or a refusal: the endpoint answered
                    self._failures_in_a_row[alias] = 0
                    self.cache.put_soon(keys[i], resolved[i], completion)
                results[i] = self._finish(requests[i], completion, False, tags[i])

            try:
                await backend.generate([resolved[i] for i in positions], on_complete=on_complete)
            finally:
                for i in positions:
                    if i in reservations:
                        self.budget.release(reservations.pop(i))

        try:
            if len(misses) == 1:  # the common case: no task to spawn
                (key, positions), = misses.items()
                await run(backends[key], positions)
            elif misses:
                await asyncio.gather(*(run(backends[key], positions)
                                       for key, positions in misses.items()))
        except BaseException:
            self.cache.flush()  # what did finish is stored before the error goes up
            raise
        limit = self.max_consecutive_failures
        for alias, count in self._failures_in_a_row.items():
            if limit is not None and count >= limit:
                raise BackendUnavailable(f"{count} requests in a row to model '{alias}' failed; "
                                         f"last: {self._last_failure[alias]}")
        missing = [i for i, result in enumerate(results) if result is None]
        if missing:
            raise RuntimeError(f"backend returned without completing requests {missing}")
        return results  # type: ignore[return-value]

    def _name_batches(self, requests: Sequence[GenerationRequest],
                      resolved: list[BackendRequest]) -> list[list[int]]:
        """Give every request its batch, for backends whose outputs depend on the requests
        decoded beside them (in place), and return those batches as positions."""
        by_backend: dict[int, list[int]] = {}
        backends: dict[int, Backend] = {}
        for i, request in enumerate(requests):
            backend = self.bindings[request.model].backend
            backends[id(backend)] = backend
            by_backend.setdefault(id(backend), []).append(i)
        batches = []
        for key, positions in by_backend.items():
            for local in backends[key].joint_batches([resolved[i] for i in positions]):
                batch = [positions[k] for k in local]
                digest = hashlib.sha256("\n".join(resolved[i].content_key() for i in batch)
                                        .encode()).hexdigest()[:20]
                for k, i in enumerate(batch):
                    resolved[i] = dataclasses.replace(resolved[i], batch=f"{digest}/{k}")
                batches.append(batch)
        return batches

    def _finish(self, request: GenerationRequest, completion: Completion, cache_hit: bool,
                tag: SampleTag) -> Generation:
        generation = Generation(request=request, completion=completion, cache_hit=cache_hit)
        if self.on_sample is not None:
            self.on_sample(tag, generation)
        return generation


class RetaggingGenerator:
    """A generator as one part of a longer problem uses it (a chat turn, an episode step):
    every sample is filed under the whole problem's id, so records and resume work per
    problem, and carries the part's own fields (e.g. turn=2 or step=5)."""

    def __init__(self, generator: Generator, problem_id: str, **extra: object) -> None:
        self.generator = generator
        self.problem_id = problem_id
        self.extra = extra

    async def generate(self, requests: Sequence[GenerationRequest], tags: Sequence[SampleTag]
                       ) -> list[Generation]:
        tags = [SampleTag(self.problem_id, t.stage, t.role, t.model_role,
                          {**t.extra, **self.extra}) for t in tags]
        return await self.generator.generate(requests, tags)
