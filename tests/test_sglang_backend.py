"""backend=sglang (native /generate) against the stub that speaks SGLang's wire format."""

import asyncio

import pytest
from omegaconf import OmegaConf

from cope.backends.sglang_native import SGLangBackend, split_generate_response
from cope.generation import BackendRequest, SamplingParams
from cope.runner import run
from cope.testing import StubServer

CHATML = ("{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}"
          "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
HTTP = OmegaConf.create({"concurrency": 8, "timeout_s": 5.0, "max_retries": 6, "retry_base_s": 0.01,
                         "retry_max_s": 0.05, "check_endpoints": True})


def model_cfg(stub):
    return OmegaConf.create({"identity": "hf:Qwen/Qwen2.5-1.5B-Instruct", "base_url": stub.base_url,
                             "chat_template": CHATML})


@pytest.mark.parametrize("shape", ["list", "parallel"])
def test_one_batched_request_for_the_executions_of_a_plan(shape):
    with StubServer(sglang_shape=shape) as stub:
        backend = SGLangBackend(HTTP)
        identity = backend.add_model("qwen1.5b", model_cfg(stub))
        messages = (("system", "Solve it."), ("user", "Problem: 2+2? Plan: add."))
        requests = [BackendRequest(identity, messages, SamplingParams(0.8, 64, seed=100 + i), i,
                                   want_logprobs=True) for i in range(8)]
        done = []

        async def go():
            try:
                return await backend.generate(requests, on_complete=lambda i, c: done.append(i))
            finally:
                await backend.aclose()

        completions = asyncio.run(go())
    assert len(stub.generate_payloads) == 1  # one request carries all 8 prompts
    payload = stub.generate_payloads[0]
    assert len(payload["text"]) == 8 and len(set(payload["text"])) == 1
    assert payload["text"][0].endswith("<|im_start|>assistant\n")
    assert [p["sampling_seed"] for p in payload["sampling_params"]] == [100 + i for i in range(8)]
    assert all(p["max_new_tokens"] == 64 for p in payload["sampling_params"])
    assert sorted(done) == list(range(8))
    # the first prompt is new; the other seven find its prefix cached
    assert completions[0].cached_tokens == 0
    assert all(c.cached_tokens == c.prompt_tokens for c in completions[1:])
    assert all(c.token_logprobs and len(c.token_logprobs) == c.completion_tokens for c in completions)


def test_both_response_shapes_parse_alike():
    items = [{"text": "a", "meta_info": {"prompt_tokens": 3}}, {"text": "b", "meta_info": {"prompt_tokens": 4}}]
    parallel = {"text": ["a", "b"], "meta_info": [{"prompt_tokens": 3}, {"prompt_tokens": 4}]}
    assert split_generate_response(items) == split_generate_response(parallel) == items
    with pytest.raises(ValueError):
        split_generate_response({"error": "x"})


def test_cope_with_the_small_model_on_sglang_survives_faults(make_config, tmp_path):
    def config(stub, name):
        cfg = make_config("task.limit=3", "method.votes=4", "backend.name=scripted",
                          "http.retry_base_s=0.01", "http.retry_max_s=0.05", "http.timeout_s=1",
                          "http.max_retries=12", f"run_dir={tmp_path / name}",
                          f"cache.path={tmp_path / (name + '.sqlite')}")
        small = cfg.models["qwen-coder-0.5b"]
        small.backend, small.base_url, small.chat_template = "sglang", stub.base_url, CHATML
        return cfg

    with StubServer() as clean:
        reference = run(config(clean, "clean"))
    with StubServer(fault_rate=0.4, stall_s=2.0, seed=5) as faulty:
        result = run(config(faulty, "faulty"))
    assert sum(faulty.counts[f] for f in ("429", "500", "stall", "truncate")) > 0
    assert (result.run_dir / "problems.jsonl").read_bytes() == (reference.run_dir / "problems.jsonl").read_bytes()
    assert result.metrics["calls_by_role"]["small"] > 0
