"""A local stand-in for model servers, for tests and benchmarks: it speaks the OpenAI chat
completions wire format (POST /v1/chat/completions, GET /v1/models) and SGLang's native one
(POST /generate, GET /health, GET /server_info), counts requests, and injects faults (429,
500, stalls, truncated bodies) at configurable rates. `faults=("context_length",)` answers
HTTP 400 with OpenAI's context-length error instead: a fault no retry can fix;
`faults=("abort",)` makes SGLang abort the last prompt of a batch.

Its /generate is SGLang 0.5.23's as far as a client can see: every body is checked with
SGLang's own contract module (cope.testing.sglang_contract) and refused with HTTP 400 and the
schema's text when it breaks it; a batch is answered with a list of {text, meta_info};
`finish_reason` is {"type": "stop", "matched": <the stop string or the EOS id>} or
{"type": "length", "length": max_new_tokens} (the text cut to that many words);
`cached_tokens` is the longest prompt prefix (in words) seen before, at most prompt_tokens - 1
as in SGLang; `output_token_logprobs` entries are [logprob, token_id, null]
(`null_logprob=True` makes the first logprob null); /health answers 503 for the first
`health_warmup` calls. A server older than 0.5.3 (`sglang_version`) answers 500 to
`sampling_seed` and has only /get_server_info; a server with `deterministic=False` drops
the seed, so its answers do not repeat.

Its answers are otherwise a pure function of the request (model, messages, seed,
temperature), so a run that suffered faults and retried ends with the same records as one
that did not.

    with StubServer(latency_s=0.05, fault_rate=0.3) as stub:
        ... point a model's base_url at stub.base_url ...
        stub.counts["chat"]
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import random
import socket
import threading
import time
from collections import Counter
from typing import Any

from packaging.version import Version

from cope.backends.sglang_native import (
    MIN_VERSION,  # the first SGLang with sampling_seed
)
from cope.event_loop import loop_factory
from cope.testing.sglang_contract import SGLANG_VERSION, ContractUnavailable, load

FAULTS = ("429", "500", "stall", "truncate")  # transient: a retry gets through
EOS_TOKEN_ID = 151645  # Qwen2.5's <|im_end|>: what `matched` holds when generation ends
CONTEXT_LENGTH_ERROR = {"error": {
    "message": "This model's maximum context length is 4096 tokens. However, your messages "
               "resulted in 5012 tokens. Please reduce the length of the messages.",
    "type": "invalid_request_error", "param": "messages", "code": "context_length_exceeded"}}


def stub_answer(payload: dict[str, Any]) -> str:
    """Deterministic text for a chat request: a short solution with a boxed number."""
    key = json.dumps([payload.get("model"), payload.get("messages"), payload.get("seed"),
                      payload.get("temperature")], sort_keys=True)
    digest = int(hashlib.sha256(key.encode()).hexdigest(), 16)
    return f"Working it out step by step. Therefore, the final answer is: $\\boxed{{{digest % 4}}}$."


REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 429: "Too Many Requests",
           500: "Internal Server Error", 501: "Not Implemented", 503: "Service Unavailable"}


def _free_port(host: str) -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def _common_prefix(a: list[str], b: list[str]) -> int:
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


class StubServer:
    def __init__(self, latency_s: float = 0.0, fault_rate: float = 0.0,
                 faults: tuple[str, ...] = FAULTS, stall_s: float = 5.0, seed: int = 0,
                 host: str = "127.0.0.1", port: int = 0, event_loop: str = "asyncio",
                 sglang_version: str = SGLANG_VERSION, deterministic: bool = True,
                 health_warmup: int = 0, null_logprob: bool = False) -> None:
        self.latency_s = latency_s
        self.fault_rate = fault_rate
        self.faults = faults
        self.stall_s = stall_s
        self.counts: Counter[str] = Counter()
        self.authorizations: set[str] = set()  # Authorization headers seen
        self.sglang_version = sglang_version
        self.knows_seeds = Version(sglang_version) >= Version(MIN_VERSION)
        self.deterministic = deterministic
        self.health_warmup = health_warmup
        self.null_logprob = null_logprob
        self.generate_payloads: list[dict[str, Any]] = []  # bodies that passed the contract
        self.generate_responses: list[Any] = []
        self._seen_prompts: list[list[str]] = []
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self.host, self.port = host, port or _free_port(host)
        self.event_loop = event_loop  # asyncio, uvloop or auto (cope.event_loop)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.AbstractServer | None = None
        self._thread: threading.Thread | None = None

    async def _respond(self, method: str, path: str, headers: dict[str, str], body: bytes
                       ) -> tuple[int, Any, bool]:
        """(status, JSON body, truncate) for one request."""
        route = path.rstrip("/")
        if method == "GET":
            if route == "/health":
                with self._lock:
                    self.counts["health"] += 1
                    starting = self.counts["health"] <= self.health_warmup
                return (503, None, False) if starting else (200, None, False)
            if route in ("/server_info", "/get_server_info"):
                return self.server_info(route)
            if route in ("/v1/models", "/models"):
                return 200, {"object": "list", "data": [{"id": "stub", "object": "model"}]}, False
            return 404, {"error": {"message": f"no route {path}"}}, False
        if route not in ("/v1/chat/completions", "/chat/completions", "/generate"):
            return 404, {"error": {"message": f"no route {path}"}}, False
        payload = json.loads(body or b"{}")
        if route == "/generate" and (refused := self.check_generate(payload)) is not None:
            with self._lock:
                self.counts["refused"] += 1
            return refused
        fault = self._draw_fault()
        with self._lock:
            if headers.get("authorization"):
                self.authorizations.add(headers["authorization"])
            self.counts["requests"] += 1
            self.counts[fault or "ok"] += 1
        if self.latency_s:
            await asyncio.sleep(self.latency_s)
        if fault == "429":
            return 429, {"error": {"message": "rate limited", "type": "rate_limit"}}, False
        if fault == "500":
            return 500, {"error": {"message": "internal error"}}, False
        if fault == "context_length":
            return 400, CONTEXT_LENGTH_ERROR, False
        if fault == "stall":
            await asyncio.sleep(self.stall_s)
            return 503, {"error": {"message": "stalled"}}, False
        answer = (self.generate(payload, abort=fault == "abort") if route == "/generate"
                  else self.completion(payload))
        return 200, answer, fault == "truncate"

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """HTTP/1.1 with keep-alive: requests on one connection, one after another."""
        try:
            while True:
                request_line = await reader.readline()
                if not request_line.strip():
                    break
                method, path, _ = request_line.decode("latin-1").split(" ", 2)
                headers: dict[str, str] = {}
                while (line := await reader.readline()) not in (b"\r\n", b"\n", b""):
                    name, _, value = line.decode("latin-1").partition(":")
                    headers[name.strip().lower()] = value.strip()
                body = await reader.readexactly(int(headers.get("content-length", 0) or 0))
                status, answer, truncate = await self._respond(method, path, headers, body)
                data = b"" if answer is None else json.dumps(answer).encode()
                head = (f"HTTP/1.1 {status} {REASONS.get(status, 'Error')}\r\n"
                        f"Content-Type: application/json\r\nContent-Length: {len(data)}\r\n"
                        "\r\n").encode()
                if truncate:  # promise the whole body, send half, hang up
                    writer.write(head + data[: len(data) // 2])
                    await writer.drain()
                    break
                writer.write(head + data)  # one write: one segment for the client to read
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError, ValueError):
            pass
        finally:
            writer.close()

    def _draw_fault(self) -> str | None:
        with self._lock:
            if self.fault_rate and self._rng.random() < self.fault_rate:
                return self._rng.choice(self.faults)
        return None

    @staticmethod
    def completion(payload: dict[str, Any]) -> dict[str, Any]:
        text = stub_answer(payload)
        prompt_tokens = sum(len(m.get("content", "").split()) for m in payload.get("messages", []))
        completion_tokens = min(len(text.split()), int(payload.get("max_tokens") or 10**9))
        return {
            "id": "chatcmpl-stub",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": payload.get("model"),
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                         "finish_reason": "stop"}],
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                      "total_tokens": prompt_tokens + completion_tokens},
        }

    def server_info(self, route: str) -> tuple[int, Any, bool]:
        if route == "/server_info" and not self.knows_seeds:
            return 404, {"detail": "Not Found"}, False
        # the resolved server arguments, flat, with the version and the scheduler's state
        return 200, {"model_path": "stub", "served_model_name": "stub", "tokenizer_path": "stub",
                     "max_context_length": 32768, "version": self.sglang_version,
                     "enable_deterministic_inference": self.deterministic,
                     "internal_states": [{}], "host": self.host, "port": self.port}, False

    def check_generate(self, payload: Any) -> tuple[int, Any, bool] | None:
        """SGLang's contract gate, then what an older server does with a seed."""

        try:
            api = load()
        except ContractUnavailable as exc:
            # 501, which no client retries: the stub cannot answer /generate here at all
            return 501, {"error": {"message": f"the stub cannot check SGLang's contract: {exc}"}}, False
        try:
            api.GenerateRequest.from_json_value(payload)
        except api.JsonContractError as exc:
            return 400, {"error": str(exc)}, False
        params = payload.get("sampling_params") or {}
        seeded = any("sampling_seed" in p for p in (params if isinstance(params, list) else [params]))
        if seeded and not self.knows_seeds:
            return 500, {"error": {"message": "SamplingParams.__init__() got an unexpected "
                                              "keyword argument 'sampling_seed'"}}, False
        return None

    def generate(self, payload: dict[str, Any], abort: bool = False) -> Any:
        """SGLang's /generate for a single prompt or a batch."""
        texts = payload["text"] if isinstance(payload["text"], list) else [payload["text"]]
        params = payload.get("sampling_params") or {}
        params = params if isinstance(params, list) else [params] * len(texts)
        with self._lock:
            self.generate_payloads.append(payload)
            self.counts["generate"] += 1
            calls = self.counts["generate"]
        items = []
        for i, (text, sp) in enumerate(zip(texts, params)):
            words = text.split()
            with self._lock:
                seen = max((_common_prefix(words, old) for old in self._seen_prompts), default=0)
                self._seen_prompts.append(words)
            # a server that is not deterministic drops the seed without a word
            seed = sp.get("sampling_seed") if self.deterministic else f"call {calls}/{i}"
            meta = {"id": f"stub-{calls}-{i}", "prompt_tokens": len(words),
                    "cached_tokens": max(0, min(seen, len(words) - 1)),
                    "e2e_latency": self.latency_s}
            if abort and i == len(texts) - 1:
                items.append({"text": "", "meta_info": {**meta, "completion_tokens": 0,
                    "finish_reason": {"type": "abort", "message": "Abort before prefill",
                                      "status_code": 503, "err_type": "ServiceUnavailable"}}})
                continue
            answer_words = stub_answer({"messages": text, "seed": seed,
                                        "temperature": sp.get("temperature")}).split()
            finish: dict[str, Any] = {"type": "stop", "matched": EOS_TOKEN_ID}
            limit = sp.get("max_new_tokens", 128)
            if limit is not None and limit < len(answer_words):
                answer_words = answer_words[:limit]
                finish = {"type": "length", "length": limit}
            answer = " ".join(answer_words)
            stops = sp.get("stop") or []
            for stop in [stops] if isinstance(stops, str) else stops:
                if stop and stop in answer:
                    answer, finish = answer[:answer.index(stop)], {"type": "stop", "matched": stop}
            n_out = len(answer.split())
            meta.update(completion_tokens=n_out, finish_reason=finish)
            if payload.get("return_logprob"):
                meta["output_token_logprobs"] = [
                    [None if (self.null_logprob and k == 0) else -0.1 * (k + 1), 1000 + k, None]
                    for k in range(n_out)]
            items.append({"text": answer, "meta_info": meta})
        answer = items if isinstance(payload["text"], list) else items[0]
        with self._lock:
            self.generate_responses.append(answer)
        return answer

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}/v1"

    def start(self) -> "StubServer":
        """Serve from an event loop in a background thread."""

        self._loop = loop_factory(self.event_loop)()
        self._server = self._loop.run_until_complete(
            asyncio.start_server(self._connection, self.host, self.port, backlog=1024))
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._loop is None:
            return
        loop = self._loop

        async def shutdown() -> None:
            self._server.close()
            for task in asyncio.all_tasks():
                if task is not asyncio.current_task():
                    task.cancel()

        asyncio.run_coroutine_threadsafe(shutdown(), loop).result(timeout=10)
        loop.call_soon_threadsafe(loop.stop)
        self._thread.join(timeout=10)
        loop.close()
        self._loop = None

    def __enter__(self) -> "StubServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def main() -> None:
    """Serve a stub in the foreground: python -m cope.testing.stub_server --port 8000."""

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--latency", type=float, default=0.0, help="seconds per request")
    parser.add_argument("--fault-rate", type=float, default=0.0)
    parser.add_argument("--event-loop", default="asyncio", choices=["asyncio", "uvloop", "auto"],
                        help="the server's event loop (uvloop: less CPU per request)")
    args = parser.parse_args()
    stub = StubServer(latency_s=args.latency, fault_rate=args.fault_rate, host=args.host,
                      port=args.port, event_loop=args.event_loop).start()
    print(f"stub serving on {stub.base_url}", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        stub.stop()


if __name__ == "__main__":
    main()
