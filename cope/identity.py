"""What a generation's identity is made of, and the one list of settings left out of it.

A cached sample is keyed by what was asked (model identity, messages, sampling parameters,
sample index, logprobs: `BackendRequest.content_key`) and by how the model was run: every
setting of its model config and of the config section its backend reads, except those on
`OUTPUT_NEUTRAL` below, which cannot change an output. A setting added to the config enters
the identity by default; leaving one out takes a line here with its reason, and
tests/test_identity.py walks every field to hold both to that.

Greedy decoding ignores the seed and top_p (`SamplingParams.identity`), so greedy samples
are shared across run seeds.

A backend that decodes requests together, each output depending in its last bits on the
others (llama.cpp with `backend.batch_size` > 1, transformers' padded batches), says which
(`Backend.joint_batches`), and each sample's key also names its batch: a digest of the
batch's requests and its place in it (`BackendRequest.batch`). With Qwen2.5-Coder-0.5B,
samples 0..3 of an 8-wide batch and the same four seeds decoded 4-wide differ in their
logprobs and 2 of 4 in their texts; keyed by batch, a run reproduces its samples bit for
bit with or without the cache, and a `votes=4` run does not reuse samples of a `votes=8`
batch. A batch with one sample missing from the cache is decoded whole again, as it was the
first time. Servers batch requests as they arrive, which no key can name (`concurrency`
below), and so does llama.cpp with `backend.batching=continuous`: its samples carry a model
identity of their own (`+continuous`) and reproduce through the cache alone.

Keys made before this version (KEY_VERSION 1, which knew the model identity and the
sampling parameters only) and batched samples' keys made before they named their batch never
equal a key made now: an old cache stays readable and can be archived, but its samples are
not replayed unless `cache.reuse_former_keys` says they were made under the run's settings
(`BackendRequest.former_keys`).
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from omegaconf import DictConfig, OmegaConf

KEY_VERSION = 2

# The config section each backend reads besides the model's own config.
BACKEND_SECTION = {"llamacpp": "backend", "transformers": "transformers", "openai": "http",
                   "sglang": "http", "scripted": None}

OUTPUT_NEUTRAL: dict[str, dict[str, str]] = {
    "model": {
        "identity": "already in every key, as the model identity",
        "price": "what a token costs, not what is generated",
        "description": "a note for people",
        "base_url": "where the endpoint is, not what it serves (the model identity says that)",
        "api_key_env": "which variable holds the key",
        "packaged": "names a GGUF file whose sha256 is in the model identity",
        "path": "a GGUF file whose sha256 is in the model identity",
    },
    "model.server": {
        "host": "where the server listens",
        "port": "where the server listens",
        "startup_timeout_s": "how long to wait for it",
    },
    "backend": {
        "name": "the default backend's name; a model's own `backend` is in its identity",
        "n_threads": "llama.cpp gives each output row to one thread: the sums are the same",
        "timeout_s": "a call that runs out of time is a failed sample, never cached",
        "verbose": "logging",
    },
    "transformers": {},
    "http": {
        # a server without batch-invariant kernels (vLLM on a CPU, SGLang with
        # deterministic=false) batches concurrent requests as they arrive, so its samples
        # differ in the last bits from run to run whatever the concurrency: no key makes
        # them reproduce (docs/serving.md)
        "concurrency": "requests in flight",
        "requests_per_minute": "pacing",
        "tokens_per_minute": "pacing",
        "timeout_s": "a request that times out is retried or failed, never cached",
        "max_retries": "retrying",
        "retry_base_s": "retrying",
        "retry_max_s": "retrying",
        "check_endpoints": "a probe before the first generation",
    },
}


def _plain(node: Any) -> Any:
    if isinstance(node, DictConfig):
        return OmegaConf.to_container(node, resolve=True)
    if hasattr(node, "__dataclass_fields__"):
        return {name: getattr(node, name) for name in node.__dataclass_fields__}
    return dict(node)


def _without(values: dict[str, Any], section: str) -> dict[str, Any]:
    neutral = OUTPUT_NEUTRAL[section]
    return {key: value for key, value in values.items() if key not in neutral}


def output_settings(model_cfg: Any, cfg: Any) -> dict[str, Any]:
    """Every setting that can change what `model_cfg` generates under the run config `cfg`."""
    model = _without(_plain(model_cfg), "model")
    model["server"] = _without(_plain(model["server"]), "model.server")
    settings = {"model": model}
    section = BACKEND_SECTION.get(model_cfg.backend, "backend")
    if section is not None:
        settings[section] = _without(_plain(getattr(cfg, section)), section)
    return settings


def settings_digest(model_cfg: Any, cfg: Any) -> str:
    """A short hash of `output_settings`: part of every cache key of that model."""
    text = json.dumps(output_settings(model_cfg, cfg), sort_keys=True, ensure_ascii=False,
                      separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:20]


def cache_key(content_key: str, settings: str) -> str:
    """The key of a sample: what was asked (`content_key`) under which settings."""
    return hashlib.sha256(f"v{KEY_VERSION}|{settings}|{content_key}".encode()).hexdigest()
