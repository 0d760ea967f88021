"""SGLang's native /generate endpoint.

The requests of one generate call go out as ONE batched /generate request (a list of prompts
with a list of sampling parameters, one seed each), as SGLang's documentation recommends
over `n > 1`: the prompts of the n executions of a plan are identical, so RadixAttention
computes their prefix once. The chat template is applied here (SGLang's native endpoint
takes raw text): from the model's `chat_template` (a Jinja string) or its Hugging Face
tokenizer. `cached_tokens` (reported when the server runs with --enable-cache-report) and
per-token logprobs are kept.

The per-request seed goes in `sampling_params.sampling_seed`, the field SGLang's
SamplingParams defines (python/sglang/srt/sampling/sampling_params.py); older servers
without it ignore or reject the field. HTTP goes through one aiohttp session per event loop,
as for backend=openai.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import aiohttp
import httpx
from omegaconf import DictConfig, OmegaConf

from cope.backends.base import Backend, OnComplete, failed_completion
from cope.backends.openai_compat import FATAL_STATUSES, RETRY_STATUSES
from cope.errors import BackendError, ConfigError, RequestFailed
from cope.generation import BackendRequest, Completion, messages_to_dicts


@dataclass
class SGLangModel:
    base_url: str  # the server root (no /v1)
    render: Any  # messages -> prompt text


def chat_renderer(alias: str, model_cfg):
    """A function from messages to prompt text with the model's chat template."""
    template = getattr(model_cfg, "chat_template", None)
    if template:
        import jinja2

        compiled = jinja2.Environment(loader=jinja2.BaseLoader()).from_string(template)
        return lambda messages: compiled.render(messages=messages, add_generation_prompt=True,
                                                bos_token="", eos_token="")
    tokenizer_name = getattr(model_cfg, "tokenizer", None) or getattr(model_cfg, "api_model", None)
    if not tokenizer_name:
        raise ConfigError(f"Model '{alias}' on backend=sglang needs models.{alias}.chat_template "
                          f"or models.{alias}.tokenizer (a Hugging Face tokenizer).")
    try:
        from transformers import AutoTokenizer
    except ImportError:
        raise ConfigError(f"Model '{alias}': reading its chat template from the tokenizer "
                          "needs `pip install transformers`, or set chat_template.") from None
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_name)
    return lambda messages: tokenizer.apply_chat_template(messages, tokenize=False,
                                                          add_generation_prompt=True)


def sampling_params(request: BackendRequest) -> dict[str, Any]:
    params = request.params
    out = {"temperature": params.temperature, "top_p": params.top_p,
           "max_new_tokens": params.max_tokens, "sampling_seed": params.seed}
    if params.stop:
        out["stop"] = list(params.stop)
    return out


def split_generate_response(data: Any) -> list[dict[str, Any]]:
    """One {text, meta_info} item per prompt, from either shape /generate has returned for a
    batch: a list of items, or one item whose text and meta_info are parallel lists."""
    if isinstance(data, list):
        return data
    if isinstance(data, dict) and isinstance(data.get("text"), list):
        metas = data.get("meta_info")
        metas = metas if isinstance(metas, list) else [metas or {}] * len(data["text"])
        return [{"text": t, "meta_info": m} for t, m in zip(data["text"], metas)]
    if isinstance(data, dict) and "text" in data:
        return [data]
    raise ValueError("not a /generate response")


def parse_generate_item(item: dict[str, Any], latency: float) -> Completion:
    meta = item.get("meta_info") or {}
    text = item["text"]
    if not isinstance(text, str):
        raise ValueError("text is not a string")
    finish = meta.get("finish_reason")
    reason = finish.get("type", "stop") if isinstance(finish, dict) else (finish or "stop")
    logprobs = meta.get("output_token_logprobs")
    return Completion(
        text=text,
        prompt_tokens=int(meta.get("prompt_tokens", 0)),
        completion_tokens=int(meta.get("completion_tokens", 0)),
        finish_reason=str(reason),
        latency_s=latency,
        token_logprobs=tuple(float(entry[0]) for entry in logprobs) if logprobs else None,
        cached_tokens=meta.get("cached_tokens"),
    )


