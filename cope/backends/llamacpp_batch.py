"""Several sequences of one model decoded together in one llama.cpp context.

On a CPU, decoding one sequence is bound by memory bandwidth: each step streams every weight
for one token. Decoding n sequences in one batch streams them once for n tokens. The n
executions of a stage are such a batch; when they share a prompt prefix (the executions of
one plan, or of one problem), that prefix is evaluated once and its KV cells are shared by
all the sequences (a token of a llama.cpp batch may belong to several sequences).

Batched and one-at-a-time decoding sample from the same distribution, but their logits
differ in the last bits (different kernels), so their samples are not identical: batched
samples carry a model identity of their own in the cache.

A sequence that asks for logprobs gets, per completion token, the log-probability of the
sampled token under the model's own distribution (the log-softmax of the raw logits, before
temperature and top-p), read from the logits the step already computed.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import llama_cpp
import numpy as np
from llama_cpp import llama_chat_format

from cope.backends.deadline import Deadline


@dataclass(frozen=True)
class SequenceParams:
    temperature: float
    top_p: float
    seed: int
    max_tokens: int
    logprobs: bool = False


@dataclass
class SequenceResult:
    tokens: list[int]
    prompt_tokens: int
    finish_reason: str  # stop (end of generation token), length, or error: timeout ...
    logprobs: list[float] | None = field(default=None)  # one per token, when asked for
    cached_tokens: int | None = None  # prompt tokens copied from cells, not evaluated


def token_logprob(logits: np.ndarray, token: int) -> float:
    """log softmax(logits)[token], computed stably in float64."""
    row = logits.astype(np.float64, copy=False)
    top = row.max()
    return float(row[token] - top - np.log(np.exp(row - top).sum()))


def chat_prompt_tokens(llm: llama_cpp.Llama, messages: list[dict[str, str]]) -> list[int]:
    """Tokens of a chat prompt, formatted with the GGUF file's own template exactly as
    Llama.create_chat_completion formats it."""
    template = llm.metadata["tokenizer.chat_template"]
    eos_id, bos_id = llm.token_eos(), llm.token_bos()
    formatter = llama_chat_format.Jinja2ChatFormatter(
        template=template,
        eos_token=llm._model.token_get_text(eos_id) if eos_id != -1 else "",
        bos_token=llm._model.token_get_text(bos_id) if bos_id != -1 else "",
        stop_token_ids=[eos_id],
    )
    prompt = formatter(messages=messages).prompt
    return llm.tokenize(prompt.encode("utf-8"), special=True)


def common_prefix_length(sequences: list[list[int]]) -> int:
    first = sequences[0]
    length = min(len(s) for s in sequences)
    for i in range(length):
        if any(s[i] != first[i] for s in sequences[1:]):
            return i
    return length


class Sampler:
    """A llama.cpp sampler chain: temperature and top-p, then a seeded draw (or greedy)."""

    def __init__(self, params: SequenceParams) -> None:
        self.chain = llama_cpp.llama_sampler_chain_init(llama_cpp.llama_sampler_chain_default_params())
        if params.temperature <= 0:
            llama_cpp.llama_sampler_chain_add(self.chain, llama_cpp.llama_sampler_init_greedy())
        else:
            if params.top_p < 1.0:
                llama_cpp.llama_sampler_chain_add(self.chain,
                                                  llama_cpp.llama_sampler_init_top_p(params.top_p, 1))
            llama_cpp.llama_sampler_chain_add(self.chain,
                                              llama_cpp.llama_sampler_init_temp(params.temperature))
            llama_cpp.llama_sampler_chain_add(self.chain,
                                              llama_cpp.llama_sampler_init_dist(params.seed))

    def sample(self, ctx, index: int) -> int:
        return llama_cpp.llama_sampler_sample(self.chain, ctx, index)

    def close(self) -> None:
        llama_cpp.llama_sampler_free(self.chain)


class BatchContext:
    """One llama.cpp context for up to `n_seq_max` sequences sharing `n_ctx` KV cells, and
    the batch that feeds it (the set-up both decoders share)."""

    def __init__(self, llm: llama_cpp.Llama, n_seq_max: int, n_ctx: int, n_threads: int,
                 n_batch: int = 512, unified: bool = True) -> None:
        self.llm = llm
        self.n_seq_max = n_seq_max
        self.n_batch = n_batch
        params = llama_cpp.llama_context_default_params()
        params.n_ctx = n_ctx
        params.n_batch = params.n_ubatch = n_batch
        params.n_seq_max = n_seq_max
        params.n_threads = params.n_threads_batch = n_threads
        # unified: one pool of cells every sequence sees (a shared prefix lives once), but
        # each sequence's attention runs over every cell in use; otherwise each sequence has
        # n_ctx / n_seq_max cells of its own and attends to those alone
        params.kv_unified = unified
        params.no_perf = True
        self.ctx = llama_cpp.llama_init_from_model(llm._model.model, params)
        if not self.ctx:
            raise RuntimeError("llama.cpp could not create a batched context")
        self.memory = llama_cpp.llama_get_memory(self.ctx)
        self.vocab = llama_cpp.llama_model_get_vocab(llm._model.model)
        self.batch = llama_cpp.llama_batch_init(max(n_batch, n_seq_max), 0, n_seq_max)

    def close(self) -> None:
        if self.ctx:
            llama_cpp.llama_batch_free(self.batch)
            llama_cpp.llama_free(self.ctx)
            self.ctx = None

    def _add(self, token: int, pos: int, seq_ids: list[int], logits: bool) -> None:
        b = self.batch
        j = b.n_tokens
        b.token[j] = token
        b.pos[j] = pos
        b.n_seq_id[j] = len(seq_ids)
        for k, seq in enumerate(seq_ids):
            b.seq_id[j][k] = seq
        b.logits[j] = logits
        b.n_tokens = j + 1

    def _decode(self) -> None:
        status = llama_cpp.llama_decode(self.ctx, self.batch)
        if status != 0:
            raise RuntimeError(f"llama_decode failed with status {status} (context full?)")

    @property
    def n_vocab(self) -> int:
        return llama_cpp.llama_vocab_n_tokens(self.vocab)


class BatchDecoder(BatchContext):
    """The sequences of one generate call decoded together, each with `n_ctx_per_seq` cells."""

    def __init__(self, llm: llama_cpp.Llama, n_seq_max: int, n_ctx_per_seq: int, n_threads: int,
                 n_batch: int = 512) -> None:
        super().__init__(llm, n_seq_max, n_ctx_per_seq * n_seq_max, n_threads, n_batch)

    def generate(self, prompts: list[list[int]], params: list[SequenceParams],
                 deadline: Deadline | None = None) -> list[SequenceResult]:
        """Sequences decoded together; with a deadline, decoding stops between tokens once it
        has passed and the unfinished sequences end with its error as finish reason."""
        n = len(prompts)
        if not 0 < n <= self.n_seq_max:
            raise ValueError(f"a batch holds 1 to {self.n_seq_max} sequences, not {n}")
        llama_cpp.llama_memory_clear(self.memory, True)
        # every sequence keeps at least its last prompt token: its logits start the answer
        shared = min(common_prefix_length(prompts), min(len(p) for p in prompts) - 1)
        samplers = [Sampler(p) for p in params]
        outputs: list[list[int]] = [[] for _ in range(n)]
        finish = ["length"] * n
        first_tokens: dict[int, int] = {}
        # per sequence that asked: the logprob of every sampled token (the last one may be the
        # end-of-generation token, which is not part of the completion)
        scores: list[list[float]] = [[] for _ in range(n)]
        try:
            # the prompts: the shared prefix once for all sequences, then each one's own tail
            pending = [(prompts[0][i], i, list(range(n)), False) for i in range(shared)]
            for seq, prompt in enumerate(prompts):
                for i in range(shared, len(prompt)):
                    pending.append((prompt[i], i, [seq], i == len(prompt) - 1))
            for start in range(0, len(pending), self.n_batch):
                if deadline is not None and deadline.check():
                    return self._timed_out(prompts, outputs, finish, range(n), deadline, params,
                                           scores)
                self.batch.n_tokens = 0
                chunk = pending[start:start + self.n_batch]
                for token, pos, seqs, logits in chunk:
                    self._add(token, pos, seqs, logits)
                self._decode()
                for j, (_, _, seqs, logits) in enumerate(chunk):
                    if logits:
                        seq = seqs[0]
                        first_tokens[seq] = samplers[seq].sample(self.ctx, j)
                        self._note_logprob(seq, j, first_tokens[seq], params, scores)
            # decode: one token per unfinished sequence per step
            positions = [len(p) for p in prompts]
            active = []
            for seq in range(n):
                if self._accept(seq, first_tokens[seq], outputs, finish, params):
                    active.append(seq)
            while active:
                if deadline is not None and deadline.check():
                    return self._timed_out(prompts, outputs, finish, active, deadline, params,
                                           scores)
                self.batch.n_tokens = 0
                for seq in active:
                    self._add(outputs[seq][-1], positions[seq], [seq], True)
                    positions[seq] += 1
                self._decode()
                still = []
                for j, seq in enumerate(active):
                    token = samplers[seq].sample(self.ctx, j)
                    self._note_logprob(seq, j, token, params, scores)
                    if self._accept(seq, token, outputs, finish, params):
                        still.append(seq)
                active = still
        finally:
            for sampler in samplers:
                sampler.close()
        return self._results(prompts, outputs, finish, params, scores)

    def _results(self, prompts, outputs, finish, params, scores) -> list[SequenceResult]:
        return [SequenceResult(outputs[s], len(prompts[s]), finish[s],
                               scores[s][:len(outputs[s])] if params[s].logprobs else None)
                for s in range(len(prompts))]

    def _note_logprob(self, seq: int, index: int, token: int, params, scores) -> None:
        """The sampled token's logprob, from the logits of batch position `index`."""
        if not params[seq].logprobs:
            return
        pointer = llama_cpp.llama_get_logits_ith(self.ctx, index)
        logits = np.ctypeslib.as_array(pointer, shape=(self.n_vocab,))
        scores[seq].append(token_logprob(logits, token))

    def _timed_out(self, prompts, outputs, finish, unfinished, deadline: Deadline, params,
                   scores) -> list[SequenceResult]:
        for seq in unfinished:
            finish[seq] = deadline.reason()
        return self._results(prompts, outputs, finish, params, scores)

    def _accept(self, seq: int, token: int, outputs, finish, params) -> bool:
        """Record a sampled token; False when the sequence is done."""
        if llama_cpp.llama_vocab_is_eog(self.vocab, token):
            finish[seq] = "stop"
            return False
        outputs[seq].append(token)
        return len(outputs[seq]) < params[seq].max_tokens


def detokenize(llm: llama_cpp.Llama, tokens: list[int]) -> str:
    return llm.detokenize(tokens).decode("utf-8", errors="ignore")

