"""Continuous batching for llama.cpp: one decode batch per model that stays full.

`backend.batching=continuous`: the sequences of every problem and stage in flight share one
llama.cpp context per model. Each step decodes one token of every resident sequence; a
sequence that finishes gives its slot, and its KV cells, to the next one waiting, so the
batch does not empty as a stage's sequences finish one by one. The requests of one
`generate` call (a stage's executions of one problem) are admitted together when they fit,
and the prompt prefix they share is evaluated once for all of them. One worker thread runs
the steps of every model in turns, so the large model decodes while the small one does.

A sample decoded this way depends in its last bits on whatever else shared its batch, which
no later run can repeat: the fast mode samples from the model's distribution, the cache
replays it exactly, and without the cache only `backend.batching=fixed` (or batch_size 1)
reproduces seeded samples bit for bit. Such samples carry a model identity of their own.

Each slot has backend.batch_n_ctx / backend.batch_size KV cells of its own: a sequence whose
prompt and max_tokens need more is refused (a failed sample, cached: the slot size is in its
key), and the others decode on.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

import llama_cpp
import numpy as np

from cope.backends.deadline import Deadline
from cope.backends.llamacpp_batch import (
    BatchContext,
    Sampler,
    SequenceParams,
    SequenceResult,
    common_prefix_length,
    token_logprob,
)

MIN_REUSE = 16  # prompt tokens worth sharing from a resident sequence


@dataclass
class Job:
    """One sequence to decode, and where its result goes."""

    prompt: list[int]
    params: SequenceParams
    done: Callable[[SequenceResult], None]  # called once, from the decoding thread
    deadline: Deadline | None = None


@dataclass
class _Resident:
    job: Job
    slot: int
    sampler: Sampler
    position: int = 0
    cached: int = 0  # prompt tokens copied from another sequence's cells, not evaluated
    last: int = -1  # the token to feed next
    tokens: list[int] = field(default_factory=list)
    logprobs: list[float] = field(default_factory=list)


class ContinuousDecoder(BatchContext):
    """One llama.cpp context with `n_seq_max` slots, each with n_ctx / n_seq_max KV cells.

    Each slot's cells are its own (llama.cpp's per-sequence streams): a step's attention runs
    over each sequence's own cells, not over every cell in use, which on a CPU decides the
    step's cost once sequences grow long. A shared prefix is evaluated once, in one slot, and
    its cells are copied to the others before their own tokens are evaluated."""

    def __init__(self, llm: llama_cpp.Llama, n_seq_max: int, n_ctx: int, n_threads: int,
                 n_batch: int = 512) -> None:
        super().__init__(llm, n_seq_max, n_ctx, n_threads, n_batch, unified=False)
        self.cells_per_slot = llama_cpp.llama_n_ctx_seq(self.ctx)
        self.waiting: deque[list[Job]] = deque()  # groups, in the order they were asked for
        # slot -> sequence; the slots in use are always 0 .. len - 1 (see _finish)
        self.resident: dict[int, _Resident] = {}
        self.prompt_tokens_evaluated = 0  # prompt tokens decoded (shared ones count once)

    # --- the queue (any thread) -------------------------------------------------------

    def submit(self, jobs: list[Job]) -> None:
        """Queue a group of jobs (Scheduler.submit is the way in from another thread)."""
        self.waiting.append(list(jobs))

    @property
    def busy(self) -> bool:
        return bool(self.waiting or self.resident)

    # --- decoding (the worker thread) -------------------------------------------------

    def step(self) -> None:
        """Admit what fits, then decode one token of every resident sequence."""
        self._admit()
        # in slot order: llama.cpp batches a run of consecutive sequence ids in one pass
        order = [self.resident[slot] for slot in sorted(self.resident)
                 if self.resident[slot].last >= 0]
        if not order:
            return
        self._clear_batch()
        for seq in order:
            self._add(seq.last, seq.position, [seq.slot], True)
            seq.position += 1
        self._decode()
        for j, seq in enumerate(order):
            self._take(seq, j)

    def stop_all(self, reason: str) -> None:
        """End every sequence, resident or waiting, with `reason` as its finish reason."""
        for seq in list(self.resident.values()):
            self._finish(seq, reason)
        while self.waiting:
            for job in self.waiting.popleft():
                job.done(SequenceResult([], len(job.prompt), reason,
                                        [] if job.params.logprobs else None))

    def _admit(self) -> None:
        """As many waiting jobs as there are free slots, group by group in order."""
        admitted: list[Job] = []
        free = self.n_seq_max - len(self.resident)
        while self.waiting and len(admitted) < free:
            group = self.waiting[0]
            while group and len(admitted) < free:
                job = group.pop(0)
                need = len(job.prompt) + job.params.max_tokens + 1
                if need > self.cells_per_slot:
                    job.done(SequenceResult(
                        [], len(job.prompt), f"refused: prompt and max_tokens need {need} KV "
                        f"cells, a slot has {self.cells_per_slot} (backend.batch_n_ctx / "
                        "backend.batch_size)", [] if job.params.logprobs else None))
                    continue
                admitted.append(job)
            if not group:
                self.waiting.popleft()
        if admitted:
            self._prefill(admitted)

    def _reuse(self, prompt: list[int]) -> tuple[_Resident | None, int]:
        """The resident sequence whose prompt shares the longest prefix with `prompt`, and
        that prefix's length (at most len(prompt) - 1: the last token's logits are needed)."""
        best, length = None, 0
        for seq in self.resident.values():
            if seq.position == 0:  # admitted this round: its cells are not written yet
                continue
            n = min(common_prefix_length([seq.job.prompt, prompt]), len(prompt) - 1)
            if n > length:
                best, length = seq, n
        return (best, length) if length >= MIN_REUSE else (None, 0)

    def _prefill(self, jobs: list[Job]) -> None:
        """Evaluate the prompts of newly admitted jobs. A prefix a resident sequence already
        holds is copied from its cells, not evaluated again; among the rest, a prefix they
        all share is evaluated once, in the first one's slot, and copied to the others."""
        reused = [self._reuse(job.prompt) for job in jobs]
        seqs = []
        for job in jobs:  # resident from here on: stop_all reaches them if a decode fails
            seq = _Resident(job, len(self.resident), Sampler(job.params))
            self.resident[seq.slot] = seq
            seqs.append(seq)
        fresh = [k for k, (source, _) in enumerate(reused) if source is None]
        if len(fresh) > 1:
            prompts = [jobs[k].prompt for k in fresh]
            shared = min(common_prefix_length(prompts), min(len(p) for p in prompts) - 1)
            if shared >= MIN_REUSE:
                leader = seqs[fresh[0]]
                self._evaluate([(token, pos, leader, False)
                                for pos, token in enumerate(leader.job.prompt[:shared])])
                reused[fresh[0]] = (None, shared)
                for k in fresh[1:]:
                    reused[k] = (leader, shared)
        for seq, (source, length) in zip(seqs, reused):
            if source is not None:
                self._copy_prefix(source, seq, length)
                seq.cached = length
        pending = []
        for seq, (_, start) in zip(seqs, reused):
            prompt = seq.job.prompt
            pending += [(prompt[i], i, seq, i == len(prompt) - 1)
                        for i in range(start, len(prompt))]
        self._evaluate(pending)

    def _copy_prefix(self, source: _Resident, seq: _Resident, length: int) -> None:
        """`seq`'s slot gets the first `length` cells of `source`'s. llama.cpp copies a
        slot of its own cells whole (the data moves at the next decode); what lies beyond
        the prefix is then dropped."""
        llama_cpp.llama_memory_seq_cp(self.memory, source.slot, seq.slot, -1, -1)
        llama_cpp.llama_memory_seq_rm(self.memory, seq.slot, length, -1)

    def _evaluate(self, pending: list[tuple[int, int, _Resident, bool]]) -> None:
        """Prompt tokens (token, position, sequence, last of its prompt) in batches; a
        sequence's last prompt token gives its first sampled token."""
        self.prompt_tokens_evaluated += len(pending)
        for start in range(0, len(pending), self.n_batch):
            chunk = pending[start:start + self.n_batch]
            self._clear_batch()
            for token, pos, seq, last in chunk:
                self._add(token, pos, [seq.slot], last)
            self._decode()
            for j, (_, _, seq, last) in enumerate(chunk):
                if last:
                    seq.position = len(seq.job.prompt)
                    self._take(seq, j)

    def _take(self, seq: _Resident, index: int) -> None:
        """Sample the sequence's next token from batch position `index`."""
        token = seq.sampler.sample(self.ctx, index)
        if seq.job.params.logprobs:
            pointer = llama_cpp.llama_get_logits_ith(self.ctx, index)
            seq.logprobs.append(token_logprob(np.ctypeslib.as_array(
                pointer, shape=(self.n_vocab,)), token))
        deadline = seq.job.deadline
        if llama_cpp.llama_vocab_is_eog(self.vocab, token):
            self._finish(seq, "stop")
        elif deadline is not None and deadline.check():
            seq.tokens.append(token)
            self._finish(seq, deadline.reason())
        else:
            seq.tokens.append(token)
            seq.last = token
            if len(seq.tokens) >= seq.job.params.max_tokens:
                self._finish(seq, "length")

    def _finish(self, seq: _Resident, reason: str) -> None:
        """Hand back the sequence's result and free its slot. The sequence in the highest
        slot moves into the freed one (its cells are copied at the next decode, before that
        decode writes any), so the slots in use stay consecutive: llama.cpp decodes the
        sequences of separate slots in separate passes, each streaming every weight."""
        del self.resident[seq.slot]
        llama_cpp.llama_memory_seq_rm(self.memory, seq.slot, -1, -1)
        top = len(self.resident)
        if seq.slot < top:
            moved = self.resident.pop(top)
            llama_cpp.llama_memory_seq_cp(self.memory, top, seq.slot, -1, -1)
            llama_cpp.llama_memory_seq_rm(self.memory, top, -1, -1)
            moved.slot = seq.slot
            self.resident[seq.slot] = moved
        seq.sampler.close()
        logprobs = seq.logprobs[:len(seq.tokens)] if seq.job.params.logprobs else None
        seq.job.done(SequenceResult(seq.tokens, len(seq.job.prompt), reason, logprobs,
                                    seq.cached))

    def _clear_batch(self) -> None:
        self.batch.n_tokens = 0


