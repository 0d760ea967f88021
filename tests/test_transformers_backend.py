"""backend=transformers with the tiny packaged model loaded from its GGUF file."""

import asyncio

import pytest
from omegaconf import OmegaConf

from cope.runner import run
from cope.samples import BackendRequest, SamplingParams

pytest.importorskip("transformers", reason="backend=transformers needs the transformers extra")
pytestmark = pytest.mark.integration

TINY = OmegaConf.create({"identity": "packaged:smollm2-135m", "packaged": "smollm2-135m",
                         "path": None, "hf_model": None})


@pytest.fixture(scope="module")
def backend():
    from cope.backends.transformers_hf import TransformersBackend

    b = TransformersBackend(OmegaConf.create({"device": "cpu", "dtype": "float32", "batch_size": 4}))
    identity = b.add_model("smollm2-135m", TINY)
    yield b, identity
    b.close()


def test_batched_greedy_equals_one_at_a_time_and_logprobs(backend):
    b, identity = backend
    prompts = [(("user", "Name three colours."),), (("user", "What is two plus two? Answer briefly."),),
               (("system", "Be brief."), ("user", "Say hello."))]
    requests = [BackendRequest(identity, m, SamplingParams(0.0, 12), 0, want_logprobs=True)
                for m in prompts]
    batched = asyncio.run(b.generate(requests))
    alone = [asyncio.run(b.generate([r]))[0] for r in requests]
    assert [c.text for c in batched] == [c.text for c in alone]
    for c in batched:
        assert c.text and 0 < c.completion_tokens <= 12 and c.prompt_tokens > 5
        assert len(c.token_logprobs) == c.completion_tokens
        assert all(lp <= 0 for lp in c.token_logprobs)
    # left padding: prompts of different lengths have their own token counts
    assert len({c.prompt_tokens for c in batched}) > 1


def test_seeded_samples_reproduce(backend):
    b, identity = backend
    requests = [BackendRequest(identity, (("user", "Tell me a word."),), SamplingParams(1.0, 8, seed=s), s)
                for s in range(3)]
    first = asyncio.run(b.generate(requests))
    again = asyncio.run(b.generate(requests))
    assert [c.text for c in first] == [c.text for c in again]


def test_cope_on_transformers(make_config):
    result = run(make_config("pair=tiny-cpu", "backend.name=transformers", "task.limit=1",
                             "method.votes=2", "method.max_tokens=16", "method.plan_max_tokens=8",
                             "method.tau1=1.0", "method.tau2=1.0", "transformers.device=cpu"))
    m = result.metrics
    assert m["finished"] and m["resolved_by_stage"]["s3"] == 1
    assert m["backend_calls"] == (2 + 2) + (1 + 2) + 1
