"""SGLang's native /generate endpoint, as SGLang 0.5.x speaks it.

The requests of one generate call go out as ONE batched /generate request (a list of prompts
with a list of sampling parameters, one seed each), as SGLang's documentation recommends
over `n > 1`: the prompts of the n executions of a plan are identical, so RadixAttention
computes their prefix once. The chat template is applied here (the native endpoint takes raw
text): from the model's `chat_template` (a Jinja string) or its Hugging Face tokenizer. The
model's `extra_body` goes into every request's sampling parameters (top_k, min_p, ...).

What the real server does, and what this backend does about it:
- the seed is `sampling_params.sampling_seed`, known from 0.5.3rc2 on (older servers answer
  500) and honoured only by a server started with --enable-deterministic-inference, else
  dropped without a word. Before the first generation the server's /server_info is read: a
  server too old is refused, and a non-deterministic one too unless the model says
  `deterministic: false` (then its samples are keyed apart and the run records so);
- a body that breaks SGLang's contract (an unknown sampling key, a wrong type) is answered
  400 with the schema's text, which no other request escapes: the run stops with it;
- a batch is answered with a list of {text, meta_info}; `finish_reason` is
  {"type": "stop" | "length" | "abort", ...}: an aborted sample is a failed sample (never
  cached), and a sample with a null logprob has no perplexity (it abstains);
- `cached_tokens` is always in meta_info; /health answers 503 while the server starts.
HTTP goes through one aiohttp session per event loop, as for backend=openai.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import aiohttp
import httpx
from omegaconf import DictConfig, OmegaConf
from packaging.version import InvalidVersion, Version

from cope.backends.base import Backend, OnComplete, failed_completion
from cope.backends.openai_compat import FATAL_STATUSES, RETRY_STATUSES
from cope.errors import BackendError, ConfigError, RequestFailed
from cope.samples import BackendRequest, Completion, messages_to_dicts
from cope.servers import SGLANG_DETERMINISTIC_FLAG

log = logging.getLogger(__name__)


# sampling_params.sampling_seed first appeared in 0.5.3rc2; the contract tests use this one
MIN_VERSION = "0.5.3rc2"
TESTED_VERSION = "0.5.23"


@dataclass
class SGLangModel:
    alias: str
    base_url: str  # the server root (no /v1)
    render: Any  # messages -> prompt text
    extra: dict[str, Any]  # extra sampling parameters (the model's extra_body)
    facts: dict[str, Any]  # what the server said about itself; recorded in metrics.json
    # logprobs of the unscaled distribution: known for a server cope started with
    # SGLANG_RETURN_ORIGINAL_LOGPROB=1, not for another
    original_logprobs: bool = False
    warned: bool = False


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


def sampling_params(request: BackendRequest, extra: dict[str, Any]) -> dict[str, Any]:
    params = request.params
    out = {**extra, "temperature": params.temperature, "top_p": params.top_p,
           "max_new_tokens": params.max_tokens, "sampling_seed": params.seed}
    if params.stop:
        out["stop"] = list(params.stop)
    return out


def split_generate_response(data: Any, n_prompts: int) -> list[dict[str, Any]]:
    """One {text, meta_info} item per prompt: a batch is answered with a list."""
    if not isinstance(data, list):
        raise ValueError(f"a batch was answered with a {type(data).__name__}, not a list")
    if len(data) != n_prompts:
        raise ValueError(f"{len(data)} results for {n_prompts} prompts")
    return data


def parse_generate_item(item: dict[str, Any], latency: float) -> Completion:
    meta = item.get("meta_info") or {}
    text = item["text"]
    if not isinstance(text, str):
        raise ValueError("text is not a string")
    finish = meta.get("finish_reason")
    reason = finish.get("type", "stop") if isinstance(finish, dict) else (finish or "stop")
    if reason == "abort":
        why = finish.get("message") if isinstance(finish, dict) else None
        return failed_completion(f"aborted by the server: {why or 'no reason'}")
    logprobs = meta.get("output_token_logprobs")
    # a null logprob is one the server could not write (-inf or NaN reach JSON as null):
    # such a sample cannot be scored, and abstains from a perplexity choice
    scored = None if not logprobs or any(e[0] is None for e in logprobs) else tuple(
        float(e[0]) for e in logprobs)
    return Completion(
        text=text,
        prompt_tokens=int(meta.get("prompt_tokens", 0)),
        completion_tokens=int(meta.get("completion_tokens", 0)),
        finish_reason=str(reason),
        latency_s=latency,
        token_logprobs=scored,
        cached_tokens=meta.get("cached_tokens"),
    )


def parse_version(text: str):

    try:
        return Version(text)
    except InvalidVersion:
        return None


def check_server(alias: str, base_url: str, info: dict[str, Any], deterministic: bool
                 ) -> dict[str, Any]:
    """What the run records about a server, or a ConfigError when its seeds would not work."""
    version = str(info.get("version") or "")
    parsed = parse_version(version)
    if parsed is None or parsed < parse_version(MIN_VERSION):
        raise ConfigError(
            f"Model '{alias}': the SGLang server at {base_url} is version {version or 'unknown'}; "
            f"cope sends per-sample seeds (sampling_params.sampling_seed), which SGLang knows "
            f"from {MIN_VERSION} on. Upgrade it (pip install sglang=={TESTED_VERSION}).")
    # the Python server's /server_info is its resolved arguments, flat, this flag among them
    honoured = info.get("enable_deterministic_inference")
    if honoured is None:
        log.warning("Model '%s': the SGLang server at %s does not say whether it runs with %s; "
                    "unless it does, its samples do not reproduce.", alias, base_url,
                    SGLANG_DETERMINISTIC_FLAG)
    elif deterministic and not honoured:
        raise ConfigError(
            f"Model '{alias}': the SGLang server at {base_url} runs without "
            f"{SGLANG_DETERMINISTIC_FLAG}, so it drops every seed and its samples do not "
            f"reproduce. Restart it with {SGLANG_DETERMINISTIC_FLAG}, or set "
            f"models.{alias}.deterministic=false to accept samples that do not reproduce "
            "(they are keyed apart in the cache).")
    return {"engine": "sglang", "version": version,
            "deterministic": None if honoured is None else bool(honoured)}


def contract_violation(body: bytes) -> bool:
    """Whether a 400 is SGLang's contract check (`{"error": "<the schema's text>"}`), which
    every request of the same shape meets, rather than one request's own problem
    (`{"error": {"message": ...}}`, a prompt too long)."""
    try:
        return isinstance(json.loads(body).get("error"), str)
    except (ValueError, AttributeError):
        return False


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
        deterministic = bool(getattr(model_cfg, "deterministic", True))
        facts = {"engine": "sglang", "checked": False}
        server = getattr(model_cfg, "server", None)
        if isinstance(server, dict):  # the config of a server the run started
            server = SimpleNamespace(**server)
        if self.cfg.check_endpoints:
            wait_s = float(getattr(server, "startup_timeout_s", None) or 600.0)
            info = self._server_info(alias, base_url, wait_s)
            facts = {**check_server(alias, base_url, info, deterministic), "checked": True}
        elif deterministic:
            log.warning("Model '%s': http.check_endpoints=false, so cope cannot see whether the "
                        "SGLang server at %s honours seeds (%s).", alias, base_url,
                        SGLANG_DETERMINISTIC_FLAG)
        identity = f"{model_cfg.identity}@sglang"
        extra = dict(getattr(model_cfg, "extra_body", None) or {})
        managed = getattr(server, "kind", None) == "sglang"
        self._models[identity] = SGLangModel(alias, base_url, chat_renderer(alias, model_cfg),
                                             extra, facts, original_logprobs=managed)
        return identity

    def server_facts(self, identity: str) -> dict[str, Any]:
        return dict(self._models[identity].facts)

    @staticmethod
    def _server_info(alias: str, base_url: str, wait_s: float) -> dict[str, Any]:
        """/server_info once /health says the server has started (503 until then)."""
        deadline = time.monotonic() + wait_s
        while True:
            try:
                status = httpx.get(f"{base_url}/health", timeout=10.0).status_code
            except httpx.HTTPError as exc:
                raise ConfigError(f"Model '{alias}': cannot reach SGLang at {base_url} "
                                  f"({type(exc).__name__}).") from None
            if status == 200:
                break
            if status != 503 or time.monotonic() > deadline:
                raise ConfigError(f"Model '{alias}': {base_url}/health answered HTTP {status}"
                                  + (f" for {wait_s:.0f} s" if status == 503 else "") + ".")
            time.sleep(1.0)
        for route in ("/server_info", "/get_server_info"):  # the second: servers before 0.5.23
            try:
                response = httpx.get(f"{base_url}{route}", timeout=30.0)
            except httpx.HTTPError as exc:
                raise ConfigError(f"Model '{alias}': {base_url}{route}: "
                                  f"{type(exc).__name__}.") from None
            if response.status_code == 404:
                continue
            try:
                info = response.json()
            except ValueError:
                info = None
            if response.status_code != 200 or not isinstance(info, dict):
                break
            return info
        raise ConfigError(f"Model '{alias}': {base_url} does not say which SGLang it runs "
                          "(/server_info); is it an SGLang server?")

    def _client(self) -> aiohttp.ClientSession:
        # created lazily, inside the event loop that uses it
        if self._session is None:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self.cfg.timeout_s,
                                              connect=min(10.0, self.cfg.timeout_s)),
                connector=aiohttp.TCPConnector(limit=self.cfg.concurrency))
        return self._session

    async def _post(self, model: SGLangModel, payload: dict[str, Any]) -> tuple[Any, float]:
        base_url = model.base_url
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
                text = body[:600].decode("utf-8", errors="replace")
                message = (f"Model '{model.alias}': {base_url}/generate answered HTTP {status}: "
                           f"{text}")
                if status in FATAL_STATUSES or (status == 400 and contract_violation(body)):
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
                "sampling_params": [sampling_params(r, model.extra) for r in chosen],
            }
            if any(r.want_logprobs for r in chosen):
                payload["return_logprob"] = True
                self._warn_scaled_logprobs(model, chosen)
            for attempt in range(self.cfg.max_retries + 1):
                try:
                    data, latency = await self._post(model, payload)
                except RequestFailed as exc:  # every prompt of the batch is recorded as failed
                    completions = [failed_completion(str(exc)) for _ in chosen]
                    break
                try:
                    items = split_generate_response(data, len(chosen))
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

    @staticmethod
    def _warn_scaled_logprobs(model: SGLangModel, chosen: Sequence[BackendRequest]) -> None:
        if model.original_logprobs or model.warned:
            return
        if any(r.params.temperature not in (0.0, 1.0) for r in chosen):
            model.warned = True
            log.warning("Model '%s': perplexity is read from logprobs at temperature %s; unless "
                        "the SGLang server at %s runs with SGLANG_RETURN_ORIGINAL_LOGPROB=1 they "
                        "are of the temperature-scaled distribution (cope sets it on servers it "
                        "starts).", model.alias, chosen[0].params.temperature, model.base_url)

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def close(self) -> None:
        # a session belongs to the loop that made it; when that loop is gone, drop it
        self._session = None
