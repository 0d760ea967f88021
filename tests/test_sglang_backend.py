"""backend=sglang (native /generate) against the stub that speaks SGLang 0.5.23 as it is:
batching, seeds, the server checks before the first generation, aborts, null logprobs."""

import asyncio
import json
import logging

import httpx
import pytest
from omegaconf import OmegaConf

from cope.backends.sglang_native import SGLangBackend, split_generate_response
from cope.errors import BackendError, ConfigError
from cope.runner import run
from cope.samples import BackendRequest, SamplingParams
from cope.testing import StubServer

pytestmark = pytest.mark.usefixtures("sglang_api")

CHATML = ("{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}"
          "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
HTTP = OmegaConf.create({"concurrency": 8, "timeout_s": 5.0, "max_retries": 6, "retry_base_s": 0.01,
                         "retry_max_s": 0.05, "check_endpoints": True})
MESSAGES = (("system", "Solve it."), ("user", "Problem: 2+2? Plan: add."))


def model_cfg(stub, **fields):
    return OmegaConf.create({"identity": "hf:Qwen/Qwen2.5-1.5B-Instruct", "base_url": stub.base_url,
                             "chat_template": CHATML, **fields})


def generate(backend, requests, **kwargs):
    async def go():
        try:
            return await backend.generate(requests, **kwargs)
        finally:
            await backend.aclose()

    return asyncio.run(go())


def requests_for(identity, n=8, max_tokens=64, logprobs=True, temperature=0.8):
    return [BackendRequest(identity, MESSAGES, SamplingParams(temperature, max_tokens, seed=100 + i), i,
                           want_logprobs=logprobs) for i in range(n)]


def test_one_batched_request_for_the_executions_of_a_plan():
    with StubServer() as stub:
        backend = SGLangBackend(HTTP)
        identity = backend.add_model("qwen1_5b", model_cfg(stub))
        done = []
        completions = generate(backend, requests_for(identity), on_complete=lambda i, c: done.append(i))
    assert len(stub.generate_payloads) == 1  # one request carries all 8 prompts
    payload = stub.generate_payloads[0]
    assert len(payload["text"]) == 8 and len(set(payload["text"])) == 1
    assert payload["text"][0].endswith("<|im_start|>assistant\n")
    assert [p["sampling_seed"] for p in payload["sampling_params"]] == [100 + i for i in range(8)]
    assert all(p["max_new_tokens"] == 64 for p in payload["sampling_params"])
    assert sorted(done) == list(range(8))
    # the first prompt is new; the other seven find its prefix cached, all but the last token
    assert completions[0].cached_tokens == 0
    assert all(c.cached_tokens == c.prompt_tokens - 1 for c in completions[1:])
    assert all(c.token_logprobs and len(c.token_logprobs) == c.completion_tokens for c in completions)
    assert backend.server_facts(identity) == {"engine": "sglang", "version": "0.5.23",
                                              "deterministic": True, "checked": True}


def test_a_batch_is_answered_with_a_list_and_nothing_else():
    items = [{"text": "a", "meta_info": {"prompt_tokens": 3}}, {"text": "b", "meta_info": {}}]
    assert split_generate_response(items, 2) == items
    parallel = {"text": ["a", "b"], "meta_info": [{"prompt_tokens": 3}, {}]}  # no version answers so
    for wrong, n in ((parallel, 2), ({"error": "x"}, 1), (items, 3)):
        with pytest.raises(ValueError):
            split_generate_response(wrong, n)


def test_max_new_tokens_ends_a_sample_with_length():
    with StubServer() as stub:
        backend = SGLangBackend(HTTP)
        identity = backend.add_model("qwen1_5b", model_cfg(stub))
        completions = generate(backend, requests_for(identity, n=2, max_tokens=3))
    assert all(c.finish_reason == "length" and c.completion_tokens == 3 for c in completions)
    assert all(len(c.text.split()) == 3 for c in completions)
    meta = stub.generate_responses[0][0]["meta_info"]
    assert meta["finish_reason"] == {"type": "length", "length": 3}


def key(sample):
    return sample["problem_id"], sample["stage"], sample["role"], sample["sample_index"]


def test_an_aborted_sample_is_a_failed_sample_and_is_not_cached(make_config, tmp_path):
    def config(stub, name):
        cfg = make_config("task.limit=2", "method.votes=2", "method.tau1=1.0", "method.tau2=1.0",
                          "backend.name=scripted", "http.retry_base_s=0.01",
                          f"run_dir={tmp_path / name}")
        small = cfg.models[cfg.pair.roles.small]
        small.backend, small.base_url, small.chat_template = "sglang", stub.base_url, CHATML
        return cfg

    with StubServer(fault_rate=1.0, faults=("abort",)) as stub:
        first = run(config(stub, 'first'))
    samples = [json.loads(line) for line in (first.run_dir / "samples.jsonl").read_text().splitlines()]
    aborted = [s for s in samples if s["finish_reason"].startswith("error: aborted by the server")]
    assert aborted and all(s["text"] == "" for s in aborted)
    assert first.metrics["failed_samples"] == len(aborted)
    with StubServer() as stub:  # a second run asks again for every aborted sample
        second = run(config(stub, "second"))
    again = {key(s): s for s in map(json.loads, (second.run_dir / "samples.jsonl").read_text().splitlines())}
    assert all(again[key(s)]["cache_hit"] is False for s in aborted)
    assert sum(not s["cache_hit"] for s in again.values()) == sum(len(p["text"]) for p in stub.generate_payloads)
    assert second.metrics["failed_samples"] == 0


def test_a_sample_with_a_null_logprob_has_no_perplexity():
    """-inf and NaN reach JSON as null: the sample cannot be scored, so it abstains."""
    with StubServer(null_logprob=True) as stub:
        backend = SGLangBackend(HTTP)
        identity = backend.add_model("qwen1_5b", model_cfg(stub))
        completion, = generate(backend, requests_for(identity, n=1))
    assert completion.completion_tokens > 1 and not completion.failed
    assert completion.token_logprobs is None


def test_a_server_too_old_for_seeds_is_refused_before_any_generation():
    with StubServer(sglang_version="0.5.2") as stub:
        with pytest.raises(ConfigError) as info:
            SGLangBackend(HTTP).add_model("qwen1_5b", model_cfg(stub))
        old_reply = stub.check_generate({"text": ["x"], "sampling_params": [{"sampling_seed": 1}]})
    message = str(info.value)
    assert "version 0.5.2" in message and "0.5.3rc2" in message and "sglang==0.5.23" in message
    assert stub.counts["generate"] == 0
    assert old_reply[0] == 500  # what it would have answered: why the check comes first


def test_a_server_that_drops_seeds_is_refused_unless_the_model_accepts_it(caplog):
    with StubServer(deterministic=False) as stub:
        with pytest.raises(ConfigError) as info:
            SGLangBackend(HTTP).add_model("qwen1_5b", model_cfg(stub))
        assert "--enable-deterministic-inference" in str(info.value)
        assert "models.qwen1_5b.deterministic=false" in str(info.value)
        backend = SGLangBackend(HTTP)
        identity = backend.add_model("qwen1_5b", model_cfg(stub, deterministic=False))
        first = generate(backend, requests_for(identity, n=4))
        backend = SGLangBackend(HTTP)
        identity = backend.add_model("qwen1_5b", model_cfg(stub, deterministic=False))
        again = generate(backend, requests_for(identity, n=4))
    assert backend.server_facts(identity)["deterministic"] is False
    assert [c.text for c in first] != [c.text for c in again]  # the seeds did nothing


def test_a_starting_server_is_waited_for(caplog):
    with StubServer(health_warmup=2) as stub:
        backend = SGLangBackend(HTTP)
        backend.add_model("qwen1_5b", model_cfg(stub))
    assert stub.counts["health"] == 3  # 503, 503, then 200


def test_a_contract_violation_stops_the_run_with_the_server_message(make_config):
    with StubServer() as stub:
        cfg = make_config("task.limit=1", "method.votes=2", "backend.name=scripted")
        alias = cfg.pair.roles.small
        small = cfg.models[alias]
        small.backend, small.base_url, small.chat_template = "sglang", stub.base_url, CHATML
        small.extra_body = {"top_kk": 5}
        with pytest.raises(BackendError) as info:
            run(cfg)
    message = str(info.value)
    assert f"Model '{alias}'" in message and f"{stub.base_url.removesuffix('/v1')}/generate" in message
    assert "HTTP 400" in message and "unknown field `top_kk`" in message
    assert stub.counts["refused"] == 1 and stub.counts["generate"] == 0  # refused once, not retried


def test_perplexity_at_a_scaled_temperature_warns_about_an_unmanaged_server(caplog):
    with StubServer() as stub:
        backend = SGLangBackend(HTTP)
        identity = backend.add_model("qwen1_5b", model_cfg(stub))
        with caplog.at_level(logging.WARNING, logger="cope.backends.sglang_native"):
            generate(backend, requests_for(identity, n=2, temperature=0.7))
            generate(backend, requests_for(identity, n=2, temperature=0.7))
    warnings = [r for r in caplog.records if "SGLANG_RETURN_ORIGINAL_LOGPROB=1" in r.getMessage()]
    assert len(warnings) == 1


def test_cope_with_the_small_model_on_sglang_survives_faults(make_config, tmp_path):
    def config(stub, name):
        cfg = make_config("task.limit=3", "method.votes=4", "backend.name=scripted",
                          "http.retry_base_s=0.01", "http.retry_max_s=0.05", "http.timeout_s=1",
                          "http.max_retries=12", f"run_dir={tmp_path / name}",
                          f"cache.path={tmp_path / (name + '.sqlite')}")
        small = cfg.models[cfg.pair.roles.small]
        small.backend, small.base_url, small.chat_template = "sglang", stub.base_url, CHATML
        return cfg

    with StubServer() as clean:
        reference = run(config(clean, "clean"))
    with StubServer(fault_rate=0.4, stall_s=2.0, seed=5) as faulty:
        result = run(config(faulty, "faulty"))
    assert sum(faulty.counts[f] for f in ("429", "500", "stall", "truncate")) > 0
    assert (result.run_dir / "problems.jsonl").read_bytes() == (reference.run_dir / "problems.jsonl").read_bytes()
    assert result.metrics["calls_by_role"]["small"] > 0
    small = reference.metrics["roles"]["small"]
    assert reference.metrics["serving"] == {small: {"engine": "sglang", "version": "0.5.23",
                                                    "deterministic": True, "checked": True}}


@pytest.mark.parametrize("deterministic", [True, False])
def test_a_managed_sglang_server_is_started_deterministic_with_original_logprobs(
        make_config, tmp_path, monkeypatch, deterministic):
    """The run starts `python -m sglang.launch_server` (here a stand-in serving the stub, since
    SGLang needs a GPU), waits out its 503s, checks it, records it and stops it."""
    from conftest import ROOT

    record = tmp_path / "launch.json"
    monkeypatch.setenv("PYTHONPATH", f"{ROOT / 'tests' / 'fake_sglang'}:{ROOT}")
    monkeypatch.setenv("FAKE_SGLANG_RECORD", str(record))
    cfg = make_config("task.limit=1", "method.votes=2", "backend.name=scripted")
    alias = cfg.pair.roles.small
    small = cfg.models[alias]
    small.backend, small.chat_template, small.deterministic = "sglang", CHATML, deterministic
    small.server.kind, small.server.model_path = "sglang", "Qwen/Qwen2.5-1.5B-Instruct"
    small.server.args, small.server.startup_timeout_s = ["--mem-fraction-static", "0.7"], 60
    result = run(cfg)
    launched = json.loads(record.read_text())
    assert launched["args"]["enable_deterministic_inference"] is deterministic
    assert launched["rest"] == ["--mem-fraction-static", "0.7"]
    assert launched["SGLANG_RETURN_ORIGINAL_LOGPROB"] == "1"
    assert result.metrics["serving"][alias] == {
        "engine": "sglang", "version": "0.5.23", "deterministic": deterministic, "checked": True,
        "managed": True, "kind": "sglang", "original_logprobs": True,
        "port": launched["args"]["port"]}
    port = launched["args"]["port"]
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"http://127.0.0.1:{port}/health", timeout=2)


