"""What cope sends to SGLang's /generate and what the stub answers, checked against SGLang
0.5.23's own contract module (sglang/api/v1/api_types.py from its wheel, see
cope.testing.sglang_contract), never against a copy of the schema."""

import asyncio
import itertools

import httpx
import pytest
from omegaconf import OmegaConf

from cope.backends.sglang_native import SGLangBackend
from cope.samples import BackendRequest, SamplingParams
from cope.testing import StubServer

CHATML = ("{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}"
          "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
HTTP = OmegaConf.create({"concurrency": 4, "timeout_s": 5.0, "max_retries": 2, "retry_base_s": 0.01,
                         "retry_max_s": 0.05, "check_endpoints": True})
MESSAGES = (("system", "Solve it."), ("user", "What is 2+2? Say it and stop."))

# every shape of body cope sends: one prompt or a batch, logprobs or not, stops or not,
# greedy or sampled, the model's extra sampling fields or none, a length cut or not
SHAPES = list(itertools.product([1, 8], [False, True], [(), ("Therefore",)], [0.0, 0.7],
                                [{}, {"top_k": 20, "min_p": 0.05}], [3, 256]))


def send(stub, n, logprobs, stop, temperature, extra, max_tokens):
    backend = SGLangBackend(HTTP)
    identity = backend.add_model("small", OmegaConf.create({
        "identity": "hf:Qwen/Qwen2.5-1.5B-Instruct", "base_url": stub.base_url,
        "chat_template": CHATML, "extra_body": extra}))
    requests = [BackendRequest(identity, MESSAGES, SamplingParams(temperature, max_tokens, 0.95, 7 + i,
                                                                  stop), i, want_logprobs=logprobs)
                for i in range(n)]

    async def go():
        try:
            return await backend.generate(requests)
        finally:
            await backend.aclose()

    return requests, asyncio.run(go())


@pytest.fixture(scope="module")
def exchanges(sglang_api):
    """(requests, completions, body sent, body answered) for every shape."""
    out = []
    with StubServer() as stub:
        for shape in SHAPES:
            requests, completions = send(stub, *shape)
            out.append((shape, requests, completions, stub.generate_payloads[-1],
                        stub.generate_responses[-1]))
    return out


@pytest.mark.parametrize("index", range(len(SHAPES)))
def test_every_body_cope_sends_meets_the_contract_and_says_what_cope_meant(sglang_api, exchanges,
                                                                          index):
    (n, logprobs, stop, temperature, extra, max_tokens), requests, _, body, _ = exchanges[index]
    decoded = sglang_api.GenerateRequest.from_json_value(body)  # raises on any violation
    assert len(decoded.text) == len(decoded.sampling_params) == n
    assert decoded.return_logprob is (True if logprobs else None)
    for request, params in zip(requests, decoded.sampling_params):
        assert params.sampling_seed == request.params.seed
        assert params.temperature == temperature and params.top_p == 0.95
        assert params.max_new_tokens == max_tokens
        assert params.stop == (list(stop) or None)
        assert (params.top_k, params.min_p) == ((20, 0.05) if extra else (1073741824, 0.0))


@pytest.mark.parametrize("index", range(len(SHAPES)))
def test_every_answer_of_the_stub_meets_the_contract_and_parses_to_what_it_says(sglang_api,
                                                                               exchanges, index):
    (n, logprobs, stop, _, _, max_tokens), _, completions, _, answer = exchanges[index]
    assert isinstance(answer, list) and len(answer) == n  # a batch is answered with a list
    for item, completion in zip(answer, completions):
        decoded = sglang_api.GenerateResponse.from_json_value(item)
        meta = decoded.meta_info
        finish = meta.finish_reason
        # typed, not the contract's fallback dict for a malformed reason
        assert isinstance(finish, (sglang_api.FinishStop, sglang_api.FinishLength))
        if isinstance(finish, sglang_api.FinishLength):
            assert finish.length == max_tokens == meta.completion_tokens
            assert completion.finish_reason == "length"
        else:
            assert finish.matched in (*stop, 151645) and completion.finish_reason == "stop"
        assert 0 <= meta.cached_tokens <= meta.prompt_tokens - 1
        assert completion.cached_tokens == meta.cached_tokens
        assert (completion.prompt_tokens, completion.completion_tokens) == (meta.prompt_tokens,
                                                                            meta.completion_tokens)
        assert completion.text == decoded.text
        if logprobs:
            assert [e.logprob for e in meta.output_token_logprobs] == list(completion.token_logprobs)
        else:
            assert meta.output_token_logprobs is None and completion.token_logprobs is None


def test_the_answers_exercise_both_finish_reasons_and_stop_strings(exchanges):
    reasons = {(item["meta_info"]["finish_reason"]["type"], type(item["meta_info"]["finish_reason"].get("matched")))
               for *_, answer in exchanges for item in answer}
    assert reasons == {("length", type(None)), ("stop", int), ("stop", str)}


def test_aborts_and_null_logprobs_meet_the_contract(sglang_api):
    with StubServer(fault_rate=1.0, faults=("abort",), null_logprob=True) as stub:
        _, completions = send(stub, 3, True, (), 0.7, {}, 64)
    answer = stub.generate_responses[-1]
    metas = [sglang_api.GenerateResponse.from_json_value(item).meta_info for item in answer]
    assert isinstance(metas[-1].finish_reason, sglang_api.FinishAbort)
    assert completions[-1].failed and "Abort before prefill" in completions[-1].finish_reason
    assert metas[0].output_token_logprobs[0].logprob is None
    assert not completions[0].failed and completions[0].token_logprobs is None


def test_the_server_info_meets_the_contract(sglang_api):
    with StubServer() as stub:
        root = stub.base_url.removesuffix("/v1")
        info = httpx.get(f"{root}/server_info").json()
        health = httpx.get(f"{root}/health")
    decoded = sglang_api.GetServerInfoResponse.from_json_value(info)
    assert decoded.version == "0.5.23" and info["enable_deterministic_inference"] is True
    assert health.status_code == 200 and health.content == b""


BAD_BODIES = [
    {"text": ["x"], "sampling_params": [{"top_kk": 5}]},  # an unknown sampling key
    {"text": ["x"], "sampling_params": [{"temperature": "hot"}]},  # a wrong type
    {"text": ["x"], "sampling_params": [{"sampling_seed": 1.5}]},  # a float seed
    {"text": ["x"], "sampling_params": [{"max_new_tokens": True}]},  # a bool is no integer
    {"text": 5},
    {"text": ["x"], "return_logprob": "yes"},
]


@pytest.mark.parametrize("body", BAD_BODIES)
def test_the_stub_refuses_what_sglang_refuses_with_its_text(sglang_api, body):
    with pytest.raises(sglang_api.JsonContractError) as expected:
        sglang_api.GenerateRequest.from_json_value(body)
    with StubServer() as stub:
        response = httpx.post(f"{stub.base_url.removesuffix('/v1')}/generate", json=body)
    assert response.status_code == 400
    assert response.json() == {"error": str(expected.value)}
