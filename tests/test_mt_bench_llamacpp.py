"""Logprobs from embedded llama.cpp and MT-Bench end to end, on the tiny packaged model."""

from __future__ import annotations

import asyncio
import json

import pytest

from cope.backends.llamacpp import LlamaCppBackend
from cope.judge import judge_runs
from cope.runner import run
from cope.samples import BackendRequest, SamplingParams

pytestmark = pytest.mark.integration

TINY = ["pair=tiny-cpu", "backend.n_ctx=2048", "backend.batch_n_ctx=2048", "backend.n_threads=1"]


def complete(make_config, batch_size, prompts, max_tokens, want_logprobs=True):
    cfg = make_config(*TINY, f"backend.batch_size={batch_size}")
    backend = LlamaCppBackend(cfg.backend)
    identity = backend.add_model("smollm2-135m", cfg.models["smollm2-135m"])
    requests = [BackendRequest(identity, (("user", prompt),), SamplingParams(0.0, max_tokens), 0,
                               want_logprobs) for prompt in prompts]
    try:
        return asyncio.run(backend.generate(requests))
    finally:
        backend.close()


def test_greedy_logprobs_one_per_token_batched_and_one_at_a_time(make_config):
    prompts = ["Name three colours.", "Say hello in one word."]
    single = complete(make_config, 1, prompts, 12)
    batched = complete(make_config, 2, prompts, 12)
    plain = complete(make_config, 1, prompts[:1], 12, want_logprobs=False)
    for one, many in zip(single, batched):
        for completion in (one, many):
            assert completion.token_logprobs is not None
            assert len(completion.token_logprobs) == completion.completion_tokens > 0
            assert all(lp <= 0.0 for lp in completion.token_logprobs)
            assert any(lp < -1e-3 for lp in completion.token_logprobs)
        # the same greedy tokens; the two kernels' logits differ only in their last bits
        assert one.text == many.text
        assert one.token_logprobs == pytest.approx(many.token_logprobs, abs=0.3)
    # scoring the last token (one step more, cut off) leaves the text as it was
    assert plain[0].token_logprobs is None
    assert (plain[0].text, plain[0].completion_tokens, plain[0].finish_reason) == (
        single[0].text, single[0].completion_tokens, single[0].finish_reason)


def test_cope_on_two_mt_bench_questions_and_the_judge(make_config, tmp_path, shared_data):
    common = [*TINY, "task=mt_bench", f"task.source={shared_data}", "task.limit=2",
              "method.votes=2", "method.max_tokens=24", "method.plan_max_tokens=12",
              "concurrency=1"]
    cope = run(make_config(*common, "method=cope"))
    large = run(make_config(*common, "method=large", f"run_dir={tmp_path / 'large'}"))
    assert cope.metrics["finished"] and cope.metrics["n_turns"] == 4
    assert sum(cope.metrics["turns_resolved_by_stage"].values()) == 4
    for row in cope.problems:
        assert len(row["answers"]) == 2 and all(row["answers"])
        for turn in row["turns"]:
            scored = [p for s in turn["stages"] for p in s["perplexities"] if p is not None]
            assert scored and all(p >= 1.0 for p in scored)
            assert turn["perplexity"] == min(turn["stages"][-1]["perplexities"])
    samples = [json.loads(line) for line in
               (cope.run_dir / "samples.jsonl").read_text().splitlines()]
    turn2 = [s for s in samples if s["turn"] == 2 and s["role"] == "executor"]
    assert turn2 and all(s["finish_reason"] in ("stop", "length") for s in turn2)

    result, out = judge_runs(cope.run_dir, large.run_dir,
                             [*TINY, f"cache.path={tmp_path / 'cache.sqlite'}"],
                             alias="smollm2-135m", max_tokens=24)
    overall = result["overall"]
    assert overall["n"] == 4 and overall["wins"] + overall["ties"] + overall["losses"] == 4
    judged = [json.loads(line) for line in (out / "judge_samples.jsonl").read_text().splitlines()]
    assert len(judged) == 8 and all(s["completion_tokens"] > 0 for s in judged)