def test_a_server_that_does_not_say_whether_it_is_deterministic_is_named_in_a_warning(caplog):
    with StubServer() as stub:
        stub.server_info = lambda route: (200, {"version": "0.5.23"}, False)
        with caplog.at_level(logging.WARNING, logger="cope.backends.sglang_native"):
            backend = SGLangBackend(HTTP)
            identity = backend.add_model("qwen1_5b", model_cfg(stub))
    assert backend.server_facts(identity)["deterministic"] is None
    assert any("--enable-deterministic-inference" in r.getMessage() for r in caplog.records)


def test_vllm_flags_and_the_environment_of_another_interpreter(tmp_path, monkeypatch):
    from cope.servers import ManagedServer

    monkeypatch.setenv("PYTHONPATH", "/somewhere/cope/lives")
    plain = ManagedServer("m", "vllm", "/models/m", tmp_path / "log", python="/venv/bin/python")
    assert plain.command()[:3] == ["/venv/bin/python", "-m", "vllm.entrypoints.openai.api_server"]
    assert ["--logprobs-mode", "raw_logprobs"] == plain.command()[-2:]
    assert "PYTHONPATH" not in plain.environment()
    chosen = ManagedServer("m", "vllm", "/models/m", tmp_path / "log",
                           args=["--logprobs-mode=processed_logprobs"])
    assert chosen.command().count("raw_logprobs") == 0
    assert chosen.facts()["original_logprobs"] is False
    assert chosen.environment()["PYTHONPATH"] == "/somewhere/cope/lives"  # this interpreter
