"""cope's embedded llama.cpp backend against direct llama-cpp-python calls: the same 20
requests (executor prompts of 20 GSM8K problems) with the small packaged model.

    python benchmarks/embedded.py [--tokens 64] [--batched]

The direct path calls Llama.create_chat_completion with the same sampling arguments cope
sends (and, like cope's one-at-a-time mode, resets the KV cache before each call, which keeps
seeded samples reproducible). Both call the same Llama object, loaded once before timing
(cope's backend loads it; the direct path borrows it). The two paths take turns request by
request (direct first on even requests, cope first on odd ones), so a
machine whose load drifts slows both alike. Writes benchmarks/results/embedded.json with
tokens per second of both (goal: cope >= 0.95 of direct) and, with --batched, of cope's
batched mode for comparison.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's cope

from llama_cpp import Llama  # noqa: E402
from omegaconf import OmegaConf

from cope.backends.llamacpp import LlamaCppBackend
from cope.samples import BackendRequest, SamplingParams, messages_to_dicts
from cope.tasks import create_task

RESULTS = Path(__file__).parent / "results" / "embedded.json"
MODEL = "qwen-coder-0.5b"


def workload(tokens: int, problems: int = 20) -> list[tuple[tuple, SamplingParams]]:
    task = create_task(OmegaConf.create({"name": "gsm8k", "source": None}))
    return [(task.execute_messages(p, []), SamplingParams(0.8, tokens, seed=7 + i))
            for i, p in enumerate(task.load()[:problems])]


def direct_one(llm: Llama, messages, params: SamplingParams) -> tuple[float, int]:
    start = time.perf_counter()
    llm.reset()
    out = llm.create_chat_completion(
        messages=messages_to_dicts(messages), temperature=params.temperature, top_p=1.0,
        top_k=0, min_p=0.0, max_tokens=params.max_tokens, seed=params.seed)
    return time.perf_counter() - start, out["usage"]["completion_tokens"]


def load_cope(batch_size: int) -> tuple[LlamaCppBackend, str]:
    cfg = OmegaConf.create({"n_threads": None, "n_ctx": 4096, "n_batch": 512, "reuse_prefix": False,
                            "batch_size": batch_size, "batch_n_ctx": 16384, "timeout_s": None,
                            "verbose": False})
    backend = LlamaCppBackend(cfg)
    identity = backend.add_model(MODEL, OmegaConf.create(
        {"identity": f"packaged:{MODEL}", "packaged": MODEL, "path": None}))
    return backend, identity


def cope_call(backend: LlamaCppBackend, requests: list[BackendRequest],
              loop: asyncio.AbstractEventLoop) -> tuple[float, int]:
    start = time.perf_counter()
    # one event loop for all calls, as in a run
    completions = loop.run_until_complete(backend.generate(requests))
    return time.perf_counter() - start, sum(c.completion_tokens for c in completions)


def interleaved(work) -> tuple[list[tuple[float, int]], list[tuple[float, int]]]:
    """(seconds, tokens) of every request, direct and through cope, taking turns. Both paths
    use the one Llama that cope's backend loaded: two live llama.cpp contexts on the same
    cores slow each other down in ways that have nothing to do with the call path."""
    backend, identity = load_cope(batch_size=1)
    llm = backend._models[identity]
    direct_runs, cope_runs = [], []
    loop = asyncio.new_event_loop()
    try:
        for i, (messages, params) in enumerate(work):
            request = BackendRequest(identity, messages, params, 0)
            if i % 2 == 0:
                direct_runs.append(direct_one(llm, messages, params))
                cope_runs.append(cope_call(backend, [request], loop))
            else:
                cope_runs.append(cope_call(backend, [request], loop))
                direct_runs.append(direct_one(llm, messages, params))
            print(f"request {i}: direct {direct_runs[-1][0]:.2f} s, cope {cope_runs[-1][0]:.2f} s",
                  flush=True)
    finally:
        loop.close()
        backend.close()
    return direct_runs, cope_runs


def summary(runs: list[tuple[float, int]]) -> dict:
    seconds, tokens = sum(s for s, _ in runs), sum(t for _, t in runs)
    return {"s": round(seconds, 2), "tokens": tokens, "tok_per_s": round(tokens / seconds, 2)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--batched", action="store_true", help="also time batch_size=8")
    parser.add_argument("--problems", type=int, default=20, help="GSM8K executor requests")
    parser.add_argument("--out", type=Path, default=RESULTS, help="the results file")
    args = parser.parse_args()
    work = workload(args.tokens, args.problems)
    direct_runs, cope_runs = interleaved(work)
    d, c = summary(direct_runs), summary(cope_runs)
    per_request = sorted((ct / cs) / (dt / ds) for (ds, dt), (cs, ct) in zip(direct_runs, cope_runs))
    result = {
        "benchmark": f"embedded llama.cpp, {len(work)} GSM8K executor requests", "model": MODEL,
        "max_tokens": args.tokens, "cpus": os.cpu_count(),
        "method": "direct and cope take turns request by request; model loads untimed",
        "direct": d, "cope_one_at_a_time": c,
        "ratio_cope_to_direct": round(c["tok_per_s"] / d["tok_per_s"], 3),
        "median_per_request_ratio": round(per_request[len(per_request) // 2], 3),
        "goal": "cope_one_at_a_time tok/s >= 0.95 x direct",
    }
    if args.batched:
        backend, identity = load_cope(batch_size=8)
        requests = [BackendRequest(identity, m, p, 0) for m, p in work]
        loop = asyncio.new_event_loop()
        try:
            result["cope_batched_8"] = summary([cope_call(backend, requests, loop)])
        finally:
            loop.close()
        backend.close()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
