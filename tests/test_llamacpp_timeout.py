"""backend.timeout_s: an embedded llama.cpp call that runs out of time stops decoding and
comes back as a failed sample, recorded by the run, never cached."""

import asyncio
import json

import pytest

from cope.backends.llamacpp import LlamaCppBackend
from cope.errors import ConfigError
from cope.runner import run
from cope.samples import BackendRequest, SamplingParams

pytestmark = pytest.mark.integration

TINY = ["pair=tiny-cpu", "task=gsm8k", "task.limit=1", "method=large", "method.max_tokens=32",
        "backend.n_ctx=1024", "backend.batch_n_ctx=1024", "backend.n_threads=1"]
# so small that it is spent before the first token is sampled, however fast the machine
SPENT = 1e-9


def generate(make_config, batch_size, timeout_s, n=2, max_tokens=24):
    cfg = make_config(*TINY, f"backend.batch_size={batch_size}", f"backend.timeout_s={timeout_s}")
    backend = LlamaCppBackend(cfg.backend)
    identity = backend.add_model("smollm2-135m", cfg.models["smollm2-135m"])
    requests = [BackendRequest(identity, (("user", "Count from one to fifty."),),
                               SamplingParams(0.0, max_tokens, seed=0), i) for i in range(n)]
    try:
        return asyncio.run(backend.generate(requests))
    finally:
        backend.close()


@pytest.mark.parametrize("batch_size", [1, 2])
def test_a_spent_budget_stops_decoding_and_fails_the_sample(make_config, batch_size):
    completions = generate(make_config, batch_size, SPENT)
    assert len(completions) == 2
    for completion in completions:
        assert completion.failed
        assert completion.finish_reason.startswith("error: timeout")
        assert completion.completion_tokens <= 1 < 24  # stopped at once, not at max_tokens


@pytest.mark.parametrize("batch_size", [1, 2])
def test_a_generous_budget_changes_nothing(make_config, batch_size):
    limited = generate(make_config, batch_size, 600.0, max_tokens=8)
    unlimited = generate(make_config, batch_size, "null", max_tokens=8)
    assert [c.text for c in limited] == [c.text for c in unlimited]
    assert all(not c.failed and c.completion_tokens > 0 for c in limited)


def test_a_run_records_timed_out_samples_and_caches_none(make_config, tmp_path):
    result = run(make_config(*TINY, "backend.batch_size=1", f"backend.timeout_s={SPENT}"))
    samples = [json.loads(line) for line in
               (result.run_dir / "samples.jsonl").read_text().splitlines()]
    assert samples and all(s["finish_reason"].startswith("error: timeout") for s in samples)
    assert result.metrics["n_problems"] == 1 and result.metrics["backend_calls"] == len(samples)
    again = run(make_config(*TINY, "backend.batch_size=1", f"run_dir={tmp_path / 'again'}"))
    assert again.metrics["cache_hits"] == 0  # the failed samples were never cached


def test_a_budget_must_be_positive(make_config):
    with pytest.raises(ConfigError, match="backend.timeout_s"):
        run(make_config(*TINY, "backend.timeout_s=0"))


@pytest.mark.parametrize("batch_size", [1, 2])
def test_a_stopped_backend_ends_decoding_and_fails_the_sample(make_config, batch_size):
    # no budget: only the stop signal (what close() sends first) can end these early
    cfg = make_config(*TINY, f"backend.batch_size={batch_size}", "backend.timeout_s=null")
    backend = LlamaCppBackend(cfg.backend)
    identity = backend.add_model("smollm2-135m", cfg.models["smollm2-135m"])
    requests = [BackendRequest(identity, (("user", "Count from one to fifty."),),
                               SamplingParams(0.0, 24, seed=0), i) for i in range(2)]
    backend.stop()
    try:
        completions = asyncio.run(backend.generate(requests))
    finally:
        backend.close()
    for completion in completions:
        assert completion.failed
        assert completion.finish_reason.startswith("error: stopped")
        assert completion.completion_tokens <= 1 < 24