class Scheduler:
    """The decoding loop of every model's ContinuousDecoder, in one thread: a step of each
    model with work in turns, until none has any. `submit` starts it when it is not running."""

    def __init__(self, run_in_worker: Callable[[Callable[[], None]], None],
                 stopping: threading.Event) -> None:
        self.decoders: list[ContinuousDecoder] = []
        self._run_in_worker = run_in_worker
        self._stopping = stopping
        self._lock = threading.Lock()
        self._running = False

    def submit(self, decoder: ContinuousDecoder, jobs: list[Job]) -> None:
        # under the lock that the loop's last look for work takes: a job is either seen by
        # a running loop or starts a new one
        with self._lock:
            decoder.submit(jobs)
            if self._running:
                return
            self._running = True
        self._run_in_worker(self._loop)

    def _loop(self) -> None:
        try:
            while True:
                if self._stopping.is_set():
                    for decoder in self.decoders:
                        decoder.stop_all("error: stopped")
                with self._lock:
                    if not any(decoder.busy for decoder in self.decoders):
                        self._running = False
                        return
                for decoder in self.decoders:
                    if decoder.busy:
                        decoder.step()
        except BaseException as exc:
            for decoder in self.decoders:
                decoder.stop_all(f"error: {exc}")
            with self._lock:
                self._running = False
            raise
