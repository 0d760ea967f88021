"""An in-process backend that answers from a script: for tests of the engine's logic.

It is not a model. A responder maps each request to text; the default one answers every
prompt with a fixed, deterministic text derived from the request's identity.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections.abc import Callable, Sequence

from cope.backends.base import Backend, OnComplete
from cope.samples import BackendRequest, Completion

Responder = Callable[[BackendRequest], str]
# per-token logprobs of a scripted text, for requests that want them (perplexity stages)
LogprobScript = Callable[[BackendRequest, str], Sequence[float]]


def hashed_answer_responder(request: BackendRequest) -> str:
    """Deterministic pseudo-answers: one of three boxed numbers, picked by the request hash."""
    digest = int(hashlib.sha256(request.content_key().encode()).hexdigest(), 16)
    return f"Working it out. Therefore, the final answer is: $\\boxed{{{digest % 3}}}$."


class ScriptedBackend(Backend):
    name = "scripted"

    def __init__(self, responder: Responder = hashed_answer_responder, delay_s: float | None = None,
                 logprobs: LogprobScript | None = None) -> None:
        self.responder = responder
        self.logprobs = logprobs
        self.requests: list[BackendRequest] = []
        # a per-request delay lets tests stop a run midway (COPE_SCRIPTED_DELAY seconds)
        self.delay_s = float(os.environ.get("COPE_SCRIPTED_DELAY", 0)) if delay_s is None else delay_s

    def add_model(self, alias: str, model_cfg) -> str:
        return f"scripted:{getattr(model_cfg, 'identity', alias)}"

    async def generate(
        self, requests: Sequence[BackendRequest], on_complete: OnComplete | None = None
    ) -> list[Completion]:
        out = []
        for i, request in enumerate(requests):
            self.requests.append(request)
            if self.delay_s:
                await asyncio.sleep(self.delay_s)
            text = self.responder(request)
            prompt_tokens = sum(len(content.split()) for _, content in request.messages)
            scored = (tuple(self.logprobs(request, text))
                      if request.want_logprobs and self.logprobs is not None else None)
            completion = Completion(
                text=text, prompt_tokens=prompt_tokens,
                completion_tokens=len(scored) if scored is not None else len(text.split()),
                token_logprobs=scored,
            )
            if on_complete is not None:
                on_complete(i, completion)
            out.append(completion)
        return out
