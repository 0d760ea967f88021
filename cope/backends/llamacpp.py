"""llama.cpp embedded in the process, through llama-cpp-python.

Models load once, at set-up, with the chat template stored in their GGUF file. Calls run in
a worker thread so the event loop stays free, one at a time: the machine's cores are all
given to the current call (two concurrent decodes on the same cores only thrash).
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections.abc import Sequence
from pathlib import Path

from cope.backends.base import Backend, OnComplete
from cope.errors import BackendError, ConfigError, ModelFileError
from cope.generation import BackendRequest, Completion, messages_to_dicts
from cope.models.packaged import PACKAGED_MODELS, ensure_packaged_model, file_sha256


def _import_llama():
    try:
        from llama_cpp import Llama
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ConfigError(
            "backend=llamacpp needs llama-cpp-python: "
            "CMAKE_ARGS=\"-DGGML_NATIVE=OFF\" pip install 'cope[cpu]'"
        ) from exc
    return Llama


def resolve_model_file(alias: str, model_cfg) -> tuple[Path, str]:
    """The GGUF file of a model alias and its sha256."""
    if model_cfg.packaged:
        path = ensure_packaged_model(model_cfg.packaged)
        return path, PACKAGED_MODELS[model_cfg.packaged].sha256
    if model_cfg.path:
        path = Path(model_cfg.path).expanduser()
        if not path.is_file():
            raise ModelFileError(f"models.{alias}.path: no GGUF file at {path}.")
        return path, file_sha256(path)
    raise ConfigError(
        f"Model '{alias}' has neither `packaged` nor `path`, so llama.cpp cannot load it. "
        f"Set models.{alias}.packaged to one of {', '.join(PACKAGED_MODELS)} or "
        f"models.{alias}.path to a GGUF file."
    )


class LlamaCppBackend(Backend):
    name = "llamacpp"

    def __init__(self, cfg) -> None:
        self.cfg = cfg
        self._models: dict[str, object] = {}
        self._lock = threading.Lock()

    def add_model(self, alias: str, model_cfg) -> str:
        path, sha256 = resolve_model_file(alias, model_cfg)
        identity = f"{model_cfg.identity}@gguf-sha256:{sha256}"
        if self.cfg.reuse_prefix:  # it changes outputs in the last bits: keep its samples apart
            identity += "+prefix-reuse"
        if identity not in self._models:
            Llama = _import_llama()
            self._models[identity] = Llama(
                model_path=str(path),
                n_ctx=self.cfg.n_ctx,
                n_batch=self.cfg.n_batch,
                # llama-cpp-python's own default is half the cores
                n_threads=self.cfg.n_threads or os.cpu_count(),
                seed=0,
                verbose=self.cfg.verbose,
            )
        return identity

    def _complete(self, request: BackendRequest) -> Completion:
        llm = self._models.get(request.model_identity)
        if llm is None:
            raise BackendError(f"llama.cpp backend has no model '{request.model_identity}'.")
        params = request.params
        with self._lock:
            start = time.perf_counter()
            if not self.cfg.reuse_prefix:
                llm.reset()
            try:
                # Plain temperature/top-p sampling, as OpenAI-style APIs do: llama.cpp's
                # top-k and min-p filters are switched off.
                out = llm.create_chat_completion(
                    messages=messages_to_dicts(request.messages),
                    temperature=params.temperature,
                    top_p=params.top_p,
                    top_k=0,
                    min_p=0.0,
                    max_tokens=params.max_tokens,
                    stop=list(params.stop) or None,
                    seed=params.seed,
                )
            except ValueError as exc:
                # llama-cpp-python reports a prompt longer than the context this way: a failed
                # sample (an abstention), recorded as such and never cached
                return Completion(text="", prompt_tokens=0, completion_tokens=0,
                                  finish_reason=f"error: {exc}",
                                  latency_s=time.perf_counter() - start)
            latency = time.perf_counter() - start
        choice = out["choices"][0]
        usage = out["usage"]
        return Completion(
            text=choice["message"]["content"] or "",
            prompt_tokens=int(usage["prompt_tokens"]),
            completion_tokens=int(usage["completion_tokens"]),
            finish_reason=choice.get("finish_reason") or "stop",
            latency_s=latency,
        )

    async def generate(
        self, requests: Sequence[BackendRequest], on_complete: OnComplete | None = None
    ) -> list[Completion]:
        results = []
        for i, request in enumerate(requests):
            completion = await asyncio.to_thread(self._complete, request)
            if on_complete is not None:
                on_complete(i, completion)
            results.append(completion)
        return results

    def close(self) -> None:
        for llm in self._models.values():
            close = getattr(llm, "close", None)
            if close is not None:
                close()
        self._models.clear()
