"""Any OpenAI-compatible chat endpoint: OpenAI, SGLang's /v1, vLLM, llama.cpp's server.

Async HTTP (aiohttp: its connection pool stays fast with many requests queued) with, per
endpoint, a concurrency limit, optional requests- and tokens-per-minute
limits, and bounded retries with exponential backoff and jitter on 429, 5xx, timeouts,
dropped connections and unreadable bodies. The API key is read from the environment
variable the model names (`api_key_env`) and is only ever put in a request header.
"""

from __future__ import annotations

import asyncio
import os
import random
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from types import SimpleNamespace

import aiohttp
import httpx
import yarl
from omegaconf import DictConfig, OmegaConf

from cope import fast_json
from cope.backends.base import Backend, OnComplete, failed_completion
from cope.errors import BackendError, ConfigError
from cope.samples import BackendRequest, Completion, messages_to_dicts

RETRY_STATUSES = {408, 409, 425, 429, 500, 502, 503, 504}
# statuses that no other request will escape either (a bad key, an unknown model): they stop
# the run; any other 4xx concerns one request, which is recorded as failed
FATAL_STATUSES = {401, 403, 404}
JSON_BODY = {"Content-Type": "application/json"}


class RateLimiter:
    """Sliding one-minute windows over requests and tokens."""

    def __init__(self, requests_per_minute: int | None, tokens_per_minute: int | None) -> None:
        self.rpm = requests_per_minute
        self.tpm = tokens_per_minute
        self._requests: deque[float] = deque()
        self._tokens: deque[tuple[float, int]] = deque()
        self._lock = asyncio.Lock()

    async def acquire(self, tokens: int) -> None:
        if self.rpm is None and self.tpm is None:
            return
        async with self._lock:
            while True:
                now = time.monotonic()
                while self._requests and now - self._requests[0] >= 60:
                    self._requests.popleft()
                while self._tokens and now - self._tokens[0][0] >= 60:
                    self._tokens.popleft()
                waits = []
                if self.rpm is not None and len(self._requests) >= self.rpm:
                    waits.append(60 - (now - self._requests[0]))
                used = sum(t for _, t in self._tokens)
                if self.tpm is not None and self._tokens and used + tokens > self.tpm:
                    waits.append(60 - (now - self._tokens[0][0]))
                if not waits:
                    self._requests.append(now)
                    self._tokens.append((now, tokens))
                    return
                await asyncio.sleep(max(0.01, min(waits)))


@dataclass
class Endpoint:
    base_url: str
    api_key: str | None
    semaphore: asyncio.Semaphore
    limiter: RateLimiter
    session: aiohttp.ClientSession | None = None

    def __post_init__(self) -> None:
        # parsed once, not per request
        self.chat_url = yarl.URL(f"{self.base_url}/chat/completions")


@dataclass(frozen=True)
class ModelRoute:
    endpoint: Endpoint
    api_model: str
    extra_body: tuple[tuple[str, object], ...] = ()


