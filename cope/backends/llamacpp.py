"""llama.cpp embedded in the process, through llama-cpp-python.

Models load once, at set-up, with the chat template stored in their GGUF file. Calls run in
a worker thread so the event loop stays free, one at a time: the machine's cores are all
given to the current call (two concurrent decodes on the same cores only thrash).

With `backend.timeout_s`, a call that runs out of time stops decoding at its next token and
comes back as a failed sample (finish_reason "error: timeout ..."), which the run records.

A request that wants logprobs gets, per completion token, the log-probability of the sampled
token under the model's own distribution (log-softmax of the raw logits, before temperature
and top-p), as OpenAI-compatible servers report it.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from cope.backends.base import Backend, OnComplete, chunk_positions, generate_in_chunks
from cope.backends.deadline import Deadline
from cope.backends.llamacpp_memory import MemoryLedger, ModelShape
from cope.errors import BackendError, ConfigError
from cope.models.packaged import model_sha256, resolve_model_file
from cope.samples import BackendRequest, Completion, messages_to_dicts


def _import_llama():
    try:
        from llama_cpp import Llama
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ConfigError(
            "backend=llamacpp needs llama-cpp-python: "
            "CMAKE_ARGS=\"-DGGML_NATIVE=OFF\" pip install 'cope[cpu]'"
        ) from exc
    return Llama


class EndOnDeadline:
    """A logits processor that, once the deadline has passed, leaves the end-of-generation
    token as the only choice: llama-cpp-python then ends the completion at that token."""

    def __init__(self, deadline: Deadline, eos: int) -> None:
        self.deadline = deadline
        self.eos = eos

    def __call__(self, input_ids, logits):
        if self.deadline.check():
            logits[:] = -float("inf")
            logits[self.eos] = 0.0
        return logits


class LogprobRecorder:
    """A logits processor that sees the raw logits of every sampling step. The token sampled
    at step k is only known at step k + 1 (it is then the last input id), so each step's
    row waits for the next one; a completion asked for with one token more than it needs
    therefore has every one of its tokens scored."""

    def __init__(self) -> None:
        self.pending = None  # the previous step's logits, waiting for its sampled token
        self.logprobs: list[float] = []
        self.input_ids = ()  # prompt and sampled tokens, as of the last step (a view)

    def __call__(self, input_ids, logits):
        from cope.backends.llamacpp_batch import token_logprob  # needs llama_cpp: lazy

        if self.pending is not None:
            self.logprobs.append(token_logprob(self.pending, int(input_ids[-1])))
        self.pending = np.array(logits, dtype=np.float32, copy=True)
        self.input_ids = input_ids
        return logits


class LlamaCppBackend(Backend):
    name = "llamacpp"

    def __init__(self, cfg) -> None:
        self.cfg = cfg
        self._models: dict[str, object] = {}
        self._decoders: dict[str, object] = {}  # identity -> BatchDecoder
        self._lock = threading.Lock()
        self._memory = MemoryLedger()  # contexts are priced before they are made
        # every decode runs on this one thread: llama.cpp's OpenMP build gives each calling
        # thread a thread team of its own, and a team reused stays warm
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="llama.cpp")
        # set by stop(): decoding in progress ends at its next token
        self._stopping = threading.Event()
        self._continuous = (getattr(cfg, "batching", "fixed") == "continuous"
                            and cfg.batch_size > 1)
        self._scheduler = None
        if self._continuous:
            from cope.backends.llamacpp_continuous import Scheduler  # needs llama_cpp: lazy

            self._scheduler = Scheduler(self._worker.submit, self._stopping)

    def _identity(self, model_cfg, sha256: str) -> str:
        identity = f"{model_cfg.identity}@gguf-sha256:{sha256}"
        # both change outputs in the last bits: keep their samples apart in the cache
        if self._continuous:
            identity += "+continuous"
        elif self.cfg.batch_size > 1:
            identity += "+batched"
        elif self.cfg.reuse_prefix:
            identity += "+prefix-reuse"
        return identity

    def replay_identity(self, alias: str, model_cfg) -> str:
        return self._identity(model_cfg, model_sha256(alias, model_cfg))

    def add_model(self, alias: str, model_cfg) -> str:
        path, sha256 = resolve_model_file(alias, model_cfg)
        identity = self._identity(model_cfg, sha256)
        if identity not in self._models:
            Llama = _import_llama()
            threads = self.cfg.n_threads or os.cpu_count()  # llama-cpp-python's default is half
            llm = Llama(
                model_path=str(path),
                n_ctx=self.cfg.n_ctx,
                n_batch=self.cfg.n_batch,
                n_threads=threads,
                seed=0,
                verbose=self.cfg.verbose,
            )
            if "tokenizer.chat_template" in llm.metadata:
                llm.chat_format = "chat_template.default"  # the GGUF's own template, never a guess
            self._models[identity] = llm
            shape = ModelShape.from_metadata(llm.metadata, llm.n_vocab())
            self._memory.take_model(alias, path.stat().st_size, shape, self.cfg.n_ctx)
            if self.cfg.batch_size > 1:
                self._memory.take_batch(alias, shape, self.cfg.batch_size, self.cfg.batch_n_ctx)
            if self._continuous:
                from cope.backends.llamacpp_continuous import (
                    ContinuousDecoder,  # needs llama_cpp: lazy
                )

                decoder = ContinuousDecoder(llm, self.cfg.batch_size, self.cfg.batch_n_ctx,
                                            threads, self.cfg.n_batch)
                self._decoders[identity] = decoder
                self._scheduler.decoders.append(decoder)
            elif self.cfg.batch_size > 1:
                from cope.backends.llamacpp_batch import (
                    BatchDecoder,  # needs llama_cpp: lazy
                )

                self._decoders[identity] = BatchDecoder(
                    llm, self.cfg.batch_size, self.cfg.batch_n_ctx // self.cfg.batch_size,
                    threads, self.cfg.n_batch)
        return identity

    @property
    def _timeout(self) -> float | None:
        return getattr(self.cfg, "timeout_s", None)

    def _complete(self, request: BackendRequest) -> Completion:
        with self._lock:
            return self._complete_unlocked(request)

    def _complete_unlocked(self, request: BackendRequest) -> Completion:
        llm = self._models.get(request.model_identity)
        if llm is None:
            raise BackendError(f"llama.cpp backend has no model '{request.model_identity}'.")
        params = request.params
        start = time.perf_counter()
        deadline = Deadline.after(self._timeout, self._stopping)
        # the check runs as a logits processor, once per sampled token
        processors = [EndOnDeadline(deadline, llm.token_eos())]
        recorder = LogprobRecorder() if request.want_logprobs else None
        if recorder is not None:
            processors.insert(0, recorder)  # first: it must see the logits untouched
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
                # one more step scores the last token; the extra token is cut off below
                max_tokens=params.max_tokens + (recorder is not None),
                stop=list(params.stop) or None,
                seed=params.seed,
                logits_processor=processors or None,
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
        finish = choice.get("finish_reason") or "stop"
        text = choice["message"]["content"] or ""
        prompt_tokens, completion_tokens = int(usage["prompt_tokens"]), int(usage["completion_tokens"])
        logprobs = None
        if recorder is not None:
            if completion_tokens >= params.max_tokens:
                # the budget was reached: drop the extra token, as a call without it would end
                ids = [int(t) for t in recorder.input_ids]
                tokens = ids[prompt_tokens:prompt_tokens + params.max_tokens]
                text = llm.detokenize(tokens, prev_tokens=ids[:prompt_tokens]
                                      ).decode("utf-8", errors="ignore")
                completion_tokens, finish = params.max_tokens, "length"
            logprobs = tuple(recorder.logprobs[:completion_tokens])
        if deadline and deadline.expired:
            finish = deadline.reason()
        return Completion(
            text=text,
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            finish_reason=finish,
            latency_s=latency,
            token_logprobs=logprobs,
        )

    def _complete_batch(self, requests: list[BackendRequest]) -> list[Completion]:
        """Requests for one model, decoded together (see llamacpp_batch)."""
        # needs llama_cpp, imported once a model is loaded (see _import_llama)
        from cope.backends.llamacpp_batch import (
            SequenceParams,
            chat_prompt_tokens,
            detokenize,
        )

        identity = requests[0].model_identity
        llm, decoder = self._models[identity], self._decoders[identity]
        with self._lock:
            start = time.perf_counter()
            prompts = [chat_prompt_tokens(llm, messages_to_dicts(r.messages)) for r in requests]
            params = [SequenceParams(r.params.temperature, r.params.top_p, r.params.seed,
                                     r.params.max_tokens, r.want_logprobs) for r in requests]
            per_sequence = self.cfg.batch_n_ctx // self.cfg.batch_size
            too_long = [len(p) + q.max_tokens > per_sequence for p, q in zip(prompts, params)]
            if any(too_long):
                return [self._complete_unlocked(r) for r in requests]
            results = decoder.generate(prompts, params,
                                       Deadline.after(self._timeout, self._stopping))
            latency = time.perf_counter() - start
        return [
            Completion(text=detokenize(llm, r.tokens), prompt_tokens=r.prompt_tokens,
                       completion_tokens=len(r.tokens), finish_reason=r.finish_reason,
                       latency_s=latency,
                       token_logprobs=tuple(r.logprobs) if r.logprobs is not None else None)
            for r in results
        ]

    def joint_batches(self, requests: Sequence[BackendRequest]) -> list[list[int]]:
        # continuous batches have no composition a key could name (the identity says so)
        if self.cfg.batch_size <= 1 or self._continuous:
            return []
        return chunk_positions(requests, lambda r: r.model_identity, self.cfg.batch_size)

    async def _generate_continuous(self, requests: Sequence[BackendRequest],
                                   on_complete: OnComplete | None) -> list[Completion]:
        """Each model's requests join its decoder's queue as one group; completions come
        back as each sequence finishes."""
        from cope.backends.llamacpp_batch import (  # needs llama_cpp: lazy
            SequenceParams,
            chat_prompt_tokens,
            detokenize,
        )
        from cope.backends.llamacpp_continuous import Job

        loop = asyncio.get_running_loop()
        results: list[Completion | None] = [None] * len(requests)
        futures = [loop.create_future() for _ in requests]
        start = time.perf_counter()

        def finished(i: int, llm, result) -> None:  # in the decoding thread
            completion = Completion(
                text=detokenize(llm, result.tokens), prompt_tokens=result.prompt_tokens,
                completion_tokens=len(result.tokens), finish_reason=result.finish_reason,
                latency_s=time.perf_counter() - start,
                token_logprobs=tuple(result.logprobs) if result.logprobs is not None else None,
                cached_tokens=result.cached_tokens)
            try:
                loop.call_soon_threadsafe(_settle, i, completion)
            except RuntimeError:  # the loop is closed: nobody waits for this sample any more
                pass

        def _settle(i: int, completion: Completion) -> None:
            results[i] = completion
            if on_complete is not None:
                on_complete(i, completion)
            if not futures[i].done():
                futures[i].set_result(None)

        for positions in chunk_positions(requests, lambda r: r.model_identity, len(requests)):
            identity = requests[positions[0]].model_identity
            llm = self._models.get(identity)
            if llm is None:
                raise BackendError(f"llama.cpp backend has no model '{identity}'.")
            prompts = await asyncio.to_thread(
                lambda: [chat_prompt_tokens(llm, messages_to_dicts(requests[i].messages))
                         for i in positions])
            deadline = Deadline.after(self._timeout, self._stopping)
            jobs = [Job(prompt, SequenceParams(r.params.temperature, r.params.top_p,
                                               r.params.seed, r.params.max_tokens,
                                               r.want_logprobs),
                        lambda result, i=i, llm=llm: finished(i, llm, result), deadline)
                    for i, prompt, r in ((i, p, requests[i]) for i, p in zip(positions, prompts))]
            self._scheduler.submit(self._decoders[identity], jobs)
        await asyncio.gather(*futures)
        return results  # type: ignore[return-value]

    async def generate(
        self, requests: Sequence[BackendRequest], on_complete: OnComplete | None = None
    ) -> list[Completion]:
        if self._continuous:
            return await self._generate_continuous(requests, on_complete)
        if self.cfg.batch_size > 1:
            return await generate_in_chunks(requests, lambda r: r.model_identity,
                                            self.cfg.batch_size, self._complete_batch, on_complete,
                                            self._worker)
        return await generate_in_chunks(requests, lambda r: r.model_identity, 1,
                                        lambda chunk: [self._complete(chunk[0])], on_complete,
                                        self._worker)

    def stop(self) -> None:
        """End decoding in progress at its next token: its requests come back as failed
        samples (never cached). For a run that is ending; the backend takes no new work."""
        self._stopping.set()

    def close(self) -> None:
        self.stop()  # the worker would otherwise finish a generation nobody will record
        self._worker.shutdown(wait=True)
        for decoder in self._decoders.values():
            decoder.close()
        self._decoders.clear()
        for llm in self._models.values():
            close = getattr(llm, "close", None)
            if close is not None:
                close()
        self._models.clear()
