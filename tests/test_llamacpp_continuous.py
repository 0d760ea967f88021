"""backend.batching=continuous: one llama.cpp batch per model for every sequence in flight,
slots refilled as sequences finish; with the tiny packaged model."""

import asyncio

import pytest

from cope.backends.llamacpp import LlamaCppBackend
from cope.runner import run
from cope.samples import BackendRequest, SamplingParams

pytestmark = pytest.mark.integration

TINY = ["pair=tiny-cpu", "task=gsm8k", "backend.n_ctx=1024", "backend.n_threads=1"]
PROMPTS = ["Count from one to ten.", "Name three colours.", "What is 2 + 3?",
           "Say hello in French.", "List four animals.", "Spell the word cat."]


def backend_for(make_config, *overrides):
    cfg = make_config(*TINY, "backend.batching=continuous", *overrides)
    backend = LlamaCppBackend(cfg.backend)
    identity = backend.add_model("smollm2-135m", cfg.models["smollm2-135m"])
    return backend, identity


def requests_for(identity, prompts, max_tokens=24, temperature=0.0, logprobs=False):
    return [BackendRequest(identity, (("user", prompt),),
                           SamplingParams(temperature, max_tokens, seed=7 + i), i, logprobs)
            for i, prompt in enumerate(prompts)]


def test_more_sequences_than_slots_all_finish_and_report_as_they_go(make_config):
    backend, identity = backend_for(make_config, "backend.batch_size=2",
                                    "backend.batch_n_ctx=1024")
    assert identity.endswith("+continuous")
    seen = []
    try:
        completions = asyncio.run(backend.generate(
            requests_for(identity, PROMPTS, logprobs=True),
            on_complete=lambda i, c: seen.append(i)))
    finally:
        backend.close()
    assert sorted(seen) == list(range(len(PROMPTS)))
    for completion in completions:
        assert not completion.failed and completion.text.strip()
        assert 0 < completion.completion_tokens <= 24
        assert len(completion.token_logprobs) == completion.completion_tokens
        assert all(lp <= 0.0 for lp in completion.token_logprobs)


def test_calls_from_several_problems_share_the_batch(make_config):
    """Three generate calls in flight at once, as three problems would make them."""
    backend, identity = backend_for(make_config, "backend.batch_size=4",
                                    "backend.batch_n_ctx=2048")

    async def three_problems():
        calls = [backend.generate(requests_for(identity, PROMPTS[k:k + 2]))
                 for k in (0, 2, 4)]
        return await asyncio.gather(*calls)

    try:
        results = asyncio.run(three_problems())
    finally:
        backend.close()
    assert [len(r) for r in results] == [2, 2, 2]
    assert all(not c.failed and c.completion_tokens > 0 for r in results for c in r)


def test_a_sequence_that_cannot_fit_fails_alone(make_config):
    backend, identity = backend_for(make_config, "backend.batch_size=2",
                                    "backend.batch_n_ctx=256")
    try:
        completions = asyncio.run(backend.generate(
            requests_for(identity, ["Hi."], max_tokens=16)
            + requests_for(identity, ["Hello."], max_tokens=400)))
    finally:
        backend.close()
    fits, too_big = completions
    assert not fits.failed and fits.completion_tokens > 0
    assert too_big.failed and "KV cells" in too_big.finish_reason


def test_a_refused_sequence_is_cached_and_replays_without_a_call(make_config, tmp_path):
    """A refusal follows from the request and the slot size in its key: a pool that met one
    replays it, so a calibration survey finds nothing missing."""
    from cope.cache import GenerationCache
    from cope.generator import Generator, ModelBinding
    from cope.samples import GenerationRequest, SampleTag

    backend, identity = backend_for(make_config, "backend.batch_size=2",
                                    "backend.batch_n_ctx=256")
    requests = [GenerationRequest("tiny", (("user", prompt),), SamplingParams(0.0, tokens), 0)
                for prompt, tokens in (("Hi.", 16), ("Hello.", 400))]
    tags = [SampleTag("p", "s1", "executor", "small")] * 2

    def generate(mode):
        cache = GenerationCache(tmp_path / "c.sqlite", mode)
        generator = Generator({"tiny": ModelBinding("tiny", identity, backend, "s")}, cache)
        try:
            out = asyncio.run(generator.generate(requests, tags))
        finally:
            cache.close()
        return generator, [g.completion for g in out]

    try:
        first, made = generate("readwrite")
        again, replayed = generate("readonly")  # a miss would raise
    finally:
        backend.close()
    assert first.backend_calls == 2 and first.failed_calls == 1
    assert made[1].failed and made[1].finish_reason.startswith("refused: ")
    assert again.backend_calls == 0 and again.cache_hits == 2
    assert replayed == made


