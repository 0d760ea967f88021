"""Samples, backend-neutral: what is asked of a model and what comes back.

A request is "sample i of prompt P from model M with sampling parameters S". That tuple,
with the settings the model runs under (cope/identity.py), is also the identity of a sample
in the generation cache, so a sweep that asks for samples 0..3 of a prompt reuses the first
four of a run that asked for 0..7.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, fields, replace
from typing import Any

from cope import identity
from cope.fast_json import canonical

Message = tuple[str, str]  # (role, content); a tuple so that requests are hashable


def messages_to_dicts(messages: tuple[Message, ...]) -> list[dict[str, str]]:
    return [{"role": role, "content": content} for role, content in messages]


@dataclass(frozen=True)
class SamplingParams:
    """Sampling parameters, translated once per backend."""

    temperature: float
    max_tokens: int
    top_p: float = 1.0
    seed: int = 0
    stop: tuple[str, ...] = ()

    def identity(self) -> dict[str, Any]:
        """The fields that change the output. Greedy decoding ignores the seed, so greedy
        samples are shared across run seeds."""
        # not dataclasses.asdict, which deep-copies: this runs for every request
        data = {name: getattr(self, name) for name in _PARAM_FIELDS}
        data["stop"] = list(self.stop)
        if self.temperature == 0:
            data["seed"] = 0
            data["top_p"] = 1.0
        return data


_PARAM_FIELDS = tuple(f.name for f in fields(SamplingParams))


@dataclass(frozen=True)
class GenerationRequest:
    model: str  # model alias
    messages: tuple[Message, ...]
    params: SamplingParams
    sample_index: int = 0
    want_logprobs: bool = False


@dataclass(frozen=True)
class BackendRequest:
    """A request resolved to a concrete model: what a backend receives."""

    model_identity: str
    messages: tuple[Message, ...]
    params: SamplingParams
    sample_index: int
    want_logprobs: bool = False
    settings: str = ""  # digest of the settings the model runs under (cope.identity)
    # the batch it is decoded in, for a backend whose outputs depend on it: "" or
    # "<digest of the batch's requests>/<position>" (Generator names them)
    batch: str = ""

    def cache_key(self) -> str:
        """The sample's key in the generation cache: what is asked, under which settings, in
        which batch."""
        content = self.content_key()
        return identity.cache_key(f"{content}|batch:{self.batch}" if self.batch else content,
                                  self.settings)

    def former_keys(self) -> list[str]:
        """Its keys before keys carried the settings (version 1) and the batch."""
        content = self.content_key()
        return [content, identity.cache_key(content, self.settings)] if self.batch else [content]

    def content_key(self) -> str:
        """A hash of what is asked alone (the key of cache version 1)."""
        payload = {
            "model": self.model_identity,
            "messages": [list(m) for m in self.messages],
            "params": self.params.identity(),
            "sample_index": self.sample_index,
            "logprobs": self.want_logprobs,
        }
        # the same text as json.dumps(sort_keys=True), made faster (cope.fast_json)
        blob = canonical(payload, (self.params.temperature, self.params.top_p))
        return hashlib.sha256(blob.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class Completion:
    """What a backend returns for one request."""

    text: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str = "stop"
    latency_s: float = 0.0
    token_logprobs: tuple[float, ...] | None = None
    cached_tokens: int | None = None

    @property
    def failed(self) -> bool:
        """A call that produced no usable output: the sample abstains."""
        return self.finish_reason.startswith(("error", "refused"))

    @property
    def transient(self) -> bool:
        """A failure that another attempt may not repeat (a timeout, a server's error): it
        is recorded but never cached. A refusal (finish_reason "refused: ...") follows from
        the request and the settings in its key alone, so it is cached like an output, and a
        replay or a calibration pool sees it as the run did."""
        return self.finish_reason.startswith("error")

    def to_json(self) -> dict[str, Any]:
        data = {name: getattr(self, name) for name in _COMPLETION_FIELDS}  # no deep copy
        if self.token_logprobs is not None:
            data["token_logprobs"] = list(self.token_logprobs)
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "Completion":
        logprobs = data.get("token_logprobs")
        return cls(
            text=data["text"],
            prompt_tokens=int(data["prompt_tokens"]),
            completion_tokens=int(data["completion_tokens"]),
            finish_reason=data.get("finish_reason", "stop"),
            latency_s=float(data.get("latency_s", 0.0)),
            token_logprobs=tuple(logprobs) if logprobs is not None else None,
            cached_tokens=data.get("cached_tokens"),
        )


_COMPLETION_FIELDS = tuple(f.name for f in fields(Completion))


@dataclass(frozen=True)
class Generation:
    """A completion as the engine sees it: with where it came from."""

    request: GenerationRequest
    completion: Completion
    cache_hit: bool

    @property
    def text(self) -> str:
        return self.completion.text


@dataclass
class SampleTag:
    """Why a request was made; goes into samples.jsonl beside the generation."""

    problem_id: str
    stage: str
    role: str  # planner or executor
    model_role: str  # small, large, ... (the pair's role name)
    extra: dict[str, Any] = field(default_factory=dict)


def with_seed(params: SamplingParams, seed: int) -> SamplingParams:
    return replace(params, seed=seed)


def stable_seed(*parts: object) -> int:
    """A 63-bit seed from the given parts, equal across processes and Python versions."""
    digest = hashlib.sha256("\x1f".join(str(p) for p in parts).encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1