class SGLangBackend(Backend):
    name = "sglang"

    def __init__(self, http_cfg) -> None:
        if isinstance(http_cfg, DictConfig):  # plain attributes: read on every request
            http_cfg = SimpleNamespace(**OmegaConf.to_container(http_cfg, resolve=True))
        self.cfg = http_cfg
        self._models: dict[str, SGLangModel] = {}
        self._session: aiohttp.ClientSession | None = None
        self._semaphore = asyncio.Semaphore(http_cfg.concurrency)
        self.requests_sent = 0

    def add_model(self, alias: str, model_cfg) -> str:
        base_url = getattr(model_cfg, "base_url", None)
        if not base_url:
            raise ConfigError(f"Model '{alias}' on backend=sglang needs base_url (the server root, "
                              "e.g. http://127.0.0.1:30000).")
        base_url = base_url.rstrip("/").removesuffix("/v1")
        if self.cfg.check_endpoints:
            try:
                httpx.get(f"{base_url}/health", timeout=10.0)
            except httpx.HTTPError as exc:
                raise ConfigError(f"Model '{alias}': cannot reach SGLang at {base_url} "
                                  f"({type(exc).__name__}).") from None
        identity = f"{model_cfg.identity}@sglang"
        self._models[identity] = SGLangModel(base_url, chat_renderer(alias, model_cfg))
        return identity

    def _client(self) -> aiohttp.ClientSession:
        # created lazily, inside the event loop that uses it
        if self._session is None:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self.cfg.timeout_s,
                                              connect=min(10.0, self.cfg.timeout_s)),
                connector=aiohttp.TCPConnector(limit=self.cfg.concurrency))
        return self._session

    async def _post(self, base_url: str, payload: dict[str, Any]) -> tuple[Any, float]:
        problem = "no attempt"
        for attempt in range(self.cfg.max_retries + 1):
            if attempt:
                delay = min(self.cfg.retry_max_s, self.cfg.retry_base_s * 2 ** (attempt - 1))
                await asyncio.sleep(delay * random.uniform(0.5, 1.5))
            async with self._semaphore:
                start = time.perf_counter()
                try:
                    self.requests_sent += 1
                    async with self._client().post(f"{base_url}/generate",
                                                   json=payload) as response:
                        status = response.status
                        body = await response.read()
                except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
                    problem = type(exc).__name__
                    continue
            if status in RETRY_STATUSES:
                problem = f"HTTP {status}"
                continue
            if status >= 400:
                message = (f"{base_url}/generate answered HTTP {status}: "
                           f"{body[:300].decode('utf-8', errors='replace')}")
                if status in FATAL_STATUSES:
                    raise BackendError(message)
                raise RequestFailed(message)
            try:
                return json.loads(body), time.perf_counter() - start
            except ValueError:
                problem = "unreadable response"
        raise RequestFailed(f"{base_url}/generate failed {self.cfg.max_retries + 1} times; "
                            f"last: {problem}.")

    async def generate(
        self, requests: Sequence[BackendRequest], on_complete: OnComplete | None = None
    ) -> list[Completion]:
        by_model: dict[str, list[int]] = {}
        for i, request in enumerate(requests):
            by_model.setdefault(request.model_identity, []).append(i)
        results: list[Completion | None] = [None] * len(requests)

        async def batch(identity: str, positions: list[int]) -> None:
            model = self._models[identity]
            chosen = [requests[i] for i in positions]
            payload = {
                "text": [model.render(messages_to_dicts(r.messages)) for r in chosen],
                "sampling_params": [sampling_params(r) for r in chosen],
            }
            if any(r.want_logprobs for r in chosen):
                payload["return_logprob"] = True
            for attempt in range(self.cfg.max_retries + 1):
                try:
                    data, latency = await self._post(model.base_url, payload)
                except RequestFailed as exc:  # every prompt of the batch is recorded as failed
                    completions = [failed_completion(str(exc)) for _ in chosen]
                    break
                try:
                    items = split_generate_response(data)
                    if len(items) != len(chosen):
                        raise ValueError(f"{len(items)} results for {len(chosen)} prompts")
                    completions = [parse_generate_item(item, latency) for item in items]
                    break
                except (ValueError, KeyError, TypeError, IndexError) as exc:
                    if attempt == self.cfg.max_retries:
                        completions = [failed_completion(f"{model.base_url}/generate: malformed "
                                                         f"response ({exc})") for _ in chosen]
            for i, completion in zip(positions, completions):
                results[i] = completion
                if on_complete is not None:
                    on_complete(i, completion)

        await asyncio.gather(*(batch(k, v) for k, v in by_model.items()))
        return results  # type: ignore[return-value]

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def close(self) -> None:
        # a session belongs to the loop that made it; when that loop is gone, drop it
        self._session = None