class OpenAIBackend(Backend):
    name = "openai"

    def __init__(self, http_cfg) -> None:
        # plain attributes: an OmegaConf lookup on every request costs more than the request
        if isinstance(http_cfg, DictConfig):
            http_cfg = SimpleNamespace(**OmegaConf.to_container(http_cfg, resolve=True))
        self.cfg = http_cfg
        self._endpoints: dict[str, Endpoint] = {}
        self._routes: dict[str, ModelRoute] = {}
        self.requests_sent = 0
        self.retries = 0

    def add_model(self, alias: str, model_cfg) -> str:
        base_url = getattr(model_cfg, "base_url", None)
        if not base_url:
            raise ConfigError(
                f"Model '{alias}' uses backend=openai but has no base_url: set it to the "
                "endpoint's /v1 address (e.g. https://api.openai.com/v1 or http://host:30000/v1)."
            )
        key_env = getattr(model_cfg, "api_key_env", None)
        api_key = None
        if key_env:
            api_key = os.environ.get(key_env)
            if not api_key:
                raise ConfigError(
                    f"Model '{alias}' reads its API key from ${key_env}, which is not set."
                )
        base_url = base_url.rstrip("/")
        if base_url not in self._endpoints and self.cfg.check_endpoints:
            probe_endpoint(base_url, api_key, alias)
        if base_url not in self._endpoints:
            self._endpoints[base_url] = Endpoint(
                base_url=base_url,
                api_key=api_key,
                semaphore=asyncio.Semaphore(self.cfg.concurrency),
                limiter=RateLimiter(self.cfg.requests_per_minute, self.cfg.tokens_per_minute),
            )
        api_model = getattr(model_cfg, "api_model", None) or model_cfg.identity
        identity = f"{model_cfg.identity}@openai:{api_model}"
        extra = tuple(dict(getattr(model_cfg, "extra_body", None) or {}).items())
        self._routes[identity] = ModelRoute(self._endpoints[base_url], api_model, extra)
        return identity

    def _session(self, endpoint: Endpoint) -> aiohttp.ClientSession:
        # created lazily, inside the event loop that uses it
        if endpoint.session is None:
            headers = {"Authorization": f"Bearer {endpoint.api_key}"} if endpoint.api_key else {}
            endpoint.session = aiohttp.ClientSession(
                headers=headers,
                timeout=aiohttp.ClientTimeout(total=self.cfg.timeout_s,
                                              connect=min(10.0, self.cfg.timeout_s)),
                connector=aiohttp.TCPConnector(limit=self.cfg.concurrency),
            )
        return endpoint.session

    def _payload(self, request: BackendRequest, route: ModelRoute) -> dict:
        params = request.params
        payload = {
            **dict(route.extra_body),
            "model": route.api_model,
            "messages": messages_to_dicts(request.messages),
            "temperature": params.temperature,
            "top_p": params.top_p,
            "max_tokens": params.max_tokens,
            "seed": params.seed,
            "n": 1,
        }
        if params.stop:
            payload["stop"] = list(params.stop)
        if request.want_logprobs:
            payload["logprobs"] = True
        return payload

    async def _one(self, request: BackendRequest) -> Completion:
        route = self._routes.get(request.model_identity)
        if route is None:
            raise BackendError(f"openai backend has no model '{request.model_identity}'.")
        endpoint = route.endpoint
        body_out = fast_json.dumps(self._payload(request, route))  # encoded once for all tries
        limiter = endpoint.limiter
        limited = limiter.rpm is not None or limiter.tpm is not None
        estimate = (request.params.max_tokens + sum(len(c) // 3 for _, c in request.messages)
                    if limited else 0)
        last_problem = "no attempt"
        for attempt in range(self.cfg.max_retries + 1):
            if attempt:
                self.retries += 1
                delay = min(self.cfg.retry_max_s, self.cfg.retry_base_s * 2 ** (attempt - 1))
                await asyncio.sleep(delay * random.uniform(0.5, 1.5))
            if limited:  # no coroutine to await when there is no limit
                await limiter.acquire(estimate)
            async with endpoint.semaphore:
                start = time.perf_counter()
                try:
                    self.requests_sent += 1
                    async with self._session(endpoint).post(endpoint.chat_url, data=body_out,
                                                            headers=JSON_BODY) as response:
                        status = response.status
                        body = await response.read()
                except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
                    last_problem = f"{type(exc).__name__}"
                    continue
                latency = time.perf_counter() - start
            if status in RETRY_STATUSES:
                last_problem = f"HTTP {status}"
                continue
            if status >= 400:
                detail = body[:300].decode("utf-8", errors="replace")
                message = (f"{endpoint.base_url} answered HTTP {status} for model "
                           f"'{route.api_model}': {detail}")
                if status in FATAL_STATUSES:  # a key or model name to fix: stop the run
                    raise BackendError(message)
                # this request cannot succeed (too long a context, a rejected parameter):
                # it is recorded as a failed sample and the run goes on
                return failed_completion(message)
            try:
                return parse_chat_completion(fast_json.loads(body), latency)
            except (ValueError, KeyError, IndexError, TypeError) as exc:
                last_problem = f"unreadable response ({exc})"
                continue
        return failed_completion(
            f"{endpoint.base_url} failed {self.cfg.max_retries + 1} times for model "
            f"'{route.api_model}'; last: {last_problem}."
        )

    async def generate(
        self, requests: Sequence[BackendRequest], on_complete: OnComplete | None = None
    ) -> list[Completion]:
        async def one(i: int, request: BackendRequest) -> Completion:
            completion = await self._one(request)
            if on_complete is not None:
                on_complete(i, completion)
            return completion

        if len(requests) == 1:  # no task to spawn for a single request
            return [await one(0, requests[0])]
        return list(await asyncio.gather(*(one(i, r) for i, r in enumerate(requests))))

    async def aclose(self) -> None:
        for endpoint in self._endpoints.values():
            if endpoint.session is not None:
                await endpoint.session.close()
                endpoint.session = None

    def close(self) -> None:
        # sessions belong to the loop that made them; when it is gone, drop them
        for endpoint in self._endpoints.values():
            endpoint.session = None


def probe_endpoint(base_url: str, api_key: str | None, alias: str) -> None:
    """Fail before the first generation when an endpoint cannot be reached or rejects the key."""
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    try:
        response = httpx.get(f"{base_url}/models", headers=headers, timeout=10.0)
    except httpx.HTTPError as exc:
        raise ConfigError(
            f"Model '{alias}': cannot reach {base_url} ({type(exc).__name__}). Is the server up "
            "and the base_url right? (http.check_endpoints=false skips this check.)"
        ) from None
    if response.status_code in (401, 403):
        raise ConfigError(f"Model '{alias}': {base_url} rejected the API key "
                          f"(HTTP {response.status_code}).")


def parse_chat_completion(data: dict, latency: float) -> Completion:
    """A Completion from an OpenAI chat completion body (KeyError etc. when malformed)."""
    choice = data["choices"][0]
    text = choice["message"]["content"]
    if not isinstance(text, str):
        raise ValueError("message.content is not text")
    usage = data.get("usage") or {}
    logprobs = None
    content_logprobs = (choice.get("logprobs") or {}).get("content")
    if content_logprobs:
        logprobs = tuple(float(item["logprob"]) for item in content_logprobs)
    details = usage.get("prompt_tokens_details") or {}
    return Completion(
        text=text,
        prompt_tokens=int(usage.get("prompt_tokens", 0)),
        completion_tokens=int(usage.get("completion_tokens", 0)),
        finish_reason=choice.get("finish_reason") or "stop",
        latency_s=latency,
        token_logprobs=logprobs,
        cached_tokens=details.get("cached_tokens"),
    )
