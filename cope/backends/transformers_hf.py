"""Hugging Face transformers in process, on torch: for GPU machines without a model server,
and for scoring with per-token logprobs.

A model loads from a Hugging Face id or directory (`hf_model`), or from a GGUF file (a
packaged model or `path`), which transformers dequantizes. The requests of one call are
generated as left-padded batches of `transformers.batch_size`, grouped by sampling
parameters. transformers draws one random stream per batch, not per row, so a batch is
seeded from its requests' seeds: samples reproduce with the same batch.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass

from cope.backends.base import Backend, OnComplete, chunk_positions, generate_in_chunks
from cope.errors import ConfigError
from cope.models.packaged import resolve_model_file
from cope.samples import BackendRequest, Completion, messages_to_dicts, stable_seed


def _imports():
    try:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer
    except ImportError:
        raise ConfigError("backend=transformers needs torch and transformers (and gguf, "
                          "accelerate for GGUF files): pip install -e '.[transformers]'") from None
    return torch, AutoModelForCausalLM, AutoTokenizer


@dataclass
class LoadedModel:
    model: object
    tokenizer: object


class TransformersBackend(Backend):
    name = "transformers"

    def __init__(self, cfg) -> None:
        self.cfg = cfg
        self._models: dict[str, LoadedModel] = {}
        self._lock = threading.Lock()

    def add_model(self, alias: str, model_cfg) -> str:
        torch, AutoModelForCausalLM, AutoTokenizer = _imports()
        hf_model = getattr(model_cfg, "hf_model", None)
        if hf_model:
            source, kwargs = hf_model, {}
            identity = f"{model_cfg.identity}@transformers"
        else:
            path, sha256 = resolve_model_file(alias, model_cfg)
            source, kwargs = str(path.parent), {"gguf_file": path.name}
            identity = f"{model_cfg.identity}@gguf-sha256:{sha256}@transformers"
        if identity not in self._models:
            dtype = getattr(torch, self.cfg.dtype)
            tokenizer = AutoTokenizer.from_pretrained(source, **kwargs)
            tokenizer.padding_side = "left"  # generation continues on the right
            if tokenizer.pad_token is None:
                tokenizer.pad_token = tokenizer.eos_token
            model = AutoModelForCausalLM.from_pretrained(source, dtype=dtype, **kwargs)
            model.to(self._device(torch)).eval()
            self._models[identity] = LoadedModel(model, tokenizer)
        return identity

    def _device(self, torch) -> str:
        if self.cfg.device != "auto":
            return self.cfg.device
        return "cuda" if torch.cuda.is_available() else "cpu"

    def _batch(self, requests: list[BackendRequest]) -> list[Completion]:
        torch, _, _ = _imports()
        loaded = self._models[requests[0].model_identity]
        tokenizer, model = loaded.tokenizer, loaded.model
        params = requests[0].params
        prompts = [tokenizer.apply_chat_template(messages_to_dicts(r.messages), tokenize=False,
                                                 add_generation_prompt=True) for r in requests]
        encoded = tokenizer(prompts, return_tensors="pt", padding=True,
                            add_special_tokens=False).to(model.device)
        with self._lock, torch.no_grad():
            start = time.perf_counter()
            torch.manual_seed(stable_seed("batch", *(r.params.seed for r in requests)) % 2**63)
            sampling = {"do_sample": True, "temperature": params.temperature,
                        "top_p": params.top_p, "top_k": 0} if params.temperature > 0 else {
                        "do_sample": False}
            out = model.generate(**encoded, max_new_tokens=params.max_tokens,
                                 pad_token_id=tokenizer.pad_token_id, return_dict_in_generate=True,
                                 output_scores=any(r.want_logprobs for r in requests), **sampling)
            latency = time.perf_counter() - start
        new_tokens = out.sequences[:, encoded["input_ids"].shape[1]:]
        logprobs = None
        if out.scores is not None:
            logprobs = model.compute_transition_scores(out.sequences, out.scores,
                                                       normalize_logits=True)
        completions = []
        eos_ids = set(_as_list(model.generation_config.eos_token_id)) | {tokenizer.eos_token_id}
        for row, request in enumerate(requests):
            tokens = new_tokens[row].tolist()
            length = next((k for k, t in enumerate(tokens) if t in eos_ids), len(tokens))
            finish = "stop" if length < len(tokens) else "length"
            completions.append(Completion(
                text=tokenizer.decode(tokens[:length], skip_special_tokens=True),
                prompt_tokens=int(encoded["attention_mask"][row].sum()),
                completion_tokens=length,
                finish_reason=finish,
                latency_s=latency,
                token_logprobs=(tuple(float(x) for x in logprobs[row][:length])
                                if logprobs is not None and request.want_logprobs else None),
            ))
        return completions

    def joint_batches(self, requests: Sequence[BackendRequest]) -> list[list[int]]:
        if self.cfg.batch_size <= 1:
            return []
        return chunk_positions(requests, _batch_key, self.cfg.batch_size)

    async def generate(
        self, requests: Sequence[BackendRequest], on_complete: OnComplete | None = None
    ) -> list[Completion]:
        return await generate_in_chunks(requests, _batch_key, self.cfg.batch_size, self._batch,
                                        on_complete)

    def close(self) -> None:
        self._models.clear()


def _batch_key(request: BackendRequest) -> tuple:
    """Requests that can share a padded batch: one model, one set of sampling parameters."""
    params = request.params
    return request.model_identity, params.temperature, params.top_p, params.max_tokens


def _as_list(value) -> list:
    if value is None:
        return []
    return list(value) if isinstance(value, (list, tuple)) else [value]
