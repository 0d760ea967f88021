"""cope's embedded llama.cpp backend against direct llama-cpp-python calls: the same 20
requests (executor prompts of 20 GSM8K problems) with the small packaged model.

    python benchmarks/embedded.py [--tokens 64]

The direct path calls Llama.create_chat_completion with the same sampling arguments cope
sends (and, like cope's one-at-a-time mode, resets the KV cache before each call, which keeps
seeded samples reproducible). Writes benchmarks/results/embedded.json with tokens per second
of both (goal: cope >= 0.95 of direct), and of cope's batched mode for comparison.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time
from pathlib import Path

from llama_cpp import Llama
from omegaconf import OmegaConf

from cope.backends.llamacpp import LlamaCppBackend
from cope.generation import BackendRequest, SamplingParams, messages_to_dicts
from cope.models.packaged import ensure_packaged_model
from cope.tasks import create_task

RESULTS = Path(__file__).parent / "results" / "embedded.json"
MODEL = "qwen-coder-0.5b"


def workload(tokens: int) -> list[tuple[tuple, SamplingParams]]:
    task = create_task(OmegaConf.create({"name": "gsm8k", "source": None}))
    return [(task.execute_messages(p, []), SamplingParams(0.8, tokens, seed=7 + i))
            for i, p in enumerate(task.load()[:20])]


def direct(work) -> tuple[float, int]:
    llm = Llama(model_path=str(ensure_packaged_model(MODEL)), n_ctx=4096, n_batch=512,
                n_threads=os.cpu_count(), seed=0, verbose=False)
    llm.chat_format = "chat_template.default"
    produced = 0
    start = time.perf_counter()
    for messages, params in work:
        llm.reset()
        out = llm.create_chat_completion(
            messages=messages_to_dicts(messages), temperature=params.temperature, top_p=1.0,
            top_k=0, min_p=0.0, max_tokens=params.max_tokens, seed=params.seed)
        produced += out["usage"]["completion_tokens"]
    elapsed = time.perf_counter() - start
    llm.close()
    return elapsed, produced


def through_cope(work, batch_size: int) -> tuple[float, int]:
    cfg = OmegaConf.create({"n_threads": None, "n_ctx": 4096, "n_batch": 512, "reuse_prefix": False,
                            "batch_size": batch_size, "batch_n_ctx": 16384, "verbose": False})
    backend = LlamaCppBackend(cfg)
    identity = backend.add_model(MODEL, OmegaConf.create(
        {"identity": f"packaged:{MODEL}", "packaged": MODEL, "path": None}))
    requests = [BackendRequest(identity, m, p, 0) for m, p in work]
    start = time.perf_counter()
    completions = asyncio.run(backend.generate(requests))
    elapsed = time.perf_counter() - start
    backend.close()
    return elapsed, sum(c.completion_tokens for c in completions)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tokens", type=int, default=64)
    args = parser.parse_args()
    work = workload(args.tokens)
    d_s, d_tok = direct(work)
    c_s, c_tok = through_cope(work, batch_size=1)
    b_s, b_tok = through_cope(work, batch_size=8)
    result = {
        "benchmark": "embedded llama.cpp, 20 GSM8K executor requests", "model": MODEL,
        "max_tokens": args.tokens, "cpus": os.cpu_count(),
        "direct": {"s": round(d_s, 2), "tokens": d_tok, "tok_per_s": round(d_tok / d_s, 2)},
        "cope_one_at_a_time": {"s": round(c_s, 2), "tokens": c_tok, "tok_per_s": round(c_tok / c_s, 2)},
        "cope_batched_8": {"s": round(b_s, 2), "tokens": b_tok, "tok_per_s": round(b_tok / b_s, 2)},
        "ratio_cope_to_direct": round((c_tok / c_s) / (d_tok / d_s), 3),
        "goal": "cope_one_at_a_time tok/s >= 0.95 x direct",
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