def test_a_run_in_continuous_mode_replays_from_the_cache(make_config, tmp_path):
    overrides = [*TINY, "backend.batching=continuous", "backend.batch_size=4",
                 "backend.batch_n_ctx=4096", "task.limit=3", "concurrency=3",
                 "method=cope", "method.votes=2", "method.max_tokens=24",
                 "method.plan_max_tokens=12"]
    first = run(make_config(*overrides, f"run_dir={tmp_path / 'first'}"))
    again = run(make_config(*overrides, f"run_dir={tmp_path / 'again'}"))
    assert first.metrics["n_problems"] == 3 and first.metrics["backend_calls"] > 0
    assert again.metrics["backend_calls"] == 0
    assert ((tmp_path / "first" / "problems.jsonl").read_bytes()
            == (tmp_path / "again" / "problems.jsonl").read_bytes())


def test_continuous_batching_needs_room_for_two(make_config):
    from cope.config import validate
    from cope.errors import ConfigError

    with pytest.raises(ConfigError, match="batch_size to 2 or more"):
        validate(make_config(*TINY, "backend.batching=continuous", "backend.batch_size=1"))


def test_a_prompt_a_resident_sequence_holds_is_not_evaluated_again(make_config):
    """Two slots, three sequences of one prompt: the first two share its evaluation; the
    third, admitted when the first ends, takes its KV cells from the second, still decoding."""
    backend, identity = backend_for(make_config, "backend.batch_size=2",
                                    "backend.batch_n_ctx=1024")
    prompt = "Describe, in a few sentences, how bread is made from flour, water and yeast."
    requests = [BackendRequest(identity, (("user", prompt),), SamplingParams(0.8, n, seed=i), i)
                for i, n in enumerate((2, 40, 2))]
    try:
        completions = asyncio.run(backend.generate(requests))
        decoder = backend._decoders[identity]
        evaluated = decoder.prompt_tokens_evaluated
    finally:
        backend.close()
    prompt_tokens = completions[0].prompt_tokens
    assert all(c.prompt_tokens == prompt_tokens for c in completions)
    assert completions[1].completion_tokens > 2  # still decoding when the third came in
    # the first two: the prompt but its last token once, and each one's last token; the
    # third: its last token alone (without the sharing: 2 * prompt_tokens + 1)
    assert evaluated == (prompt_tokens - 1) + 2 + 1
    # each completion says how much of its prompt it took from cells (the run's metrics
    # and samples report it as prefix_cache / cached_tokens)
    assert [c.cached_tokens for c in completions] == [0, prompt_tokens - 1, prompt_tokens - 1]
    assert sum(c.prompt_tokens - c.cached_tokens for c in completions) == evaluated


def test_a_sequence_moved_to_a_freed_slot_decodes_on_from_its_own_cells(make_config):
    """Slots stay consecutive: when the sequence in slot 0 ends, the one in slot 1 moves
    there with a copy of its cells. Greedy, it goes on as it would have alone: the same
    tokens, logprobs equal but for the last bits a different batch gives."""
    backend, identity = backend_for(make_config, "backend.batch_size=2",
                                    "backend.batch_n_ctx=1024")
    long_prompt = "Write a short story about a lighthouse keeper and a storm."
    together = [BackendRequest(identity, (("user", "Say yes."),), SamplingParams(0.0, 3), 0, True),
                BackendRequest(identity, (("user", long_prompt),), SamplingParams(0.0, 48), 1, True)]
    alone = [BackendRequest(identity, (("user", long_prompt),), SamplingParams(0.0, 48), 0, True)]
    decoder = backend._decoders[identity]
    moves = []
    original = decoder._finish

    def watch(seq, reason):
        before = {s.job.params.max_tokens: slot for slot, s in decoder.resident.items()}
        original(seq, reason)
        after = {s.job.params.max_tokens: slot for slot, s in decoder.resident.items()}
        moves.extend((n, before[n], after[n]) for n in after if after[n] != before[n])

    decoder._finish = watch
    try:
        short, moved = asyncio.run(backend.generate(together))
        (reference,) = asyncio.run(backend.generate(alone))
    finally:
        backend.close()
    assert moves == [(48, 1, 0)]  # the long sequence moved from slot 1 to slot 0
    assert short.completion_tokens <= 3 < moved.completion_tokens
    assert moved.text == reference.text
    assert max(abs(a - b) for a, b in zip(moved.token_logprobs, reference.token_logprobs)) < 0.05
